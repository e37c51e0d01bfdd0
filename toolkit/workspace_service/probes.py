"""`/health` (liveness) and `/ready` (readiness), answered before the app is reached.

They are answered by this WSGI layer, not by a Flask view, so that they stay
cheap and never depend on the app; the server gives them threads of their own
(server.py) so that they answer while every request thread is busy.
"""

import json
from collections.abc import Callable, Iterable

from .accesslog import ROUTE_KEY
from .lifecycle import FAILED, Lifecycle
from .problems import status_line

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def probe_paths(base_path: str, *, root: bool = True) -> dict[str, str]:
    """Path → probe ("health" or "ready"): under `base_path`, and at the root when `root`."""
    paths = {f"{base_path}/health": "health", f"{base_path}/ready": "ready"}
    if root:
        paths.update({"/health": "health", "/ready": "ready"})
    return paths


def health(lifecycle: Lifecycle) -> tuple[int, dict[str, str]]:
    """Liveness: 200 while the process works (also while draining), 500 once startup failed."""
    if lifecycle.status == FAILED:
        return 500, {"health": "false", "status": FAILED}
    return 200, {"health": "true", "status": "ok"}


def ready(lifecycle: Lifecycle) -> tuple[int, dict[str, str]]:
    """Readiness: 200 only between a finished startup and the start of a stop."""
    return (200 if lifecycle.is_ready else 503), {"status": lifecycle.status}


class Probes:
    """WSGI middleware: answers GET/HEAD on the probe paths, passes the rest to `app`."""

    def __init__(self, app: WSGIApp, lifecycle: Lifecycle, paths: dict[str, str]) -> None:
        self.app = app
        self.lifecycle = lifecycle
        self.paths = paths

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        probe = self.paths.get(environ.get("PATH_INFO", ""))
        if probe is None or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        environ[ROUTE_KEY] = f"/{probe}"
        status, doc = (health if probe == "health" else ready)(self.lifecycle)
        payload = json.dumps(doc).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                   ("Cache-Control", "no-store")]
        if status == 503:
            headers.append(("Retry-After", "1"))
        start_response(status_line(status), headers)
        return [b"" if environ["REQUEST_METHOD"] == "HEAD" else payload]
