"""Start-up cost of the runner: launch to first HTTP 200 of the example, vs. running it bare.

    python bench/startup.py [RUNS]      (default 7 runs per case, at least 5)

Each case is one way of starting examples/hello-service; the first case is the
baseline (the example on its own) and every other case is printed as a ratio to
it and as the milliseconds it adds. Cases run interleaved (a, b, c, a, b, c, ...)
so a slow moment of the machine does not land on one case only.
To add a case append a `Case` to CASES. At the end, the conda case: a
service with an environment.yml started a second time against `--code-only`
(bench/conda_startup.py, which can also run alone).
Last, what `import workspace_service` (the toolkit) adds to flask + waitress.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common import (
    ROOT,
    bare_example,
    ensure_example_requirements,
    free_port,
    load_note,
    median_ms,
    runner_example,
    started,
)


@dataclass
class Case:
    """One way to start the example: `argv(port)` gives the command line.

    `env` is added to the environment; every start gets a fresh runner state
    (XDG_CACHE_HOME) unless `env` names one, e.g. a warm start sharing stamps.
    """

    name: str
    argv: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    warm_up: bool = False  # start once unmeasured first (to leave install stamps)
    times: list[float] = field(default_factory=list)

    def measure(self) -> None:
        """Start once, time the first 200, stop it again."""
        port = free_port()
        with started(self.argv(port), port, self.env) as process:
            self.times.append(process.wait_200())

    @property
    def median(self) -> float:
        return statistics.median(self.times)


CASES = [
    Case("a: bare `python examples/hello-service`", bare_example),
    Case("b: runner --code-only", lambda port: runner_example(port, "--code-only")),
    Case("c: runner, requirements already satisfied, cold (runs pip install -r: a no-op)",
         lambda port: runner_example(port)),
    Case("d: runner, warm start (install stamps: nothing changed, pip not run)",
         lambda port: runner_example(port), warm_up=True),
]
WARM = CASES[3]


def main(runs: int) -> None:
    ensure_example_requirements()
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as state:
        WARM.env["XDG_CACHE_HOME"] = state  # shared by all its starts: stamps are reused
        measure_all(runs)
    print("\nconda: a service with environment.yml, second start vs --code-only")
    import conda_startup

    conda_startup.main(runs)
    toolkit_import_cost(runs)


#: The toolkit's budget: what `import workspace_service` may add to flask + waitress.
TOOLKIT_IMPORT_GOAL_MS = 60


def toolkit_import_cost(runs: int) -> None:
    """`python -c "import flask, waitress, workspace_service"` against the same without
    the toolkit, interleaved: the start-up the toolkit adds to a service."""
    toolkit = str(ROOT / "toolkit")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [toolkit, os.environ.get("PYTHONPATH")]))}
    imports = {"flask + waitress": "import flask, waitress",
               "flask + waitress + workspace_service":
                   "import flask, waitress, workspace_service"}
    times: dict[str, list[float]] = {name: [] for name in imports}
    for _ in range(runs):
        for name, code in imports.items():
            started = time.monotonic()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            times[name].append(time.monotonic() - started)
    base, ours = (statistics.median(t) for t in times.values())
    print("\nthe toolkit's import, interpreter start to exit:")
    for name, seconds in times.items():
        print(f"  {name}: {median_ms(seconds)}")
    print(f"  the toolkit adds {(ours - base) * 1000:+.0f} ms "
          f"(goal <= {TOOLKIT_IMPORT_GOAL_MS} ms)")


def measure_all(runs: int) -> None:
    """All cases interleaved, then their medians against the baseline."""
    for case in CASES:
        if case.warm_up:
            case.measure()
            case.times.clear()
    started_at = time.monotonic()
    for _ in range(runs):
        for case in CASES:
            case.measure()
    baseline = CASES[0]
    print(f"launch to first HTTP 200, median of {runs} runs "
          f"({time.monotonic() - started_at:.0f} s in all):")
    for case in CASES:
        versus = "" if case is baseline else (
            f"  = {case.median / baseline.median:.2f}x a, "
            f"{(case.median - baseline.median) * 1000:+.0f} ms")
        print(f"  {case.name}: {median_ms(case.times)}{versus}")
    print(load_note())


if __name__ == "__main__":
    main(max(5, int(sys.argv[1]) if len(sys.argv) > 1 else 7))
