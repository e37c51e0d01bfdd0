"""Crash recovery: kill -9 the service process (not the runner) and time how long
until it answers HTTP 200 again.

    python bench/restart.py [CRASHES]      (default 7)

Two services, side by side in one run:
- light: the example (flask + waitress). The runner restarts a service that had
  been up at once, so the time is noticing the exit plus a cold start; the
  baseline is that cold start alone, the bare example from launch to first 200.
- heavy: a flask app importing pandas and scikit-learn (the lecture's iris API),
  from a bench venv installed from PyPI once (~/.cache/workspace-runner-bench).
  Cold restarts against `--standby` restarts (a spare interpreter with those
  imports done becomes the service). Goal: standby <= 0.2x cold. The spare's
  memory (RSS) and the CPU it used while waiting are printed too.

Each crash comes only after the run has been up `--min-uptime` (1 s here; 10 s
by default): a shorter run is a quick failure and rightly waits for the backoff.
With --standby it also waits for the next spare to be ready.
"""

import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common import (
    EXAMPLE,
    HEAVY_PACKAGES,
    PYTHON,
    Started,
    alive,
    bare_example,
    bench_venv,
    ensure_example_requirements,
    free_port,
    load_note,
    median_ms,
    started,
    wait_200,
    wait_until,
)

COLD_STARTS = 5
MIN_UPTIME = 1.0
IDLE_SAMPLE = 5.0  # seconds a spare is left waiting once, to see what waiting costs
HEAVY_APP = '''\
import os

import pandas as pd
from flask import Flask
from sklearn.tree import DecisionTreeClassifier

frame = pd.DataFrame({"width": [0.2, 1.4, 2.1, 0.3], "kind": [0, 1, 2, 0]})
model = DecisionTreeClassifier().fit(frame[["width"]], frame["kind"])
app = Flask(__name__)


@app.get("/health")
def health():
    return {"kind": int(model.predict(pd.DataFrame({"width": [1.5]}))[0])}


app.run(host="127.0.0.1", port=int(os.environ["PORT"]))
'''


def logged_pids(output: str, what: str) -> list[int]:
    """The pids in the runner's `service started (pid N)` or `spare interpreter (pid N)` lines."""
    return [int(p) for p in re.findall(rf"{what} \(pid (\d+)\)", output)]


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process so far, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


class Spares:
    """What the waiting spares cost: their RSS, and the CPU one used while left waiting."""

    def __init__(self) -> None:
        self.rss: list[float] = []
        self.idle_cpu = 0.0
        self.idle_for = 0.0

    def wait_for_next(self, runner: Started, crash: int) -> None:
        """Wait until the spare for the next restart is ready; sample what it costs."""
        wait_until(lambda: runner.output().count("standby: the spare") > crash, 60,
                   "the next spare to be ready")
        pid = logged_pids(runner.output(), "spare interpreter")[-1]
        if crash == 0:  # left waiting a while once, to see what waiting costs
            ready, ticks = time.monotonic(), cpu_ticks(pid)
            wait_until(lambda: time.monotonic() - ready >= IDLE_SAMPLE, IDLE_SAMPLE + 1,
                       "the idle sample")
            self.idle_cpu = (cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK")
            self.idle_for = time.monotonic() - ready
        self.rss.append(rss_mb(pid))


def crash_times(argv: Sequence[str], env: dict[str, str], crashes: int,
                spares: Spares | None = None) -> list[float]:
    """Seconds from each kill -9 of the service to the next HTTP 200."""
    port = free_port()
    times = []
    with started([*argv, "--port", str(port), "--min-uptime", str(MIN_UPTIME)], port,
                 env) as runner:
        up_since = wait_200(runner)
        for crash in range(crashes):
            wait_until(lambda n=crash: runner.output().count("service ready on") > n, 60,
                       "the runner's `service ready` line")
            if spares is not None:
                spares.wait_for_next(runner, crash)
            wait_until(lambda since=up_since: time.monotonic() - since >= MIN_UPTIME, 10,
                       "--min-uptime to pass")
            pid = logged_pids(runner.output(), "service started")[-1]
            crashed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda pid=pid: not alive(pid), 5, f"service pid {pid} to die")
            up_since = wait_200(runner)
            times.append(up_since - crashed)
    return times


def cold_starts(argv: Sequence[str]) -> list[float]:
    """Seconds from launch to first 200 of a bare service, COLD_STARTS times."""
    times = []
    for _ in range(COLD_STARTS):
        with started(argv) as process:
            times.append(process.wait_200())
    return times


def runner_argv(code: Path) -> list[str]:
    return [PYTHON, "-m", "runner", str(code), "--code-only"]


def light(crashes: int) -> None:
    ensure_example_requirements()
    restarts = crash_times(runner_argv(EXAMPLE), {}, crashes)
    cold = cold_starts(bare_example(0))
    ratio = statistics.median(restarts) / statistics.median(cold)
    print(f"light: kill -9 -> next HTTP 200, through the runner: {median_ms(restarts)}")
    print(f"light: baseline, bare cold start (launch -> 200):    {median_ms(cold)}")
    print(f"light: ratio restart / cold start: {ratio:.2f}x "
          f"({(statistics.median(restarts) - statistics.median(cold)) * 1000:+.0f} ms)")


def heavy(crashes: int) -> None:
    python = bench_venv("heavy", HEAVY_PACKAGES)
    with tempfile.TemporaryDirectory(prefix="bench-heavy-") as tmp:
        app = Path(tmp) / "__main__.py"
        app.write_text(HEAVY_APP)
        env = {"RUNNER_PYTHON": str(python)}
        cold_restarts = crash_times(runner_argv(app.parent), env, crashes)
        spares = Spares()
        warm = crash_times([*runner_argv(app.parent), "--standby"], env, crashes, spares)
        bare = cold_starts([str(python), str(app)])
    ratio = statistics.median(warm) / statistics.median(cold_restarts)
    print("heavy (pandas + scikit-learn + flask), kill -9 -> next HTTP 200:")
    print(f"heavy: cold restart:          {median_ms(cold_restarts)}")
    print(f"heavy: --standby restart:     {median_ms(warm)}")
    print(f"heavy: bare cold start:       {median_ms(bare)}")
    print(f"heavy: ratio standby / cold restart: {ratio:.2f}x (goal <= 0.20)")
    print(f"heavy: spare's RSS {statistics.median(spares.rss):.0f} MB (median of "
          f"{len(spares.rss)}); CPU while waiting: {spares.idle_cpu * 1000:.0f} ms "
          f"in {spares.idle_for:.1f} s")


def main(crashes: int) -> None:
    light(crashes)
    heavy(crashes)
    print(load_note())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
