"""The second start of a conda service against `--code-only`: what reusing costs.

    python bench/conda_startup.py [RUNS]      (default 7 runs per case, at least 5)

A service whose environment.yml asks for a Python and a module from a local
channel (tests/condachannel.py) is installed once; then, interleaved, a full
start (which must find its environment: no solve, no link) and a `--code-only`
start are timed from launch to the first HTTP 200 (what a user sees) and to
the runner's "service started" line (the runner's own part, without the
service's start-up and the readiness polling, which vary by tens of ms).
Prints the medians, the differences (goal: under 200 ms) and the ratios.
"""

import datetime
import re
import statistics
import sys
import tempfile
from pathlib import Path

from common import PYTHON, ROOT, free_port, median_ms, started

sys.path.insert(0, str(ROOT / "tests"))

from condachannel import build_channel
from helpers import run_runner, write_service

GOAL_MS = 200
STARTED_LINE = re.compile(r"^\[runner (\d\d:\d\d:\d\d\.\d{3})\] service started", re.M)


def start_once(svc: Path, cache: str, *flags: str) -> tuple[float, float]:
    """Seconds from launch to the first HTTP 200, and to "service started"."""
    port = free_port()
    argv = [PYTHON, "-m", "runner", str(svc), "--port", str(port), *flags]
    launched = datetime.datetime.now()
    with started(argv, port, {"XDG_CACHE_HOME": cache}) as process:
        to_200 = process.wait_200("/")
        output = process.output()
    if not flags and ("solved" in output or "linked" in output):
        raise SystemExit(f"the second start solved or linked again:\n{output}")
    return to_200, _seconds_to_started(launched, output)


def _seconds_to_started(launched: datetime.datetime, output: str) -> float:
    """From launch to the runner's own (millisecond-stamped) "service started" line."""
    found = STARTED_LINE.search(output)
    if not found:
        raise SystemExit(f"no 'service started' line:\n{output}")
    clock = datetime.datetime.strptime(found[1], "%H:%M:%S.%f").time()
    stamp = datetime.datetime.combine(launched.date(), clock)
    if stamp < launched - datetime.timedelta(hours=1):  # the run crossed midnight
        stamp += datetime.timedelta(days=1)
    return (stamp - launched).total_seconds()


def main(runs: int) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-conda-") as tmp:
        channel = build_channel(Path(tmp) / "channel")
        svc = write_service(Path(tmp) / "svc", "import condamod", reply="ok")
        (svc / "environment.yml").write_text(
            f"channels: [{channel}]\ndependencies: [python, condamod]\n")
        cache = str(Path(tmp) / "cache")  # the runner's per-user cache: $XDG_CACHE_HOME
        first = run_runner([svc, "--requirements-only"], env={"XDG_CACHE_HOME": cache,
                                                              "RUNNER_CACHE_DIR": ""})
        if first.proc.returncode != 0:
            raise SystemExit(f"installing failed:\n{first.stderr}")
        full, code_only = [], []
        for _ in range(runs):  # interleaved, so a slow moment hits both cases alike
            full.append(start_once(svc, cache))
            code_only.append(start_once(svc, cache, "--code-only"))
    worst = 0.0
    for index, what in ((0, "first HTTP 200"), (1, "'service started'")):
        a, b = [r[index] for r in code_only], [r[index] for r in full]
        diff = (statistics.median(b) - statistics.median(a)) * 1000
        worst = max(worst, diff)
        print(f"launch to {what}:")
        print(f"  --code-only:                        {median_ms(a)}")
        print(f"  second start with environment.yml:  {median_ms(b)}  "
              f"ratio {statistics.median(b) / statistics.median(a):.2f}, "
              f"{diff:+.0f} ms (goal: under {GOAL_MS} ms)")
    return 0 if worst < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main(max(5, int(sys.argv[1]) if len(sys.argv) > 1 else 7)))
