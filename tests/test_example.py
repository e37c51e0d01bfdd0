"""The example users copy (examples/hello-service, on the toolkit), run through the real runner.

It must answer on `/` and `/health`, and on SIGTERM finish every request in
flight while refusing new connections, then exit 0 so the runner exits 0; a
request that outlasts the drain limit makes it give up and exit 1. With
DRAIN_DELAY it goes on serving for that long while `/ready` says 503. The
toolkit comes from this checkout (PYTHONPATH), as the example's
requirements.txt would install it.
"""

import glob
import http.client
import json
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import flask  # noqa: F401 - the example needs flask and waitress (the `test` extra)
import pytest
import waitress  # noqa: F401
from helpers import ROOT, RunnerProcess, pid_alive, wait_for

EXAMPLE = ROOT / "examples" / "hello-service"
SLOW_SECONDS = 2
TOOLKIT_PATH = os.pathsep.join(filter(None, [str(ROOT / "toolkit"), os.environ.get("PYTHONPATH")]))


@pytest.fixture
def start_example() -> Iterator[Callable[..., RunnerProcess]]:
    """Start the example through the runner; whatever is still running is killed after."""
    runners: list[RunnerProcess] = []

    def start(env: dict[str, str] | None = None) -> RunnerProcess:
        runners.append(RunnerProcess([EXAMPLE, "--code-only"],
                                     env={"PYTHONPATH": TOOLKIT_PATH, **(env or {})}))
        runners[-1].wait_http("/health")
        return runners[-1]

    yield start
    for runner in runners:
        runner.kill()


def start_slow_requests(
    runner: RunnerProcess, count: int, seconds: float, results: list[object]
) -> list[threading.Thread]:
    """`count` slow GETs in threads; returns once the service has read them all.

    Each result is (status, body), or the exception the client got.
    """
    sent = threading.Semaphore(0)

    def slow_request() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=10)
        conn.request("GET", f"/slow?seconds={seconds}")
        sent.release()
        try:
            response = conn.getresponse()
            results.append((response.status, response.read()))
        except (OSError, http.client.HTTPException) as exc:
            results.append(exc)

    clients = [threading.Thread(target=slow_request) for _ in range(count)]
    for client in clients:
        client.start()
    for _ in clients:
        assert sent.acquire(timeout=5)
    wait_for(lambda: requests_read_by_server(runner.port, count), 5,
             f"{count} requests in flight")
    return clients


def service_pid(runner_pid: int) -> int:
    """The runner's one child process: the service."""
    children = []
    for path in glob.glob(f"/proc/{runner_pid}/task/*/children"):
        children += map(int, Path(path).read_text().split())
    assert len(children) == 1, f"expected one service process, got {children}"
    return children[0]


def requests_read_by_server(port: int, count: int) -> bool:
    """Whether `count` connections to `port` are open with nothing left unread.

    A request the server has not read yet would not count as in flight for it.
    """
    unread = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
            unread.append(int(fields[4].split(":")[1], 16))  # rx_queue
    return len(unread) == count and not any(unread)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_example_answers_root_and_health(start_example: Callable[..., RunnerProcess]) -> None:
    runner = start_example()
    health = runner.get("/health")
    assert health is not None and json.loads(health[1]) == {"health": "true", "status": "ok"}
    status, body = runner.get("/")
    assert status == 200 and "hello" in json.loads(body)["message"]
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 0


def test_sigterm_finishes_requests_in_flight_and_refuses_new_ones(
    start_example: Callable[..., RunnerProcess],
) -> None:
    runner = start_example()
    pid = service_pid(runner.proc.pid)
    results: list[object] = []
    clients = start_slow_requests(runner, 5, SLOW_SECONDS, results)

    runner.signal(signal.SIGTERM)
    wait_for(lambda: refused(runner.port), 5, "new connections to be refused")
    assert results == [], "the refusal came only after the requests had finished"
    for client in clients:
        client.join(timeout=10)

    assert results == [(200, b'{"slept":2.0}\n')] * 5
    assert runner.finish() == 0
    assert not pid_alive(pid)


def test_stop_gives_up_after_the_drain_limit(
    start_example: Callable[..., RunnerProcess],
) -> None:
    runner = start_example(env={"DRAIN_TIMEOUT": "0.5"})
    pid = service_pid(runner.proc.pid)
    results: list[object] = []
    clients = start_slow_requests(runner, 1, 30, results)

    runner.signal(signal.SIGTERM)
    assert runner.finish(timeout=10) == 1
    assert "drain timed out: 1 request(s) unanswered" in runner.stdout
    clients[0].join(timeout=5)
    assert isinstance(results[0], ConnectionError)
    assert not pid_alive(pid)


def test_drain_delay_keeps_serving_while_ready_says_503(
    start_example: Callable[..., RunnerProcess],
) -> None:
    runner = start_example(env={"DRAIN_DELAY": "2"})
    runner.signal(signal.SIGTERM)
    wait_for(lambda: runner.get("/ready") == (503, b'{"status": "draining"}'), 2,
             "/ready to say draining")
    during = runner.get("/")
    wait_for(lambda: refused(runner.port), 5, "new connections to be refused after the delay")
    assert runner.finish() == 0
    assert during is not None and during[0] == 200
