"""The image's HEALTHCHECK: is the service (or the workspace) answering HTTP?

Run by the engine in exec form, so it reads `$PORT` (and `$WORKSPACE_PORT`)
itself. Healthy when the service answers `/health` with 2xx, or, for a
service without that route (404/405), answers `/` with anything below 500.
In workspace mode no service runs: then JupyterLab's `/api` on the workspace
port counts. Stdlib only, run with the system Python so a user's service
venv cannot break it.
"""

import http.client
import os
import sys

TIMEOUT = 5.0


def status(port: int, path: str) -> int | None:
    """The HTTP status of a GET on localhost, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def service_healthy(port: int) -> bool | None:
    """True/False for an answering service; None when its port is closed."""
    health = status(port, "/health")
    if health is None:
        return None
    if 200 <= health < 300:
        return True
    if health in (404, 405):
        root = status(port, "/")
        return root is not None and root < 500
    return False


def main() -> int:
    service = service_healthy(int(os.environ.get("PORT") or 8091))
    if service is None:
        workspace = status(int(os.environ.get("WORKSPACE_PORT") or 8080), "/api")
        service = workspace == 200
    print("healthy" if service else "unhealthy")
    return 0 if service else 1


if __name__ == "__main__":
    sys.exit(main())
