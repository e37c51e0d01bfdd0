"""What containment costs per child: a contained start (`proc.spawn`, its keeper) vs a bare one.

    python bench/containment.py [RUNS]      (default 200 starts per case)

Each case starts `true` and waits until it (and, contained, its keeper) is
gone, as the runner does for every tool and service start. The baseline is
how the runner started children before the keeper: `subprocess.Popen` in a
new process group with a parent-death signal (`preexec_fn`). Cases run
interleaved so a busy moment of the machine does not land on one of them.
Goal: a few milliseconds at most per child (the runner starts 1-3 before the
service serves); an extra Python interpreter per child would cost ~15 ms.
"""

import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner import proc

TRUE = shutil.which("true") or "/bin/true"
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _pdeathsig() -> None:
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def bare() -> None:
    """The baseline: the runner's start before containment."""
    child = subprocess.Popen([TRUE], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, process_group=0, preexec_fn=_pdeathsig)
    child.wait()
    for pipe in (child.stdout, child.stderr):
        if pipe is not None:
            pipe.close()


def contained() -> None:
    """`proc.spawn` (keeper, subreaper, own group) and `proc.end`, as every child now."""
    child = proc.spawn([TRUE], cwd=Path.cwd(), env=os.environ)
    child.wait()
    proc.end(child)


def measure(case: Callable[[], None]) -> float:
    started = time.perf_counter()
    case()
    return (time.perf_counter() - started) * 1000


def main(runs: int) -> None:
    cases = {"a: bare Popen (process group + parent-death signal)": bare,
             "b: contained proc.spawn (keeper)": contained}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, case in cases.items():
            times[name].append(measure(case))
    base = statistics.median(times[next(iter(cases))])
    print(f"start and reap of `true`, median of {runs} runs:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name}: {median:.2f} ms (min {min(values):.2f}, max {max(values):.2f})"
              f"  = {median / base:.2f}x a, {median - base:+.2f} ms")
    load = os.getloadavg()
    print(f"(load average {load[0]:.1f} over 1 min, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
