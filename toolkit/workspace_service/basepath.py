"""Every route under one base path (`API_PREFIX`, `LAB_SERVICE_PATH`), done once for all.

The prefix is moved from PATH_INFO to SCRIPT_NAME, as a WSGI server mounted
under a path does: Flask routes are written without it, `url_for` and
`request.script_root` include it, and plain Flask routes move too.
"""

from collections.abc import Callable, Iterable

from . import problems


def within(base: str, path: str) -> str | None:
    """`path` as the app under `base` sees it, or None when it is outside `base`."""
    if path == base or path.startswith(base + "/"):
        return path[len(base):] or "/"
    return None


class BasePath:
    """WSGI middleware: serves `app` under `base`; anything outside it is a 404."""

    def __init__(self, app: Callable, base: str) -> None:
        self.app = app
        self.base = base

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = within(self.base, environ.get("PATH_INFO", ""))
        if path is not None:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.base
            environ["PATH_INFO"] = path
            return self.app(environ, start_response)
        payload = problems.body(404, f"this service is served under {self.base}/")
        start_response(problems.status_line(404), [("Content-Type", problems.PROBLEM_TYPE),
                                                   ("Content-Length", str(len(payload)))])
        return [payload]
