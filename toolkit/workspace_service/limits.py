"""Request limits, checked before a handler runs: each refusal is one problem+json answer.

AI4E's faults are the list of what not to do: it answered 401 for a wrong
content type, crashed on a missing Content-Length and counted concurrent
requests without a lock (so one too many got in). Here the count is a
semaphore taken without blocking: never one too many, and the extra request
is told at once to come back (503 + Retry-After) instead of piling up.
"""

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import flask
from werkzeug.exceptions import RequestEntityTooLarge

from .problems import Problem
from .server import CLOSE_KEY

RETRY_AFTER = "1"  # seconds: a short, honest hint for a busy or starting service


class Rejected(Problem):
    """A request refused by a limit; `reason` labels the rejection in the metrics."""

    def __init__(self, status: int, detail: str, reason: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, detail, headers=headers)
        self.reason = reason


def is_json(mimetype: str) -> bool:
    """`application/json` and the `+json` types (e.g. `application/geo+json`)."""
    return mimetype == "application/json" or mimetype.endswith("+json")


@dataclass
class Limits:
    """One route's limits; `None` means no limit of that kind."""

    max_concurrent: int | None = None
    content_types: Sequence[str] | None = None
    max_content_length: int | None = None
    json_object: bool = True  # a JSON body must be an object (not a list or a number)
    _slots: threading.BoundedSemaphore | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.content_types = [t.lower() for t in self.content_types or []] or None
        self._slots = (threading.BoundedSemaphore(self.max_concurrent)
                       if self.max_concurrent else None)
        #: Whether a body is looked at (else a GET is not slowed by reading nothing).
        self.reads_body = bool(self.content_types) or self.max_content_length is not None

    def check(self, request: flask.Request) -> None:
        """Refuse by the headers alone: content type, then length."""
        if self.content_types:
            if request.mimetype not in self.content_types:
                sent = request.mimetype or "none"
                raise Rejected(415, f"Content-Type must be one of {', '.join(self.content_types)}"
                               f" (got {sent})", "content_type")
            if request.content_length is None:
                request.environ[CLOSE_KEY] = True  # a body may follow, unframed: never parse it
                raise Rejected(411, "a body is expected: send its Content-Length",
                               "length_required")
        if self.max_content_length is not None and (request.content_length or 0) > \
                self.max_content_length:
            raise _too_large(self.max_content_length)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the `max_concurrent` places, or refuse with 503 when none is free."""
        if self._slots is None:
            yield
            return
        if not self._slots.acquire(blocking=False):
            raise Rejected(503, f"at most {self.max_concurrent} requests at once here;"
                           " retry shortly", "concurrency", {"Retry-After": RETRY_AFTER})
        try:
            yield
        finally:
            self._slots.release()

    def read_body(self, request: flask.Request) -> bytes:
        """The body, read up to the limit (a chunked body that grows past it is refused),
        and kept so that `request.get_json()` in the handler does not read it again;
        a JSON body is checked to parse."""
        if self.max_content_length is not None:
            request.max_content_length = self.max_content_length
        try:
            data = request.get_data(cache=True)
        except RequestEntityTooLarge:
            raise _too_large(self.max_content_length or 0) from None
        if self.content_types and is_json(request.mimetype):
            _check_json(data, self.json_object)
        return data


def _too_large(limit: int) -> Rejected:
    return Rejected(413, f"the body is larger than {limit} bytes", "too_large")


def _check_json(data: bytes, want_object: bool) -> None:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(400, f"the body is not valid JSON: {exc}", "bad_json") from None
    except RecursionError:  # a JSON bomb: `[[[[...]]]]` deeper than Python's stack
        raise Rejected(400, "the body is not valid JSON: it is nested too deeply",
                       "bad_json") from None
    if want_object and not isinstance(value, dict):
        raise Rejected(400, f"the body must be a JSON object, not {_JSON_NAMES[type(value)]}",
                       "bad_json")


_JSON_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}
