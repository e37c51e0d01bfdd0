"""Starting child processes the way every part of the runner needs them.

Children get their own process group (so a stop reaches all they started),
die with the runner even when it is SIGKILLed (Linux parent-death signal),
and are never run through a shell. `run_tool` runs a one-off tool (pip,
setup.sh, a VCS client) with its output shown and its last lines kept.
"""

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner import log, signals
from runner.output import Tail, pump
from runner.scratch import tool_environ

PR_SET_PDEATHSIG = 1
KILL_GRACE = 5.0


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` that makes the child get SIGKILL when the runner dies.

    ctypes is loaded here, in the parent, so the forked child only calls prctl.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(1)

    return preexec


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    merge_output: bool = False,
    stdin: int = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new process group with piped, non-blocking output."""
    child = subprocess.Popen(
        [os.fspath(a) for a in argv],
        cwd=cwd,
        env=dict(env),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
        process_group=0,
        preexec_fn=die_with_parent(),
    )
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            os.set_blocking(stream.fileno(), False)
    return child


def signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    """Send `signum` to the child's whole process group, if any of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)


def end(child: subprocess.Popen[bytes], grace: float = KILL_GRACE) -> None:
    """The one clean-up of every child: end it and its group, close its pipes.

    A child still running gets SIGTERM and, `grace` seconds later (at once
    after SIGQUIT), SIGKILL. No signal cuts this short: a stop that comes
    meanwhile is raised after it (`signals.uninterruptible`).
    """
    with signals.uninterruptible():
        if child.poll() is None and grace > 0 and not signals.quitting():
            signal_group(child, signal.SIGTERM)
            try:
                child.wait(grace)
            except subprocess.TimeoutExpired:
                name = os.path.basename(os.fspath(child.args[0]))  # type: ignore[index]
                log.warn(f"{name} still running {grace:g} s after SIGTERM: killing it")
        signal_group(child, signal.SIGKILL)
        child.wait()
        for pipe in (child.stdin, child.stdout, child.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a buffered write to a dead reader
                    pipe.close()


@dataclass
class Finished:
    """How a tool ended: its exit status (None when it timed out) and last lines."""

    returncode: int | None
    tail: Tail = field(default_factory=Tail)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_tool(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float | None = None,
) -> Finished:
    """Run a tool to its end, its output shown (redacted) on stderr, its last lines kept.

    `timeout` counts from the last output, so a slow but talking download is
    not cut off; a tool silent that long ends with returncode None.
    """
    child = spawn(argv, cwd=cwd, env=tool_environ(env), merge_output=True)
    finished = Finished(returncode=None)
    shown = log.Passthrough()
    assert child.stdout is not None

    def show(data: bytes) -> None:
        finished.tail.feed(data)
        shown.write(data)

    try:
        finished.returncode = drain(child, {child.stdout.fileno(): show}, timeout)
    finally:
        shown.close()
    return finished


def drain(
    child: subprocess.Popen[bytes],
    sinks: Mapping[int, Callable[[bytes], object]],
    timeout: float | None,
) -> int | None:
    """Move a child's output to `sinks` (pipe fd -> callable) until it exits.

    Returns its exit status, or None when it stayed silent for `timeout`
    seconds. The exit is noticed at once through a pidfd, not by polling,
    and a daemon it left holding a pipe cannot make us wait. On every way
    out, the runner's `Stopped` included, the child's group is ended and
    its pipes closed, so no tool outlives the runner.
    """
    pidfd = os.pidfd_open(child.pid)
    try:
        return _follow(child, pidfd, dict(sinks), timeout)
    finally:
        os.close(pidfd)
        end(child)


def _follow(
    child: subprocess.Popen[bytes],
    pidfd: int,
    sinks: dict[int, Callable[[bytes], object]],
    timeout: float | None,
) -> int | None:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    for fd in sinks:
        poller.register(fd, select.POLLIN)
    last_activity = time.monotonic()
    while child.poll() is None:
        left = None if timeout is None else last_activity + timeout - time.monotonic()
        events = poller.poll(None if left is None else max(0.0, left) * 1000)
        if not events:
            return None
        for fd, _ in events:
            if fd in sinks:
                last_activity = time.monotonic()
                if not pump(fd, sinks[fd]):
                    poller.unregister(fd)
                    del sinks[fd]
    for fd, sink in sinks.items():  # what it wrote just before it exited
        while _readable(fd) and pump(fd, sink):
            pass
    return child.returncode


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])
