"""The image's HEALTHCHECK script (workspace_image/healthcheck.py), run here
against real HTTP servers; test_image.py runs it in the image."""

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping

import pytest
from helpers import ROOT, free_port

SCRIPT = ROOT / "workspace_image" / "healthcheck.py"


def serve(routes: Mapping[str, int]) -> tuple[int, http.server.HTTPServer]:
    """A server answering each path of `routes` with its status, others with 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(routes.get(self.path, 404))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], server


@pytest.fixture
def servers() -> Iterator:
    started: list[http.server.HTTPServer] = []

    def start(routes: Mapping[str, int]) -> int:
        port, server = serve(routes)
        started.append(server)
        return port

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def check(port: int, workspace_port: int | None = None) -> tuple[int, str]:
    env = {"PORT": str(port), "WORKSPACE_PORT": str(workspace_port or free_port())}
    result = subprocess.run([sys.executable, "-I", str(SCRIPT)], env=env,
                            capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout.strip()


@pytest.mark.parametrize(("routes", "expected"), [
    ({"/health": 200}, (0, "healthy")),
    ({"/": 200}, (0, "healthy")),  # no /health route: / answers
    ({"/": 401}, (0, "healthy")),  # up, but wants a token
    ({"/health": 503, "/": 200}, (1, "unhealthy")),  # says it is not well
    ({"/": 500}, (1, "unhealthy")),
])
def test_service_answers(servers, routes: dict[str, int], expected: tuple[int, str]) -> None:
    assert check(servers(routes)) == expected


def test_nothing_listening_is_unhealthy() -> None:
    assert check(free_port()) == (1, "unhealthy")


def test_workspace_counts_when_no_service_runs(servers) -> None:
    assert check(free_port(), workspace_port=servers({"/api": 200})) == (0, "healthy")
