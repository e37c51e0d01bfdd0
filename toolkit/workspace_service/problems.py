"""RFC 9457 problem details: the one shape of every error answer.

A client (or a load balancer's log) sees the same JSON for a refused request,
a missing route and a crashed handler, and never a traceback: those go to the
service's log only.
"""

import json
from http import HTTPStatus

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise from a handler to answer `status` with a problem+json body.

    `headers` are added to the answer (e.g. `Retry-After`); `extra` members
    go into the body beside the standard ones (RFC 9457 allows extensions).
    """

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: object) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def title(status: int) -> str:
    """The standard reason phrase of `status` ("Unknown" for a made-up code)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def body(status: int, detail: str, **extra: object) -> bytes:
    """The problem+json document for `status`: `type`, `title`, `status`, `detail`."""
    doc = {"type": "about:blank", "title": title(status), "status": status, "detail": detail}
    doc.update(extra)
    return json.dumps(doc).encode()


def status_line(status: int) -> str:
    """`status` as a WSGI status line, e.g. "503 Service Unavailable"."""
    return f"{status} {title(status)}"
