"""Graceful stop: 20 concurrent 2-second requests, SIGTERM 0.5 s after they started.

    python bench/stop.py

Prints, per way of serving, how many of the 20 requests completed with 200,
what a new connection made 0.1 s after the signal got, and the exit status.
  - the example through the runner (SIGTERM to the runner, which forwards it);
  - baseline: the same Flask app served by plain `waitress.serve` (same 32
    threads, no stop handling), SIGTERM to it directly;
  - for reference: that plain waitress through the runner with `--stop-signal INT`.
"""

import http.client
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from common import (
    EXAMPLE,
    PYTHON,
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

PLAIN_WAITRESS = f"""\
import os, runpy, waitress
app = runpy.run_path({str(EXAMPLE / "__main__.py")!r}, run_name="hello")["app"]
waitress.serve(app, host="127.0.0.1", port=int(os.environ["PORT"]), threads=32)
"""


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


def new_connection(port: int) -> str:
    """What a client that arrives during the stop gets."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    except ConnectionRefusedError:
        return "refused"
    with sock:
        try:
            sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            reply = sock.recv(100)
        except ConnectionResetError:
            return "accepted, then reset"
        except TimeoutError:
            return "accepted, no answer in 3 s"
    if not reply:
        return "accepted, then closed"
    return f"answered {reply.split(b' ')[1].decode()}"


def trial(name: str, argv: Sequence[str], port: int) -> int:
    """Fire the requests, signal 0.5 s later, report what the clients saw."""
    results = ["no answer"] * CONCURRENT
    with started(argv, port) as process:
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
        newcomer = new_connection(port)
        for client in clients:
            client.join(SLOW_SECONDS + 15)
        returncode = process.proc.wait(30)
        took = time.monotonic() - signalled
    outcomes = Counter(results)
    completed = outcomes.pop("200", 0)
    failed = ", ".join(f"{n} {what}" for what, n in outcomes.items()) or "none"
    status = 128 - returncode if returncode < 0 else returncode  # as a shell shows it
    print(f"{name}:\n  completed {completed} of {CONCURRENT} (failed: {failed}); "
          f"new connection: {newcomer}; exit status {status} after {took:.2f} s")
    return completed


def main() -> None:
    ensure_example_requirements()
    print(f"{CONCURRENT} concurrent {SLOW_SECONDS} s requests, SIGTERM {SIGNAL_AFTER} s "
          f"after they started, a new connection {PROBE_AFTER} s after the signal\n")
    port = free_port()
    ours = trial("examples/hello-service through the runner (SIGTERM forwarded)",
                 runner_example(port, "--code-only"), port)
    port = free_port()
    baseline = trial("baseline: the same app on plain waitress.serve, no stop handling",
          [PYTHON, "-c", PLAIN_WAITRESS], port)
    with tempfile.TemporaryDirectory(prefix="bench-plain-waitress-") as folder:
        (Path(folder) / "__main__.py").write_text(PLAIN_WAITRESS)
        port = free_port()
        trial("reference: plain waitress through the runner with --stop-signal INT",
              [PYTHON, "-m", "runner", folder, "--code-only", "--port", str(port),
               "--stop-signal", "INT"], port)
    print(f"\ncompleted through the runner: {ours} of {CONCURRENT}, "
          f"baseline (waitress alone): {baseline} of {CONCURRENT}")
    print(load_note())


if __name__ == "__main__":
    main()
