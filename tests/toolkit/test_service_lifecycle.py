"""Health, readiness, base paths, keep-alive and the drain of a real service process."""

import ctypes
import http.client
import json
import os
import platform
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from helpers import http_get, wait_for
from toolkit_services import STANDARD, entered, open_gate

#: The tgkill system call's number (Linux): a signal to one thread of a process.
SYS_TGKILL = {"x86_64": 234, "aarch64": 131}[platform.machine()]


def get(svc, path: str, timeout: float = 5) -> tuple[int, dict] | None:
    answer = http_get(svc.url(path), timeout=timeout)
    return None if answer is None else (answer[0], json.loads(answer[1]))


def test_not_ready_while_startup_runs_and_endpoints_say_retry(start_service,
                                                               tmp_path: Path) -> None:
    svc = start_service(STANDARD, wait=False, GATE_DIR=str(tmp_path), STARTUP_GATE="startup")
    svc.wait_listening()
    assert get(svc, "/health") == (200, {"health": "true", "status": "ok"})
    assert get(svc, "/ready") == (503, {"status": "starting"})
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
    conn.request("POST", "/predict", b"{}", {"Content-Type": "application/json"})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert (resp.status, resp.headers["Retry-After"], doc["status"]) == (503, "1", 503)
    assert "starting" in doc["detail"]
    open_gate(tmp_path, "startup")
    svc.wait_ready()
    assert get(svc, "/ready") == (200, {"status": "ready"})


def test_a_request_in_the_last_moment_of_startup_waits_for_it(start_service,
                                                              tmp_path: Path) -> None:
    """A load balancer without a readiness probe (nginx) sends requests as soon as the
    port accepts: a POST that came while startup was finishing was answered 503, which
    nginx cannot pass on once sent (bench/replicas.py lost one in a rolling restart).
    It waits for startup, up to STARTING_HOLD, and is served."""
    svc = start_service(STANDARD, wait=False, GATE_DIR=str(tmp_path), STARTUP_GATE="startup")
    svc.wait_listening()
    opener = threading.Timer(0.3, open_gate, (tmp_path, "startup"))
    opener.start()
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
    try:
        conn.request("POST", "/predict", b"{}", {"Content-Type": "application/json"})
        status = conn.getresponse().status
    finally:
        conn.close()
        opener.join()
    assert status == 200


def test_a_startup_that_raises_fails_health_and_exits_1(start_service, tmp_path: Path) -> None:
    svc = start_service(STANDARD, wait=False, GATE_DIR=str(tmp_path), STARTUP_FAILS="1")
    svc.wait_listening()
    # The port opens before startup runs: it says "starting" until the startup raises.
    health = wait_for(lambda: (h := get(svc, "/health")) and h[0] != 200 and h, 5,
                      "/health to change from starting")
    ready = get(svc, "/ready")
    code = svc.wait(10)
    assert health == (500, {"health": "false", "status": "failed"})
    assert ready == (503, {"status": "failed"})
    assert code == 1
    assert "Traceback (most recent call last)" in svc.output
    assert svc.output.strip().splitlines()[-1].endswith(
        "startup failed: RuntimeError: model file is corrupt: exiting 1")


def test_a_startup_that_calls_sys_exit_fails_and_exits_1(start_service) -> None:
    """`sys.exit("model.pickle is missing")` in a startup function, run in a thread:
    SystemExit ended the thread unseen, and the service said "starting" for ever (alive,
    never ready, never restarted)."""
    svc = start_service("""
        import sys
        from workspace_service import Service
        svc = Service("exits")

        @svc.startup
        def load():
            sys.exit("model.pickle is missing")

        svc.serve()
    """, wait=False)
    code = svc.wait(10)
    assert code == 1
    assert svc.output.strip().splitlines()[-1].endswith(
        "startup failed: SystemExit: model.pickle is missing: exiting 1")


def test_a_stop_during_startup_exits_0_without_becoming_ready(start_service,
                                                               tmp_path: Path) -> None:
    svc = start_service(STANDARD, wait=False, GATE_DIR=str(tmp_path), STARTUP_GATE="never")
    svc.wait_listening()
    svc.signal(signal.SIGTERM)
    code = svc.wait(10)
    assert code == 0
    assert "workspace_service: ready" not in svc.output


def test_a_stop_signal_taken_by_any_thread_drains(start_service, tmp_path: Path) -> None:
    """The kernel gives a process's signal to any of its threads. Python runs handlers
    in the main thread only, between two bytecodes, and the main thread was blocked
    reading its wake-up pipe: a SIGTERM that another thread took was never acted on
    (the service ran on until SIGKILL; ~1 stop in 3 while startup was busy). tgkill
    sends it to one thread that is not the main one."""
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path))
    pid = svc.proc.pid
    thread = next(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(SYS_TGKILL, pid, thread, signal.SIGTERM) == 0, ctypes.get_errno()
    code = svc.wait(5)
    assert code == 0
    assert "SIGTERM: not ready" in svc.output


def test_a_signal_the_service_handles_itself_is_not_a_stop(start_service,
                                                          tmp_path: Path) -> None:
    """Every signal with a Python handler reaches the wake-up pipe: SIGUSR1, which the
    service's own code handles, must not start a drain."""
    handles_usr1 = "import signal\nsignal.signal(signal.SIGUSR1, lambda *_: print('usr1'))\n"
    svc = start_service(handles_usr1 + STANDARD, GATE_DIR=str(tmp_path))
    svc.signal(signal.SIGUSR1)
    wait_for(lambda: "usr1" in svc.output, 5, "the service's own handler")
    ready = get(svc, "/ready")
    svc.signal(signal.SIGTERM)
    code = svc.wait(5)
    assert ready == (200, {"status": "ready"})
    assert code == 0


def test_probes_answer_while_every_request_thread_is_busy(start_service,
                                                          tmp_path: Path) -> None:
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), THREADS="1")
    held = threading.Thread(target=http_get, args=(svc.url("/hold/busy"), 20))
    held.start()
    try:
        wait_for(lambda: entered(tmp_path, "busy"), 10, "the request to hold the thread")
        queued = http_get(svc.url("/plain"), timeout=0.5)  # waits for the one thread
        started = time.monotonic()
        health, ready = get(svc, "/health"), get(svc, "/ready")
        scrape = http_get(svc.url("/metrics"), timeout=5)
        probe_seconds = time.monotonic() - started
    finally:
        open_gate(tmp_path, "busy")
        held.join(20)
    assert queued is None, "the request thread was not busy: the test proves nothing"
    assert health == (200, {"health": "true", "status": "ok"})
    assert ready == (200, {"status": "ready"})
    assert scrape is not None and scrape[0] == 200 and b"http_requests_in_flight" in scrape[1]
    assert probe_seconds < 1


def test_probes_answer_while_many_clients_are_connected(start_service, tmp_path: Path) -> None:
    """150 clients connected at once (a burst of callers, a proxy's pool): waitress's
    default limit, 100 connections, stopped accepting any more, so the probes of a
    busy, healthy service timed out."""
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path))
    clients = []
    try:
        for _ in range(150):
            client = socket.create_connection(("127.0.0.1", svc.port), timeout=5)
            client.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n")  # a request under way
            clients.append(client)
        started = time.monotonic()
        health = get(svc, "/health", timeout=2)
        probe_seconds = time.monotonic() - started
    finally:
        for client in clients:
            client.close()
    assert health == (200, {"health": "true", "status": "ok"})
    assert probe_seconds < 1


def test_a_low_open_files_limit_lowers_the_connection_limit(start_service,
                                                           tmp_path: Path) -> None:
    """`ulimit -n 250` leaves room for 150 connections beside the service's own files:
    more would make accept() fail, and waitress retry it in a busy loop."""
    limited = "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (250, 250))\n"
    svc = start_service(limited + STANDARD, GATE_DIR=str(tmp_path))
    clients = []
    try:
        for _ in range(200):
            clients.append(socket.create_connection(("127.0.0.1", svc.port), timeout=5))
        wait_for(lambda: "no longer accepting" in svc.output, 5, "the limit to be reached")
    finally:
        for client in clients:
            client.close()
    health = wait_for(lambda: get(svc, "/health", timeout=1), 5, "the service to answer")
    assert "CONNECTION_LIMIT 1000 lowered to 150: at most 250 files may be open" in svc.output
    assert "accept() threw an exception" not in svc.output
    assert health == (200, {"health": "true", "status": "ok"})


@pytest.mark.parametrize("variable", ["API_PREFIX", "LAB_SERVICE_PATH"])
def test_base_path_moves_every_route_but_probes_stay_at_the_root(start_service, tmp_path: Path,
                                                                  variable: str) -> None:
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), **{variable: "/v1/iris/"})
    assert get(svc, "/v1/iris/echo/x") == (200, {"text": "x"})
    assert get(svc, "/v1/iris/plain") == (200, {"plain": True})
    assert get(svc, "/echo/x")[0] == 404
    for path in ("/health", "/ready", "/v1/iris/health", "/v1/iris/ready"):
        assert get(svc, path)[0] == 200, path
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
    conn.request("POST", "/v1/iris/batch", b"{}", {"Content-Type": "application/json"})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert resp.status == 202
    assert resp.headers["Location"] == doc["status_url"] == f"/v1/iris/tasks/{doc['task_id']}"
    assert get(svc, doc["status_url"])[0] == 200
    wait_for(lambda: "GET /v1/iris/echo/x 200" in svc.output, 5, "the full path in the log")


def test_keep_alive_reuses_the_connection_and_closes_it_when_idle(start_service,
                                                                   tmp_path: Path) -> None:
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), KEEPALIVE_TIMEOUT="1")
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        sockets, headers = [], []
        for _ in range(2):
            conn.request("GET", "/plain")
            resp = conn.getresponse()
            resp.read()
            sockets.append(conn.sock)
            headers.append(resp.headers["Connection"])
        started = time.monotonic()
        closed = conn.sock.recv(1)  # blocks until the server closes the idle connection
    finally:
        conn.close()
    assert sockets[0] is sockets[1] and headers == [None, None]
    assert closed == b""
    assert time.monotonic() - started < 5


def test_sigterm_drains_held_requests_after_the_delay(start_service, tmp_path: Path) -> None:
    """DRAIN_DELAY=1: /ready 503 at once, new requests served for 1 s, then new
    connections refused; every held request is still answered and the exit is 0."""
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), DRAIN_DELAY="1", DRAIN_TIMEOUT="10")
    names = [f"r{n}" for n in range(5)]
    answers: dict[str, tuple[int, bytes] | None] = {}
    threads = [threading.Thread(target=lambda n=n: answers.update(
        {n: http_get(svc.url(f"/hold/{n}"), timeout=20)})) for n in names]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: all(entered(tmp_path, n) for n in names), 10, "requests in flight")
        svc.signal(signal.SIGTERM)
        wait_for(lambda: get(svc, "/ready") == (503, {"status": "draining"}), 5,
                 "/ready to say draining")
        svc.signal(signal.SIGTERM)  # a second one does not cut the drain short
        during_delay = get(svc, "/echo/late"), get(svc, "/plain"), get(svc, "/health")
        wait_for(lambda: http_get(svc.url("/plain"), timeout=1) is None, 5,
                 "new connections to be refused")
        still_running = svc.proc.poll() is None
        for n in names:
            open_gate(tmp_path, n)
        code = svc.wait(15)
    finally:
        for n in names:
            open_gate(tmp_path, n)
        for thread in threads:
            thread.join(20)
    assert during_delay == ((200, {"text": "late"}), (200, {"plain": True}),
                            (200, {"health": "true", "status": "ok"}))
    assert still_running
    assert answers == {n: (200, f'{{"held":"{n}"}}\n'.encode()) for n in names}
    assert code == 0


def test_a_connection_opened_before_the_stop_gets_its_answer(start_service,
                                                            tmp_path: Path) -> None:
    """A proxy connects, then sends its request a moment later (nginx, a pooled client):
    a drain that began in between answers it instead of resetting the connection."""
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), DRAIN_TIMEOUT="5")
    held = threading.Thread(target=http_get, args=(svc.url("/hold/keep"), 20))
    held.start()  # keeps the drain going while the late request comes
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
    try:
        wait_for(lambda: entered(tmp_path, "keep"), 10, "a request in flight")
        conn.connect()  # accepted, nothing sent yet
        wait_for(lambda: http_get(svc.url("/health")), 5,
                 "the server's loop to have taken the connection")
        svc.signal(signal.SIGTERM)
        wait_for(lambda: http_get(svc.url("/plain"), timeout=1) is None, 5,
                 "the listener to close")
        conn.request("GET", "/echo/late")
        resp = conn.getresponse()
        answer = resp.status, json.loads(resp.read())
        open_gate(tmp_path, "keep")
        code = svc.wait(15)
    finally:
        conn.close()
        open_gate(tmp_path, "keep")
        held.join(20)
    assert answer == (200, {"text": "late"})
    assert code == 0


def test_a_request_unanswered_at_drain_timeout_exits_1(start_service, tmp_path: Path) -> None:
    """A request still running after DRAIN_TIMEOUT is lost when the process ends: say so."""
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), DRAIN_TIMEOUT="0.3")
    held = threading.Thread(target=http_get, args=(svc.url("/hold/forever"), 20))
    held.start()
    try:
        wait_for(lambda: entered(tmp_path, "forever"), 10, "the request in flight")
        svc.signal(signal.SIGTERM)
        code = svc.wait(10)
    finally:
        open_gate(tmp_path, "forever")
        held.join(20)
    assert code == 1
    assert svc.output.strip().splitlines()[-1].endswith(
        "drain timed out: 1 request(s) unanswered")


def test_serve_any_wsgi_app_keeps_its_own_health_and_drains(start_service,
                                                            tmp_path: Path) -> None:
    source = """
        import os, pathlib, time
        import flask
        from workspace_service import serve

        app = flask.Flask("plain")
        gates = pathlib.Path(os.environ["GATE_DIR"])

        @app.get("/health")
        def health():
            return {"mine": True}

        @app.get("/hold")
        def hold():
            (gates / "entered-hold").touch()
            while not (gates / "hold").exists():
                time.sleep(0.005)
            return {"held": True}

        serve(app)
    """
    svc = start_service(source, GATE_DIR=str(tmp_path))
    assert get(svc, "/health") == (200, {"mine": True})
    assert get(svc, "/ready") == (200, {"status": "ready"})
    answer: list = []
    held = threading.Thread(target=lambda: answer.append(http_get(svc.url("/hold"), 20)))
    held.start()
    try:
        wait_for(lambda: entered(tmp_path, "hold"), 10, "the request in flight")
        svc.signal(signal.SIGINT)
        wait_for(lambda: http_get(svc.url("/ready"), timeout=1) is None, 5, "refusing")
        open_gate(tmp_path, "hold")
        code = svc.wait(15)
    finally:
        open_gate(tmp_path, "hold")
        held.join(20)
    assert answer == [(200, b'{"held":true}\n')]
    assert code == 0
    assert "GET /hold 200" in svc.output


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("DRAIN_DELAY", "soon", "be a number"), ("PORT", "-1", "be at least 0"),
    ("THREADS", "0", "be at least 1"), ("CONNECTION_LIMIT", "0", "be at least 1")])
def test_a_bad_setting_is_one_error_line_at_start(start_service, tmp_path: Path,
                                                  variable: str, value: str, says: str) -> None:
    svc = start_service(STANDARD, wait=False, GATE_DIR=str(tmp_path), **{variable: value})
    code = svc.wait(15)
    assert code == 1
    assert svc.output.strip().splitlines() == [f"error: {variable} must {says}, got {value!r}"]


def test_a_queue_behind_busy_threads_is_warned_of_once_a_second(start_service,
                                                                tmp_path: Path) -> None:
    """waitress warns of every request that waits for a thread: under load, a log line
    per request, costlier than the request. The toolkit sums them up: the deepest
    queue, at most once a second."""
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), THREADS="1")
    held = threading.Thread(target=http_get, args=(svc.url("/hold/first"), 20))
    held.start()
    try:
        wait_for(lambda: entered(tmp_path, "first"), 10, "the only thread to be busy")
        queued = [threading.Thread(target=http_get, args=(svc.url("/echo/x"), 20))
                  for _ in range(8)]
        for thread in queued:
            thread.start()
        wait_for(lambda: "Task queue depth" in svc.output, 10, "the queue warning")
        open_gate(tmp_path, "first")
        for thread in queued:
            thread.join(20)
    finally:
        open_gate(tmp_path, "first")
        held.join(20)
    warnings = [line for line in svc.output.splitlines() if "Task queue depth" in line]
    assert len(warnings) == 1, warnings
