"""The toolkit's cost per request: a hello endpoint through it vs the same view on waitress.

    python bench/toolkit.py [SECONDS] [ROUNDS]      (default 5 s per trial, 3 rounds)

Three servers of one Flask view (`GET /hello` → `{"message": "hello"}`), each
loaded by `wrk` (Debian's package) with the same connections and threads:
  - baseline: the Flask app on bare `waitress.serve` (as many threads as the toolkit);
  - the toolkit: the view as `@svc.endpoint("/hello")` of a `Service`, `svc.serve()`
    (probes, limits, access log lines, request ids, the drain);
  - for reference: the Flask app on gunicorn `-w 2 -k gthread` (two processes).
Rounds run interleaved (a, b, c, a, b, c, ...) so that a busy moment of the
machine does not land on one server only; each figure is the median of the rounds.
Goal: the toolkit keeps >= 0.9x the baseline's requests/s with a p99 <= 1.2x.
The toolkit's access log lines go to a file here, as they would go to a log
collector: the cost measured is formatting and writing them, not a terminal.
"""

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from common import PYTHON, ROOT, free_port, load_note, started

CONNECTIONS = 16
WRK_THREADS = 2
SERVER_THREADS = 8  # the toolkit's default THREADS; the baseline gets the same
GOAL_THROUGHPUT, GOAL_P99 = 0.9, 1.2

FLASK_APP = """\
import flask
app = flask.Flask("hello")

@app.get("/hello")
def hello():
    return {"message": "hello"}
"""
BARE_WAITRESS = FLASK_APP + f"""
import os, waitress
waitress.serve(app, host="127.0.0.1", port=int(os.environ["PORT"]), threads={SERVER_THREADS},
               _quiet=True)
"""
TOOLKIT = """\
from workspace_service import Service
svc = Service("hello")

@svc.endpoint("/hello")
def hello():
    return {"message": "hello"}

svc.serve()
"""


@dataclass
class Server:
    """One way of serving the view: its command line (`{port}` is filled in per start)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)

    def trial(self, seconds: float) -> None:
        """Start the server, warm it up, load it for `seconds`, keep the figures."""
        port = free_port()
        argv = [arg.replace("{port}", str(port)) for arg in self.argv]
        with started(argv, port, self.env) as process:
            process.wait_200("/hello")
            wrk(port, 1)  # warm-up: imports, first connections, caches
            rate, p50, p99 = wrk(port, seconds)
        self.rates.append(rate)
        self.p50s.append(p50)
        self.p99s.append(p99)

    def figures(self) -> tuple[float, float, float]:
        return (statistics.median(self.rates), statistics.median(self.p50s),
                statistics.median(self.p99s))


def wrk(port: int, seconds: float) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of `wrk --latency` against /hello; fails on any non-2xx."""
    out = subprocess.run(
        ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency",
         f"http://127.0.0.1:{port}/hello"],
        capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rate, _percentile_ms(out, "50"), _percentile_ms(out, "99")


def _percentile_ms(wrk_output: str, percent: str) -> float:
    """A latency percentile of wrk's `Latency Distribution`, in ms."""
    value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", wrk_output,
                            re.MULTILINE).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def servers() -> list[Server]:
    """The baseline first, then the toolkit, then gunicorn."""
    toolkit_path = f"{ROOT / 'toolkit'}:{ROOT}"
    return [
        Server("baseline: Flask on bare waitress", [PYTHON, "-c", BARE_WAITRESS]),
        Server("the toolkit: @svc.endpoint, svc.serve()", [PYTHON, "-c", TOOLKIT],
               {"PYTHONPATH": toolkit_path, "HOST": "127.0.0.1",
                "THREADS": str(SERVER_THREADS)}),
        Server("reference: gunicorn -w 2 -k gthread (2 processes)",
               [PYTHON, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads",
                str(SERVER_THREADS), "-b", "127.0.0.1:{port}", "--chdir", "{folder}",
                "hello:app"]),
    ]


def main(seconds: float, rounds: int) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is missing: apt-get install -y --no-install-recommends wrk")
    with tempfile.TemporaryDirectory(prefix="bench-toolkit-") as folder:
        (Path(folder) / "hello.py").write_text(FLASK_APP)
        cases = servers()
        for case in cases:
            case.argv = [arg.replace("{folder}", folder) for arg in case.argv]
        print(f"wrk -t{WRK_THREADS} -c{CONNECTIONS} -d{seconds:g}s --latency, "
              f"{rounds} rounds interleaved; medians\n")
        for _ in range(rounds):
            for case in cases:
                case.trial(seconds)
    report(cases)
    print(load_note())


def report(cases: list[Server]) -> None:
    """A table of the figures, each as a ratio to the baseline, and the goals' verdict."""
    base_rate, _, base_p99 = cases[0].figures()
    print(f"{'server':52} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'req/s x':>8} {'p99 x':>6}")
    for case in cases:
        rate, p50, p99 = case.figures()
        print(f"{case.name:52} {rate:8.0f} {p50:7.2f} {p99:7.2f} "
              f"{rate / base_rate:8.2f} {p99 / base_p99:6.2f}")
    rate, _, p99 = cases[1].figures()
    verdict = ("met" if rate / base_rate >= GOAL_THROUGHPUT and p99 / base_p99 <= GOAL_P99
               else "NOT met")
    print(f"\ngoal (toolkit >= {GOAL_THROUGHPUT}x req/s, p99 <= {GOAL_P99}x): {verdict}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0,
         int(sys.argv[2]) if len(sys.argv) > 2 else 3)
