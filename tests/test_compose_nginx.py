"""deploy/compose's nginx.conf, run by Debian's nginx in front of replicas on 127.0.0.1
(tests/nginx_loopback.py says what is changed for loopback).

The replicas are real HTTP servers in this process: what nginx sees of a
replica is its port, answering or refusing the connection while the replica
stops or starts. What is checked is what a client of the compose stack sees:
a request, a POST too, whose replica is gone is sent to another, once.
"""

import contextlib
import http.client
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port
from nginx_loopback import nginx


class Replica(http.server.BaseHTTPRequestHandler):
    """Answers every GET and POST with its own port, and counts the POSTs it got."""

    posts = 0

    def do_GET(self) -> None:
        body = str(self.server.server_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Replica.posts += 1
        self.do_GET()

    def log_message(self, *args: object) -> None:
        """Quiet: nginx's access log is the record here."""


@contextlib.contextmanager
def replica(port: int) -> Iterator[None]:
    """A replica accepting on `port` until the block ends."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Replica)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def request(port: int, method: str) -> tuple[int, str] | None:
    """(status, body) through nginx; None if nginx itself did not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, "/", body=b"{}" if method == "POST" else None)
        response = conn.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return None
    finally:
        conn.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_whose_replica_refuses_goes_to_another_once(
        tmp_path: Path, method: str) -> None:
    """A refused connection never reached a replica, so a POST is sent on too: each
    task is submitted, once, while two of the three replicas are stopped."""
    upstreams = [free_port() for _ in range(3)]
    Replica.posts = 0
    with nginx(tmp_path, upstreams) as proxy, replica(upstreams[2]):
        answers = [request(proxy.port, method) for _ in range(9)]
    assert answers == [(200, str(upstreams[2]))] * 9
    assert Replica.posts == (9 if method == "POST" else 0)


def test_no_replica_is_a_502(tmp_path: Path) -> None:
    """With every replica refusing, nginx answers 502 at once (no wait, no hang)."""
    with nginx(tmp_path, [free_port() for _ in range(3)]) as proxy:
        assert request(proxy.port, "GET")[0] == 502
