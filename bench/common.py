"""What the benchmarks share: starting the example (bare or through the runner),
waiting for its first HTTP 200, finding the service process, and medians.

Everything runs on 127.0.0.1 on ports the kernel hands out, and only processes
started here are ever signalled (by PID).
"""

import contextlib
import glob
import http.client
import importlib.util
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hello-service"
PYTHON = sys.executable
#: The heavy services' packages (restart.py's flask app, reload.py's ASGI app), one bench venv.
HEAVY_PACKAGES = ("pandas", "scikit-learn", "flask", "uvicorn")
POLL = 0.002  # between attempts to reach a service: fine enough to time ~100 ms events


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_example_requirements() -> None:
    """Install flask and waitress for the example unless they are importable."""
    if all(importlib.util.find_spec(name) for name in ("flask", "waitress")):
        return
    print("installing the example's requirements ...", flush=True)
    subprocess.run([PYTHON, "-m", "pip", "install", "-q", "-r", EXAMPLE / "requirements.txt"],
                   check=True, cwd=EXAMPLE)  # its toolkit line is relative to the example


def bench_venv(name: str, packages: Sequence[str]) -> Path:
    """A venv with `packages` from PyPI, made once and kept in ~/.cache/workspace-runner-bench.

    A stamp lists what was installed, so a changed list installs again; a
    half-made venv (no stamp) is completed on the next run.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "workspace-runner-bench" / f"{name}-venv"
    stamp = venv / "bench-packages.txt"
    wanted = "\n".join(sorted(packages)) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return venv / "bin" / "python"
    print(f"installing {', '.join(packages)} into {venv} (once) ...", flush=True)
    subprocess.run([PYTHON, "-m", "venv", venv], check=True)
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", *packages], check=True)
    stamp.write_text(wanted)
    return venv / "bin" / "python"


def bare_example(port: int) -> list[str]:
    """The example on its own: `python examples/hello-service`."""
    return [PYTHON, str(EXAMPLE)]


def runner_example(port: int, *flags: str) -> list[str]:
    """The example through the runner: `python -m runner examples/hello-service FLAGS`."""
    return [PYTHON, "-m", "runner", str(EXAMPLE), "--port", str(port), *flags]


class Started:
    """A process started by a benchmark; its output goes to a file kept for diagnosis."""

    def __init__(self, argv: Sequence[str], port: int, env: Mapping[str, str]) -> None:
        self.port = port
        # Append mode: the child shares the file offset, and reading must not move its writes.
        self.log = tempfile.TemporaryFile(mode="a+b")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1",
               **env}
        for name in ("EXECUTE_CODE", "RUNNER_CACHE_DIR"):  # the bench's own settings only
            env.pop(name, None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def fail(self, what: str) -> RuntimeError:
        return RuntimeError(f"{what}; output of {self.proc.args}:\n{self.output()[-3000:]}")

    def wait_200(self, path: str = "/health", timeout: float = 60) -> float:
        """Seconds from the start until the first HTTP 200 on `path`."""
        return wait_200(self, path, timeout) - self.started

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL after `timeout`; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        returncode = self.proc.wait()
        self.log.close()
        return returncode


@contextlib.contextmanager
def started(
    argv: Sequence[str], port: int | None = None, env: Mapping[str, str] | None = None
) -> Iterator[Started]:
    """Start `argv` on a free port; it is stopped on the way out, whatever happens.

    Unless `env` says otherwise, the runner keeps its state (install stamps) in a
    fresh temporary folder: every start is cold, and the user's ~/.cache is untouched.
    """
    with tempfile.TemporaryDirectory(prefix="bench-state-") as state:
        process = Started(argv, port or free_port(), {"XDG_CACHE_HOME": state, **(env or {})})
        try:
            yield process
        finally:
            process.stop()


def get_status(port: int, path: str = "/health", timeout: float = 2) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_200(process: Started, path: str = "/health", timeout: float = 60) -> float:
    """The monotonic time of the first HTTP 200; fails if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get_status(process.port, path) == 200:
            return time.monotonic()
        if process.proc.poll() is not None:
            raise process.fail(f"exited {process.proc.returncode} before answering")
        time.sleep(POLL)
    raise process.fail(f"no HTTP 200 within {timeout} s")


def children(pid: int) -> list[int]:
    """The child processes of `pid` (every thread's), from /proc."""
    found: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError):
            found += map(int, Path(path).read_text().split())
    return found


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `condition` until true; RuntimeError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)


def median_ms(seconds: Sequence[float]) -> str:
    """`123 ms (min 110, max 140)` for a list of durations."""
    ms = [s * 1000 for s in seconds]
    return f"{statistics.median(ms):.0f} ms (min {min(ms):.0f}, max {max(ms):.0f}, n={len(ms)})"


def load_note() -> str:
    """The machine's load, to read the figures by: timings on a busy machine are slower."""
    one, five, _ = os.getloadavg()
    return f"(load average {one:.1f} over 1 min, {five:.1f} over 5 min, {os.cpu_count()} CPUs)"
