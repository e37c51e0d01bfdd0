"""Crash recovery: kill -9 the example's service process (not the runner) and time
how long until it answers HTTP 200 again.

    python bench/restart.py [CRASHES]      (default 7)

The runner restarts a service that had come up at once (no backoff), so the
time is noticing the exit plus a cold start. The baseline, measured in the same
run, is that cold start alone: the bare example from launch to first 200.
"""

import os
import signal
import statistics
import sys
import time

from common import (
    alive,
    bare_example,
    children,
    ensure_example_requirements,
    free_port,
    load_note,
    median_ms,
    runner_example,
    started,
    wait_200,
    wait_until,
)

COLD_STARTS = 5
READY_LINE = "service ready on"


def service_pid(runner_pid: int) -> int:
    """The service: the one child of the runner's one child, its keeper (`runner/keeper.py`).

    With --code-only the runner starts nothing else.
    """
    found: list[int] = []

    def one_service() -> bool:
        keepers = children(runner_pid)
        found[:] = children(keepers[0]) if len(keepers) == 1 else []
        return len(found) == 1

    wait_until(one_service, 10, f"the service of the runner (pid {runner_pid})")
    return found[0]


def crash_times(crashes: int) -> list[float]:
    """Seconds from each kill -9 of the service to the next HTTP 200."""
    port = free_port()
    times = []
    with started(runner_example(port, "--code-only"), port) as runner:
        wait_200(runner)
        for crash in range(crashes):
            # Crash only once the runner has seen this start come up: a start that
            # never came up is a quick failure and rightly gets a backoff delay.
            wait_until(lambda n=crash: runner.output().count(READY_LINE) > n, 10,
                       "the runner's `service ready` line")
            pid = service_pid(runner.proc.pid)
            crashed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda pid=pid: not alive(pid), 5, f"service pid {pid} to die")
            times.append(wait_200(runner) - crashed)
    return times


def cold_starts() -> list[float]:
    """Seconds from launch to first 200 of the bare example, COLD_STARTS times."""
    times = []
    for _ in range(COLD_STARTS):
        with started(bare_example(0)) as process:
            times.append(process.wait_200())
    return times


def main(crashes: int) -> None:
    ensure_example_requirements()
    restarts = crash_times(crashes)
    cold = cold_starts()
    ratio = statistics.median(restarts) / statistics.median(cold)
    print(f"kill -9 of the service -> next HTTP 200, through the runner: {median_ms(restarts)}")
    print(f"baseline, bare cold start (launch -> first 200):          {median_ms(cold)}")
    print(f"ratio restart / cold start: {ratio:.2f}x "
          f"({(statistics.median(restarts) - statistics.median(cold)) * 1000:+.0f} ms)")
    print(load_note())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
