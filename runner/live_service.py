"""A service served through the runner for tests: start it, wait until it is ready, stop it.

The pytest plugin (`runner/pytest_plugin.py`) hands these to tests as the
`live_service` fixture. The runner runs as a real process (`python -m
runner CODE --port N`), so the code is resolved, installed and supervised
exactly as the image would do it. Its output (the runner's lines and the
service's) goes to a file: a kept service (`--live-service-keep`) must go on
writing after pytest is gone, which a pipe to pytest would not allow.
"""

import argparse
import contextlib
import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner import cli
from runner.errors import RunnerError

#: What the supervisor logs once a process of the service listens on its port.
READY_LINE = "service ready"
#: Answers to `GET /ready` of a service that has no such route: the port is readiness enough.
NO_READY_ROUTE = frozenset({404, 405, 501})
POLL = 0.01  # seconds between looks at the log and at /ready while a service comes up
STOP_MARGIN = 5.0  # beyond the runner's own stop timeout, before the runner gets SIGKILL
CRASH_REPORT_WAIT = 1.0  # a runner whose service died gets this long to print its error line
TAIL_LINES = 30
PR_SET_PDEATHSIG = 1
PF_EXITING = 0x4  # /proc/PID/stat flags: the process has begun to exit


class StartError(Exception):
    """The service did not come up; the message quotes the runner's `error:` line and output."""


@dataclass(frozen=True)
class Spec:
    """What to serve and how. Hashable: tests of one module asking for the same share a start."""

    code: str
    env: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveService:
    """One runner process serving `spec` on 127.0.0.1:`port`, restartable on the same port."""

    def __init__(
        self, spec: Spec, log_path: Path, *, cwd: Path, timeout: float, keep: bool = False
    ) -> None:
        self.spec = spec
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.cwd = cwd
        self.timeout = timeout
        self.keep = keep  # outlives pytest: no parent-death signal
        self.argv = [sys.executable, "-m", "runner", *self._runner_args()]
        self.stop_timeout = self._stop_timeout()
        self.process: subprocess.Popen[bytes] | None = None
        self.failure: str | None = None  # why the last start failed
        self._run_offset = 0  # where the current start's output begins in the log
        self._service_pids: list[int] = []

    @property
    def pid(self) -> int | None:
        """The runner's process id (its service runs under it, below a keeper)."""
        return None if self.process is None else self.process.pid

    @property
    def output(self) -> str:
        """What the runner and the service printed so far, every start of it."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def run_output(self, lines: int = TAIL_LINES) -> str:
        """The last lines printed since the current start."""
        return "\n".join(self.output[self._run_offset:].splitlines()[-lines:])

    # -- life cycle -----------------------------------------------------------

    def start(self) -> None:
        """Start the runner and wait until the service is ready; `StartError` if it is not."""
        self._run_offset = len(self.output)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self._environ(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=None if self.keep else _die_with_pytest(),
            )
        finally:
            log.close()
        try:
            self._wait_ready()
        except StartError as exc:
            self.failure = str(exc)
            self.stop()
            raise
        self.failure = None
        self._service_pids = _service_processes(self.process.pid)

    def restart(self) -> None:
        """Stop the runner and start it again on the same port (a fresh start of everything)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        """SIGTERM to the runner, which stops its service; SIGKILL if it outstays its timeout."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            if not _wait_exit(process, self.stop_timeout + STOP_MARGIN):
                process.kill()
                for pid in self._service_pids:  # now; the keepers would once they see it gone
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
        process.wait()
        self._service_pids = []

    def crashed(self) -> str | None:
        """Why the service is no longer serving, or None while it still is."""
        process = self.process
        if process is None:
            return None
        gone = [pid for pid in self._service_pids if not _alive(pid)]
        if gone:
            _wait_exit(process, CRASH_REPORT_WAIT)  # its error line says more than we can
        if process.poll() is not None:
            return f"the runner exited {process.returncode}{self._error_line()}"
        if gone:
            return f"the service process (pid {gone[0]}) exited"
        return None

    # -- internals -------------------------------------------------------------

    def _runner_args(self) -> list[str]:
        """CODE --port N, not restarted by default (a crash shows at once), then the test's."""
        return [self.spec.code, "--port", str(self.port), "--restart", "never", *self.spec.args]

    def _stop_timeout(self) -> float:
        """The runner's stop timeout for these arguments, as the runner itself reads them.

        A `--port` among them would win over the fixture's, which then waits for the
        wrong port until its timeout.
        """
        try:
            config = cli.parse(self._runner_args(), self._environ())
        except (RunnerError, argparse.ArgumentTypeError) as exc:
            raise StartError(f"bad live_service args {list(self.spec.args)}: {exc}") from None
        if config.port != self.port:
            raise StartError(f"bad live_service args {list(self.spec.args)}: the fixture gives "
                             "the service a free port of its own (live_service.port, .url): "
                             "leave --port out")
        return config.stop_timeout

    def _environ(self) -> dict[str, str]:
        return {**os.environ, **dict(self.spec.env), "PYTHONUNBUFFERED": "1"}

    def _wait_ready(self) -> None:
        """Until the runner says the port is open, then until `/ready` says yes if it exists."""
        deadline = time.monotonic() + self.timeout
        self._wait(lambda: READY_LINE in self.output[self._run_offset:], deadline,
                   "open its port")
        self._wait(self._ready_route_agrees, deadline, "answer 2xx on /ready")

    def _wait(self, condition: Callable[[], bool], deadline: float, what: str) -> None:
        assert self.process is not None
        while not condition():
            if self.process.poll() is not None:
                raise StartError(self._start_failure(
                    f"the runner exited {self.process.returncode}{self._error_line()}"))
            if time.monotonic() > deadline:
                raise StartError(self._start_failure(
                    f"the service did not {what} within {self.timeout:g} s "
                    "(ini option live_service_timeout)"))
            time.sleep(POLL)

    def _ready_route_agrees(self) -> bool:
        status = _get_status(self.port, "/ready")
        return status is not None and (200 <= status < 300 or status in NO_READY_ROUTE)

    def _error_line(self) -> str:
        lines = [ln for ln in self.output[self._run_offset:].splitlines()
                 if ln.startswith("error: ")]
        return f": {lines[-1]}" if lines else ""

    def _start_failure(self, why: str) -> str:
        return (f"live service {self.spec.code} failed to start: {why}\n"
                f"its last output:\n{self.run_output()}")


def _get_status(port: int, path: str) -> int | None:
    """The HTTP status of a GET on 127.0.0.1, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether the process exited within `timeout`; a pidfd notices at once, not in 50 ms steps."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return True
    try:
        select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    return process.poll() is not None


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (every thread's), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += map(int, (task / "children").read_text().split())
    return found


def _service_processes(runner: int) -> list[int]:
    """The service's processes: the runner's children are keepers (runner/keeper.py),
    which stay until they have reaped their program; a program is a keeper's child."""
    return [pid for keeper in _children(runner) for pid in _children(keeper)]


def _alive(pid: int) -> bool:
    """Whether a process exists and has not begun to exit.

    A process that has begun to exit (the kernel's PF_EXITING flag) counts as
    gone: its sockets close while it exits, so a test can see its connection
    drop before the process is a zombie, and must then see it as crashed.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state, flags = (stat.rsplit(")", 1)[1].split()[i] for i in (0, 6))
    return state not in "ZX" and not int(flags) & PF_EXITING


def _die_with_pytest() -> Callable[[], None]:
    """A `preexec_fn` that makes the runner get SIGKILL when pytest dies.

    The runner's own containment (runner/keeper.py) then ends the service and
    all it started; ctypes is loaded here, so the forked child only calls prctl.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # pytest died before prctl took effect
            os._exit(1)

    return preexec

