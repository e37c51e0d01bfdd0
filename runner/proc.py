"""Starting child processes the way every part of the runner needs them.

Children are contained (`keeper.py`: nothing they start outlives them or the
runner, even when it is SIGKILLed), get their own process group (so a stop
reaches all they started), and are never run through a shell. `end` is the
one clean-up of every child. `run_tool` runs a one-off tool (pip, setup.sh,
a VCS client) with its output shown and its last lines kept.
"""

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from runner import keeper, log, signals
from runner.output import Tail, pump
from runner.scratch import tool_environ

KILL_GRACE = 5.0
#: The longest wait poll(2) takes (24.8 days); a longer timeout waits in several.
POLL_MAX_MS = 2**31 - 1


def poll_ms(seconds: float | None) -> int | None:
    """A poll timeout in milliseconds, rounded up so a timer never fires early, at most
    `POLL_MAX_MS` (the caller looks at its clock again); None waits forever."""
    return None if seconds is None else min(int(seconds * 1000) + 1, POLL_MAX_MS)


class Child(subprocess.Popen[bytes]):
    """A started program under its keeper (`runner/keeper.py`).

    `pid` (what `poll` and `wait` follow) is the keeper's: it exits with the
    program's status once the program and every descendant are gone.
    `main_pid` is the program's own pid and the id of its process group.
    """

    main_pid: int


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    merge_output: bool = False,
    stdin: int = subprocess.DEVNULL,
) -> Child:
    """Start `argv` contained, in a new process group, with piped, non-blocking output."""
    report, reported = os.pipe()
    try:
        try:
            child = Child(
                [os.fspath(a) for a in argv],
                cwd=cwd,
                env=dict(env),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
                process_group=0,
                preexec_fn=keeper.preexec(reported),
            )
        finally:
            os.close(reported)
        pid = os.read(report, keeper.PID_BYTES)
    finally:
        os.close(report)
    if len(pid) != keeper.PID_BYTES:  # the keeper failed before its program started
        child.main_pid = child.pid  # its own group: all there may be to end
        end(child, grace=0)
        raise OSError(f"could not start {argv[0]}: its keeper exited {child.returncode}")
    child.main_pid = int.from_bytes(pid, "little")
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            os.set_blocking(stream.fileno(), False)
    return child


def signal_group(child: Child, signum: int) -> None:
    """Send `signum` to the program's whole process group, if any of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.main_pid, signum)


def end(child: Child, grace: float = KILL_GRACE) -> None:
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


class Finished:
    """How a child ended: its exit status (None: it went silent for the timeout), its last
    lines, and its whole stdout when the caller kept it to read an answer."""

    __slots__ = ("returncode", "stdout", "tail")

    def __init__(self, returncode: int | None, tail: Tail | None = None, stdout: str = "") -> None:
        self.returncode = returncode
        self.tail = Tail() if tail is None else tail
        self.stdout = stdout

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


def capture(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float | None,
) -> Finished:
    """Run a tool to its end for its answer: stdout kept whole, stderr's last lines, not shown.

    `timeout` as for `run_tool`; None waits as long as it runs (local work).
    """
    child = spawn(argv, cwd=cwd, env=tool_environ(env))
    out = bytearray()
    finished = Finished(returncode=None)
    assert child.stdout is not None and child.stderr is not None
    sinks = {child.stdout.fileno(): out.extend, child.stderr.fileno(): finished.tail.feed}
    finished.returncode = drain(child, sinks, timeout)
    finished.stdout = out.decode("utf-8", "replace")
    return finished


def drain(
    child: Child,
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
    child: Child,
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
        if left is not None and left <= 0:
            return None
        for fd, _ in poller.poll(poll_ms(left)):
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
