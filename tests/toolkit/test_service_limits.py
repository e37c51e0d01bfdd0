"""Request limits and error answers of a `Service`, through a real waitress server.

Every refusal is checked as a client sees it: the status, the problem+json
body (RFC 9457) and the headers that matter (Retry-After, Allow).
"""

import http.client
import json
import os
import socket
import threading
from email.message import Message
from pathlib import Path

import pytest
from helpers import wait_for
from toolkit_services import STANDARD, open_gate

PROBLEM_KEYS = {"type", "title", "status", "detail"}


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gates")


@pytest.fixture(scope="module")
def svc(start_module_service, gates: Path):
    return start_module_service(STANDARD, GATE_DIR=str(gates))


def request(svc, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def post_json(svc, path: str, raw: bytes, content_type: str = "application/json"):
    return request(svc, "POST", path, raw, {"Content-Type": content_type})


def problem(status: int, headers: Message, body: bytes) -> dict:
    """The problem document, after checking its shape and content type."""
    assert headers["Content-Type"] == "application/problem+json", (status, headers, body)
    doc = json.loads(body)
    assert doc.keys() >= PROBLEM_KEYS and doc["status"] == status
    assert "Traceback" not in body.decode()
    return doc


def test_good_json_is_answered(svc) -> None:
    status, _, body = post_json(svc, "/predict", b'{"x": 1}')
    assert (status, json.loads(body)) == (200, {"echo": {"x": 1}, "model": "loaded"})


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_wrong_or_missing_content_type_is_415(svc, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, headers, body = request(svc, "POST", "/predict", b'{"x": 1}', headers)
    assert status == 415
    assert "application/json" in problem(status, headers, body)["detail"]


def test_invalid_json_is_400(svc) -> None:
    status, headers, body = post_json(svc, "/predict", b'{"x": ')
    assert status == 400
    assert "not valid JSON" in problem(status, headers, body)["detail"]


def test_json_nested_too_deeply_is_400_not_a_crash(svc) -> None:
    """A JSON bomb of 100 000 nested arrays (200 kB, a route without a size limit):
    Python's parser gives up with RecursionError, which was a 500."""
    status, headers, body = post_json(svc, "/batch", b"[" * 100_000 + b"]" * 100_000)
    assert status == 400
    assert problem(status, headers, body)["detail"] == \
        "the body is not valid JSON: it is nested too deeply"


def test_json_that_is_not_an_object_is_400(svc) -> None:
    status, headers, body = post_json(svc, "/predict", b"[1, 2]")
    assert status == 400
    assert problem(status, headers, body)["detail"] == \
        "the body must be a JSON object, not an array"


def test_body_over_the_limit_by_content_length_is_413(svc) -> None:
    status, headers, body = post_json(svc, "/predict", json.dumps({"x": "a" * 2000}).encode())
    assert status == 413
    assert "1000 bytes" in problem(status, headers, body)["detail"]


def test_chunked_body_growing_past_the_limit_is_413(svc) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    chunks = (b'{"x": "' + b"a" * 400, b"a" * 400, b"a" * 400 + b'"}')
    try:
        conn.request("POST", "/predict", body=iter(chunks), encode_chunked=True,
                     headers={"Content-Type": "application/json",
                              "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        status, headers, body = resp.status, resp.headers, resp.read()
    finally:
        conn.close()
    assert status == 413
    problem(status, headers, body)


def test_a_body_over_the_limit_is_refused_before_the_client_is_told_to_send_it(
        svc) -> None:
    """A client that asks `Expect: 100-continue` for 50 MB to a route that takes 1000
    bytes: waitress told it to send them. Now the 413 comes at once."""
    with socket.create_connection(("127.0.0.1", svc.port), timeout=2) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 50000000\r\nExpect: 100-continue\r\n\r\n")
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer
    assert b"Connection: close" in head
    assert json.loads(body)["detail"] == "the body is larger than 1000 bytes"


@pytest.mark.parametrize("framing", ["Content-Length: 30000000", "Transfer-Encoding: chunked"])
def test_a_body_over_the_limit_is_not_kept(svc, framing: str) -> None:
    """30 MB sent to a route that takes 1000 bytes: waitress kept all of it (in a
    temporary file, up to 1 GB a request) for the route to say 413. It is read and
    dropped now, and the connection stays open for the next request."""
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" \
        f"{framing}\r\n\r\n".encode()
    chunked = "chunked" in framing
    part = b"a" * 1_000_000
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as sock:
        sock.sendall(head)
        for _ in range(20):
            sock.sendall(b"f4240\r\n" + part + b"\r\n" if chunked else part)
        kept = temporary_files(svc.proc.pid)  # 20 MB sent, more than the kernel buffers
        for _ in range(10):
            sock.sendall(b"f4240\r\n" + part + b"\r\n" if chunked else part)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        refused = http.client.HTTPResponse(sock)
        refused.begin()
        detail = json.loads(refused.read())["detail"]
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
        after = http.client.HTTPResponse(sock)
        after.begin()
    assert kept == []
    assert (refused.status, detail) == (413, "the body is larger than 1000 bytes")
    assert (after.status, after.read()) == (200, b'{"plain":true}\n')


def temporary_files(pid: int) -> list[str]:
    """The deleted (temporary) files process `pid` has open."""
    links = (os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    return [link for link in links if link.endswith("(deleted)")]


def test_body_without_content_length_is_411_and_the_rest_is_not_parsed(svc) -> None:
    """AI4E crashed here. Without a length HTTP says there is no body: the bytes that
    follow are not a request either, so the connection is closed after the 411."""
    raw = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n"
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as sock:
        sock.sendall(raw + b'{"x": 1}')
        answer = _read_all(sock)  # until the server closes
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411 ") and b"Connection: close" in head
    assert json.loads(body)["status"] == 411  # one answer only: no 400 for '{"x": 1}'


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_handler_that_raises_is_500_without_traceback_and_logged(svc) -> None:
    status, headers, body = request(svc, "GET", "/boom", headers={"X-Request-ID": "req-boom-1"})
    assert status == 500
    doc = problem(status, headers, body)
    assert "/secret/path" not in body.decode() and "req-boom-1" in doc["detail"]
    wait_for(lambda: "ValueError: internal detail: /secret/path" in svc.output, 5,
             "the traceback in the log")
    assert "Traceback (most recent call last)" in svc.output


def test_a_handler_that_calls_sys_exit_is_500_problem(start_service) -> None:
    """SystemExit is no Exception: Flask let it through, and waitress's thread caught it
    without answering; the client waited for ever."""
    svc = start_service("""
        import sys
        from workspace_service import Service
        svc = Service("exits")

        @svc.endpoint("/exit")
        def exit_():
            sys.exit(3)

        @svc.app.get("/plain-exit")
        def plain_exit():
            sys.exit(4)

        svc.serve()
    """)
    answers = [request(svc, "GET", path) for path in ("/exit", "/plain-exit")]
    for status, headers, body in answers:
        assert status == 500
        problem(status, headers, body)
    assert request(svc, "GET", "/health")[0] == 200


def test_a_raised_problem_keeps_its_status_and_extra_members(svc) -> None:
    status, headers, body = request(svc, "GET", "/teapot")
    assert status == 418
    assert problem(status, headers, body)["hint"] == "tip me over"


def test_unknown_route_is_404_problem(svc) -> None:
    status, headers, body = request(svc, "GET", "/nowhere")
    assert status == 404
    problem(status, headers, body)


def test_wrong_method_is_405_problem_with_allow(svc) -> None:
    status, headers, body = request(svc, "DELETE", "/predict")
    assert status == 405
    problem(status, headers, body)
    assert "POST" in headers["Allow"]


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_probes_refuse_other_methods_with_405(svc, path: str) -> None:
    status, headers, body = request(svc, "POST", path, b"")
    assert status == 405
    problem(status, headers, body)
    assert headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(("raw", "detail"), [
    (b"GET /predict HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
     "Content-Length is invalid"),
    (b"GARBAGE\r\n\r\n", "Start line is invalid"),
    (b"GET /plain HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "Invalid header"),
    (b"get /plain HTTP/1.1\r\nHost: x\r\n\r\n", 'Malformed HTTP method "get"')])
def test_malformed_request_is_a_problem_too(svc, raw: bytes, detail: str) -> None:
    """waitress's own error answers are problem+json as well, also for a request it
    could not parse as far as its path (the connection was dropped unanswered)."""
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1:2] == [b"400"], answer
    assert b"Content-Type: application/problem+json" in head
    assert json.loads(body)["status"] == 400 and json.loads(body)["detail"] == detail


def test_parameterised_routes_and_plain_flask_routes_work(svc) -> None:
    assert request(svc, "GET", "/echo/hi%20there")[::2] == (200, b'{"text":"hi there"}\n')
    assert request(svc, "GET", "/plain")[0] == 200


def test_request_id_is_echoed_and_logged(svc) -> None:
    _, headers, _ = request(svc, "GET", "/plain", headers={"X-Request-ID": "trace-42"})
    assert headers["X-Request-ID"] == "trace-42"
    _, headers, _ = request(svc, "GET", "/plain")
    generated = headers["X-Request-ID"]
    assert len(generated) == 32
    wait_for(lambda: "GET /plain 200" in svc.output and f"id={generated}" in svc.output, 5,
             "the access log line")


def test_a_path_with_line_breaks_cannot_forge_log_lines(svc) -> None:
    """`%0A` in a path is a line break once decoded: it began a line of the client's
    choosing in the access log. Control characters are logged percent-encoded."""
    forged = "2026-01-01 00:00:00,000 INFO workspace_service: FORGED"
    status, _, _ = request(svc, "GET", "/echo/a%0A" + forged.replace(" ", "%20") + "%1B[2J")
    wait_for(lambda: "GET /echo/a%0A2026-01-01 00:00:00,000 INFO workspace_service: FORGED"
             "%1B[2J 200" in svc.output, 5, "the access line")
    assert status == 200
    assert not [line for line in svc.output.splitlines() if line.startswith(forged)]


def test_one_more_than_max_concurrent_gets_exactly_one_503(svc, gates: Path) -> None:
    """max_concurrent=2, three requests held at once: exactly one refused, at once."""
    results: list[tuple[int, Message, bytes]] = []
    threads = [threading.Thread(target=lambda: results.append(
        post_json(svc, "/predict", b'{"gate": "concurrency"}'))) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) >= 1, 10, "the refused request's answer")
        refused = list(results)
    finally:
        open_gate(gates, "concurrency")
        for thread in threads:
            thread.join(10)
    assert [r[0] for r in refused] == [503]
    status, headers, body = refused[0]
    assert headers["Retry-After"] == "1"
    problem(status, headers, body)
    assert sorted(r[0] for r in results) == [200, 200, 503]
