"""One access log line per request on stdout, with a request id the client can quote.

The id is the client's `X-Request-ID` when it sent a usable one (so a trace
crosses services), else a new one; either way it is echoed in the answer.

The lines are written to stdout directly, in the log's format, not through
`logging` (a log record costs ~15 µs, a tenth of a small request's whole
time), and in batches: one write every `FLUSH_INTERVAL` at most, not one
system call per request; whatever is pending is written at exit.
"""

import atexit
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

_USABLE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,200}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FLUSH_INTERVAL = 0.05  # seconds an access line may wait to be written with others


class Observer(Protocol):
    """What is told about every request (metrics.py implements it)."""

    def request_started(self) -> None: ...

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None: ...


def request_id(sent: str | None) -> str:
    """The client's id when it is short and plain, else a fresh one."""
    if sent and _USABLE_ID.fullmatch(sent):
        return sent
    return f"{random.getrandbits(128):032x}"  # unique enough, and no system call


def printable(text: str) -> str:
    """`text` (a decoded path) with control characters percent-encoded, for a log line:
    `%0A` in a URL is a line break once decoded, and would begin a forged log line."""
    return _CONTROL.sub(lambda m: f"%{ord(m[0]):02X}", text)


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
        self._second = -1
        self._stamp = ""

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ["HTTP_X_REQUEST_ID"] = rid
        started = time.perf_counter()
        status = ["500"]
        path = environ.get("PATH_INFO", "")  # before a base path is taken off it
        if environ.get("QUERY_STRING"):
            path = f"{path}?{environ['QUERY_STRING']}"
        path = printable(path)

        def start(status_line: str, headers: list, exc_info: object = None) -> Callable:
            status[0] = status_line.split(" ", 1)[0]
            return start_response(status_line, [*headers, ("X-Request-ID", rid)], exc_info)

        if self.observer:
            self.observer.request_started()
        finished = lambda: self._finished(environ, path, int(status[0]), started, rid)  # noqa: E731
        try:
            body = self.app(environ, start)
        except BaseException:
            finished()
            raise
        return _Body(body, finished)

    def _finished(self, environ: dict, path: str, status: int, started: float,
                  rid: str) -> None:
        seconds = time.perf_counter() - started
        method = environ.get("REQUEST_METHOD", "-")
        self._write(f"{method} {path} {status} {seconds * 1000:.1f}ms id={rid}")
        if self.observer:
            self.observer.request_finished(method, route_of(environ), status, seconds)

    def _write(self, text: str) -> None:
        """One line as `logging` would format it (server.LOG_FORMAT)."""
        now = time.time()
        second = int(now)
        if second != self._second:  # strftime once a second, not once a request
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        _LINES.add(f"{self._stamp},{int((now - second) * 1000):03d} INFO "
                        f"workspace_service.access: {text}\n")


class _Batch:
    """Lines written to stdout together, by a thread of its own, `FLUSH_INTERVAL`
    after the first one of a batch; idle, the thread sleeps until the next line."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, line: str) -> None:
        with self._lock:
            self._pending.append(line)
            first = len(self._pending) == 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="access-log",
                                                daemon=True)
                self._thread.start()
                atexit.register(self.flush)
        if first:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(FLUSH_INTERVAL)  # let the batch fill
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        if lines:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()


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


_LINES = _Batch()


def flush() -> None:
    """Write the pending access lines now (before a last log line that must stay last)."""
    _LINES.flush()
