"""What importing the toolkit adds to a service's start, over Flask + waitress alone.

    python bench/toolkit_import.py [RUNS]      (default 21 runs per case)

Goal: at most 60 ms more than `import flask, waitress.server` (the toolkit
imports Redis, Prometheus and apispec only where used, never at import).
Cases run interleaved so that a slow moment of the machine hits both.
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TOOLKIT = Path(__file__).resolve().parent.parent / "toolkit"
BASELINE = "import flask, waitress.server"
TOOLKIT_IMPORT = "import workspace_service"
GOAL_MS = 60


def seconds(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - started


def importtime_ms(env: dict[str, str]) -> float:
    """The toolkit's own import, Flask and waitress already imported (`-X importtime`,
    cumulative): less noisy than timing whole interpreters on a loaded machine."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           f"{BASELINE}; {TOOLKIT_IMPORT}"], env=env, check=True,
                          capture_output=True, text=True)
    line = next(x for x in done.stderr.splitlines() if x.endswith("| workspace_service"))
    return int(line.split("|")[1]) / 1000


def main(runs: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TOOLKIT),
                                                         os.environ.get("PYTHONPATH", "")])}
    base, toolkit, own = [], [], []
    for _ in range(runs):
        base.append(seconds(BASELINE, env))
        toolkit.append(seconds(TOOLKIT_IMPORT, env))
        own.append(importtime_ms(env))
    b, t = statistics.median(base) * 1000, statistics.median(toolkit) * 1000
    print(f"baseline `{BASELINE}`: {b:.1f} ms (median of {runs})")
    print(f"`{TOOLKIT_IMPORT}`: {t:.1f} ms = {t / b:.2f}x, +{t - b:.1f} ms "
          f"(goal: +{GOAL_MS} ms at most) [load average {os.getloadavg()[0]:.1f}]")
    print(f"-X importtime of workspace_service after Flask + waitress: "
          f"{statistics.median(own):.1f} ms median, {min(own):.1f} ms min")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 21)
