"""Start-up cost of the runner: launch to first HTTP 200, vs. running the same service bare.

    python bench/startup.py [RUNS]      (default 7 runs per case, at least 7)

Two services, each started bare (`python SERVICE`, the baseline) and through
the runner: a stdlib `http.server` service (nothing but the runner's own cost
on top of a fast start) and examples/hello-service (Flask + waitress). Every
runner case is printed as a ratio to its service's bare start and as the
milliseconds it adds, against its goal: `--code-only` adds at most 40 ms, a
warm full start (install stamps say nothing changed) at most 50 ms. Cases run
interleaved (a, b, c, a, b, c, ...) so a slow moment of the machine does not
land on one case only. The runner's bytecode is compiled first, as `pip
install` leaves it in the image: with PYTHONDONTWRITEBYTECODE set (as on this
project's machines) every start would otherwise compile the runner again
(about 8 ms). At the end, the conda case: a service with an
environment.yml started a second time against `--code-only`
(bench/conda_startup.py, which can also run alone).

Wall-clock figures on a shared, loaded machine swing by tens of ms, so the
runner's own part is also given as CPU time (user + system) from launch to
the moment it spawns the service, beside `python -c pass`: what the runner
adds before the service can even begin, whatever else the machine is doing.
Last, what `import workspace_service` (the toolkit) adds to flask + waitress
(bench/toolkit_import.py, which can also run alone).
"""

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    EXAMPLE,
    PYTHON,
    ROOT,
    ensure_example_requirements,
    free_port,
    load_note,
    median_ms,
    started,
)

sys.path.insert(0, str(ROOT / "tests"))

from helpers import write_service

CODE_ONLY_GOAL_MS = 40
WARM_GOAL_MS = 50
# Runs the runner and ends it at its first spawn (the service's, when nothing is installed).
UNTIL_SPAWN = """
import os, runpy, sys
sys.addaudithook(lambda event, args: event == "subprocess.Popen" and os._exit(0))
runpy.run_module("runner", run_name="__main__", alter_sys=True)
"""


@dataclass
class Case:
    """One way to start a service: `argv(port)` gives the command line.

    `env` is added to the environment; every start gets a fresh runner state
    (XDG_CACHE_HOME) unless `env` names one, e.g. a warm start sharing stamps.
    `goal_ms` is the most it may add to its service's bare start.
    """

    name: str
    argv: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    #: Start once unmeasured before each measured start, to leave install stamps: the
    #: cold case's pip reinstalls the example's local toolkit (`../../toolkit`), which
    #: changes the environment and so, rightly, voids the stamps of the round before.
    warm_up: bool = False
    goal_ms: int | None = None
    times: list[float] = field(default_factory=list)

    def measure(self) -> None:
        """Start once, time the first 200, stop it again."""
        if self.warm_up:
            self._start()
            self.times.pop()
        self._start()

    def _start(self) -> None:
        port = free_port()
        with started(self.argv(port), port, self.env) as process:
            self.times.append(process.wait_200())

    @property
    def median(self) -> float:
        return statistics.median(self.times)


@dataclass
class Service:
    """A service and its cases; the first case is the baseline (the service run bare)."""

    name: str
    cases: list[Case]


def runner_cases(folder: Path, warm_state: str, cold: bool = False) -> list[Case]:
    """The service bare, through the runner with --code-only, warm (and cold: a no-op pip)."""

    def runner(*flags: str) -> Callable[[int], list[str]]:
        return lambda port: [PYTHON, "-m", "runner", str(folder), "--port", str(port), *flags]

    cases = [
        Case(f"bare `python {folder.name}`", lambda port: [PYTHON, str(folder)]),
        Case("runner --code-only", runner("--code-only"), goal_ms=CODE_ONLY_GOAL_MS),
        Case("runner, warm start (install stamps: nothing changed, pip not run)", runner(),
             env={"XDG_CACHE_HOME": warm_state}, warm_up=True, goal_ms=WARM_GOAL_MS),
    ]
    if cold:
        cases.append(Case("runner, requirements already satisfied, cold (runs pip install -r: "
                          "a no-op)", runner()))
    return cases


def main(runs: int) -> None:
    ensure_example_requirements()
    compileall.compile_dir(ROOT / "runner", quiet=1)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as scratch:
        stdlib = write_service(Path(scratch) / "stdlib-service")
        services = [
            Service("stdlib http.server service", runner_cases(stdlib, f"{scratch}/warm-a")),
            Service("examples/hello-service (Flask + waitress)",
                    runner_cases(EXAMPLE, f"{scratch}/warm-b", cold=True)),
        ]
        measure_all(services, runs)
        cpu_to_spawn(stdlib, f"{scratch}/warm-a", runs)
    print("\nconda: a service with environment.yml, second start vs --code-only")
    import conda_startup

    conda_startup.main(runs)
    print("\nthe toolkit: what `import workspace_service` adds to flask + waitress")
    import toolkit_import

    toolkit_import.main(runs)


def measure_all(services: list[Service], runs: int) -> None:
    """All cases of all services interleaved, then their medians against their baselines."""
    cases = [case for service in services for case in service.cases]
    started_at = time.monotonic()
    for _ in range(runs):
        for case in cases:
            case.measure()
    print(f"launch to first HTTP 200, median of {runs} interleaved runs "
          f"({time.monotonic() - started_at:.0f} s in all):")
    for service in services:
        print(f"{service.name}:")
        baseline, *others = service.cases
        print(f"  {baseline.name}: {median_ms(baseline.times)}")
        for case in others:
            print(f"  {case.name}: {median_ms(case.times)}{versus(case, baseline)}")
    print(load_note())


def cpu_to_spawn(folder: Path, warm_state: str, runs: int) -> None:
    """CPU time from launch to the service's spawn, interleaved, against `python -c pass`."""
    argv = [PYTHON, "-c", UNTIL_SPAWN, str(folder), "--port", str(free_port())]
    cases = {"python -c pass": [PYTHON, "-c", "pass"], "runner --code-only": [*argv, "--code-only"],
             "runner, warm start": argv}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, command in cases.items():
            times[name].append(cpu_time(command, {"XDG_CACHE_HOME": warm_state}))
    print(f"CPU time from launch to the service's spawn (user + system), {folder.name}:")
    base = statistics.median(times["python -c pass"])
    for name, seconds in times.items():
        added = "" if name == "python -c pass" else (
            f"  = {(statistics.median(seconds) - base) * 1000:+.1f} ms over an interpreter start")
        print(f"  {name}: {median_ms(seconds)}{added}")


def cpu_time(argv: list[str], env: dict[str, str]) -> float:
    """User + system seconds of one process, run to its end."""
    child = subprocess.Popen(argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(child.pid, 0)
    return usage.ru_utime + usage.ru_stime


def versus(case: Case, baseline: Case) -> str:
    """`= 1.20x bare, +21 ms (goal <= +40 ms: met)`."""
    added = (case.median - baseline.median) * 1000
    goal = "" if case.goal_ms is None else (
        f" (goal <= +{case.goal_ms} ms: {'met' if added <= case.goal_ms else 'MISSED'})")
    return f"  = {case.median / baseline.median:.2f}x bare, {added:+.0f} ms{goal}"


if __name__ == "__main__":
    main(max(7, int(sys.argv[1]) if len(sys.argv) > 1 else 7))
