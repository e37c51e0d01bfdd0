"""Graceful stop: 20 concurrent 2-second requests, SIGTERM 0.5 s after they started.

    python bench/stop.py

Prints, per way of serving, how many of the 20 requests completed with 200,
what a new request made 0.1 s after the signal got (and `/ready` then), and
the exit status.
  - examples/hello-service (on the toolkit) through the runner (SIGTERM to the
    runner, which forwards it); then again with DRAIN_DELAY=2, where the new
    request must still be served while `/ready` says 503;
  - baseline: the same Flask view served by plain `waitress.serve` (32
    threads, no stop handling), SIGTERM to it directly;
  - for reference: that plain waitress through the runner with `--stop-signal INT`.
Goal: 20 of 20 through the toolkit, and with the delay the new request answered 200.
"""

import http.client
import os
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from common import (
    PYTHON,
    ROOT,
    ensure_example_requirements,
    free_port,
    load_note,
    runner_example,
    started,
    wait_200,
)

CONCURRENT = 20
SLOW_SECONDS = 2
SIGNAL_AFTER = 0.5
PROBE_AFTER = 0.1

THREADS = 32  # request threads of every server here, so that all 20 run at once
PLAIN_WAITRESS = f"""\
import os, time, flask, waitress
app = flask.Flask("hello")

@app.get("/")
def index():
    return {{"message": "hello"}}

@app.get("/health")
def health():
    return {{"status": "ok"}}

@app.get("/slow")
def slow():
    seconds = flask.request.args.get("seconds", 1.0, type=float)
    time.sleep(seconds)
    return {{"slept": seconds}}

waitress.serve(app, host="127.0.0.1", port=int(os.environ["PORT"]), threads={THREADS})
"""
#: The toolkit of this checkout, for the example's `import workspace_service`.
TOOLKIT_ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "toolkit"),
                                                           os.environ.get("PYTHONPATH")])),
               "THREADS": str(THREADS)}


def slow_request(port: int, results: list[str], index: int) -> None:
    """One slow GET; its outcome: the status, or the name of the error."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SLOW_SECONDS + 10)
    try:
        conn.request("GET", f"/slow?seconds={SLOW_SECONDS}")
        response = conn.getresponse()
        response.read()
        results[index] = str(response.status)
    except (OSError, http.client.HTTPException) as exc:
        results[index] = type(exc).__name__
    finally:
        conn.close()


def new_connection(port: int, path: str = "/") -> str:
    """What a client that arrives during the stop gets for GET `path`."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    except ConnectionRefusedError:
        return "refused"
    with sock:
        try:
            sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            reply = sock.recv(100)
        except ConnectionResetError:
            return "accepted, then reset"
        except TimeoutError:
            return "accepted, no answer in 3 s"
    if not reply:
        return "accepted, then closed"
    return f"answered {reply.split(b' ')[1].decode()}"


def trial(name: str, argv: Sequence[str], port: int,
          env: dict[str, str] | None = None) -> tuple[int, str]:
    """Fire the requests, signal 0.5 s later, report what the clients saw:
    (requests completed, what the new request got)."""
    results = ["no answer"] * CONCURRENT
    with started(argv, port, env) as process:
        wait_200(process)
        clients = [threading.Thread(target=slow_request, args=(port, results, i))
                   for i in range(CONCURRENT)]
        fired = time.monotonic()
        for client in clients:
            client.start()
        time.sleep(max(0.0, fired + SIGNAL_AFTER - time.monotonic()))  # the scenario's timing
        process.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(PROBE_AFTER)
        newcomer, ready = new_connection(port), new_connection(port, "/ready")
        for client in clients:
            client.join(SLOW_SECONDS + 15)
        returncode = process.proc.wait(30)
        took = time.monotonic() - signalled
    outcomes = Counter(results)
    completed = outcomes.pop("200", 0)
    failed = ", ".join(f"{n} {what}" for what, n in outcomes.items()) or "none"
    status = 128 - returncode if returncode < 0 else returncode  # as a shell shows it
    print(f"{name}:\n  completed {completed} of {CONCURRENT} (failed: {failed}); "
          f"new GET /: {newcomer}, /ready: {ready}; exit status {status} after {took:.2f} s")
    return completed, newcomer


def main() -> None:
    ensure_example_requirements()
    print(f"{CONCURRENT} concurrent {SLOW_SECONDS} s requests, SIGTERM {SIGNAL_AFTER} s "
          f"after they started, a new connection {PROBE_AFTER} s after the signal\n")
    port = free_port()
    ours, _ = trial("examples/hello-service (the toolkit) through the runner (SIGTERM forwarded)",
                    runner_example(port, "--code-only"), port, TOOLKIT_ENV)
    port = free_port()
    delayed, newcomer = trial("the same with DRAIN_DELAY=2 (new requests served, /ready 503)",
                              runner_example(port, "--code-only"), port,
                              {**TOOLKIT_ENV, "DRAIN_DELAY": "2"})
    port = free_port()
    baseline, _ = trial("baseline: the same view on plain waitress.serve, no stop handling",
                        [PYTHON, "-c", PLAIN_WAITRESS], port)
    with tempfile.TemporaryDirectory(prefix="bench-plain-waitress-") as folder:
        (Path(folder) / "__main__.py").write_text(PLAIN_WAITRESS)
        port = free_port()
        trial("reference: plain waitress through the runner with --stop-signal INT",
              [PYTHON, "-m", "runner", folder, "--code-only", "--port", str(port),
               "--stop-signal", "INT"], port)
    print(f"\ncompleted through the runner: {ours} of {CONCURRENT} ({delayed} with the delay, "
          f"its new request: {newcomer}), baseline (waitress alone): {baseline} of {CONCURRENT}")
    print(load_note())


if __name__ == "__main__":
    main()
