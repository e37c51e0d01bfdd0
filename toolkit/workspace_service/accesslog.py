"""One access log line per request on stdout, with a request id the client can quote.

The id is the client's `X-Request-ID` when it sent a usable one (so a trace
crosses services), else a new one; either way it is echoed in the answer.
"""

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

log = logging.getLogger("workspace_service.access")
_USABLE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,200}")


class Observer(Protocol):
    """What is told about every request (metrics.py implements it)."""

    def request_started(self) -> None: ...

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None: ...


def request_id(sent: str | None) -> str:
    """The client's id when it is short and plain, else a fresh one."""
    if sent and _USABLE_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


ROUTE_KEY = "workspace_service.route"


def route_of(environ: dict) -> str:
    """The route template that served the request (set by the service or the probes),
    for metrics labels: a template, not the path, so that `/tasks/<id>` is one series
    and not one per id."""
    return environ.get(ROUTE_KEY, "<unmatched>")


class AccessLog:
    """WSGI middleware: request id in and out, one log line when the answer is sent."""

    def __init__(self, app: Callable, observer: Observer | None = None) -> None:
        self.app = app
        self.observer = observer

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ["HTTP_X_REQUEST_ID"] = rid
        started = time.perf_counter()
        status = ["500"]

        def start(status_line: str, headers: list, exc_info: object = None) -> Callable:
            status[0] = status_line.split(" ", 1)[0]
            return start_response(status_line, [*headers, ("X-Request-ID", rid)], exc_info)

        if self.observer:
            self.observer.request_started()
        finished = lambda: self._finished(environ, int(status[0]), started, rid)  # noqa: E731
        try:
            body = self.app(environ, start)
        except BaseException:
            finished()
            raise
        return _Body(body, finished)

    def _finished(self, environ: dict, status: int, started: float, rid: str) -> None:
        seconds = time.perf_counter() - started
        method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            path = f"{path}?{environ['QUERY_STRING']}"
        log.info('%s %s %s %.1fms id=%s', method, path, status, seconds * 1000, rid)
        if self.observer:
            self.observer.request_finished(method, route_of(environ), status, seconds)


class _Body:
    """The app's answer, passed through; `close()` (called by the server once the
    answer is sent) also closes the app's iterable and then logs the line."""

    def __init__(self, body: Iterable[bytes], finished: Callable[[], None]) -> None:
        self.body = body
        self.finished = finished

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close:
                close()
        finally:
            self.finished()
