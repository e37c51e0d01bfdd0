"""Containment: nothing the runner starts outlives it, `setsid` or not, even after its SIGKILL.

Every child is started under a *keeper*. The copy of the runner that
`subprocess` forks for a child forks once more (in its `preexec_fn`): the new
process becomes the program (it execs), the first one stays as its parent,
in Python, with no interpreter start. The keeper is a child subreaper
(`PR_SET_CHILD_SUBREAPER`): every descendant of the program that loses its
parent, a `setsid` daemon included, becomes the keeper's child instead of
init's. So:

- when the program ends, the keeper SIGKILLs and reaps everything it
  inherited, then exits with the program's status: the runner's `wait` on a
  child returns only when its whole tree is gone;
- when the runner dies, by SIGKILL too (the keeper waits on a pidfd of it),
  the keeper kills the program's group and everything it inherited, and
  removes the runner's temporary folders (`remove_with_runner`).

The program runs in its own process group, whose id is its pid
(`Child.main_pid`): stop signals go to that group, never to the keeper. A
signal sent to the keeper's pid by someone is passed on to that group.

What this cannot hold (see the README): a process that leaves the tree by
other means (a new PID namespace, a job handed to systemd or another
supervisor), and a keeper that is itself SIGKILLed (its program then dies by
its parent-death signal, but the program's descendants go to init).
"""

import contextlib
import os
import select
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, NoReturn

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
#: Signals sent to a keeper's own pid that it passes on to its program's group.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
#: The keeper's status when it failed itself (a bug; its program is killed).
KEEPER_FAILED = 70
PID_BYTES = 4

_folders: list[str] = []


def remove_with_runner(folder: Path) -> None:
    """Have the keepers started from now on remove `folder` if the runner is killed."""
    _folders.append(os.fspath(folder))


def forget(folder: Path) -> None:
    """`folder` is gone already (the runner removed it itself)."""
    with contextlib.suppress(ValueError):
        _folders.remove(os.fspath(folder))


def preexec(report: int) -> Callable[[], None]:
    """The `preexec_fn` that splits a new child into its keeper and its program.

    The program's pid is written to the pipe `report` once its group exists.
    ctypes is loaded here, in the runner, so the forked child only calls prctl.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    plan = _Plan(runner=os.getpid(), report=report, folders=tuple(_folders),
                 max_fd=os.sysconf("SC_OPEN_MAX"))

    def split() -> None:
        keeper = os.getpid()
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        try:
            program = os.fork()
        except OSError:
            os._exit(KEEPER_FAILED)
        if program == 0:  # returns to subprocess, which execs the program
            os.setpgid(0, 0)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != keeper:  # the keeper died before prctl took effect
                os._exit(KEEPER_FAILED)
            return
        try:
            _keep(prctl, program, plan)
        finally:
            os._exit(KEEPER_FAILED)  # never back into subprocess: it would exec a second time

    return split


class _Plan(NamedTuple):
    """What a keeper knows from the runner, gathered before the fork."""

    runner: int  # its pid
    report: int  # the pipe the program's pid is written to
    folders: tuple[str, ...]  # removed if the runner dies
    max_fd: int  # no fd can be above the limit it was opened under


def _keep(prctl: Callable[..., int], program: int, plan: _Plan) -> NoReturn:
    """The keeper's whole life: wait for the program or the runner, then leave nothing."""
    prctl(PR_SET_NAME, b"runner-keeper")  # `ps -o comm`, top: not a second runner
    signal.set_wakeup_fd(-1)  # the runner's, inherited: never write to its pipe
    for signum in FORWARDED:
        signal.signal(signum, lambda s, _frame: _signal_group(program, s))
    with contextlib.suppress(OSError):  # also done by the program: whichever runs first
        os.setpgid(program, program)
    _detach(keep=plan.report, max_fd=plan.max_fd)
    os.write(plan.report, program.to_bytes(PID_BYTES, "little"))
    os.close(plan.report)
    runner_died = _runner_ends_first(plan.runner, program)
    if runner_died:
        _signal_group(program, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(program, signal.SIGKILL)
    _, status = os.waitpid(program, 0)
    reap_orphans()
    if runner_died:
        for folder in plan.folders:
            shutil.rmtree(folder, ignore_errors=True)
    _exit_as(prctl, status)


def _detach(keep: int, max_fd: int) -> None:
    """Hold none of the runner's files: stdio on /dev/null, every other fd but `keep` closed.

    Otherwise the runner would not see its pipes end, nor `subprocess` its exec.
    """
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    # The open fds from /proc, not close_range(2): a container's seccomp profile may deny
    # it, and closing every number up to a limit of 2**20 one by one takes 0.1 s.
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(max_fd))
    for fd in fds:
        if fd > 2 and fd != keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _runner_ends_first(runner: int, program: int) -> bool:
    """Wait until the program ends (False) or the runner does (True)."""
    try:
        runner_fd = os.pidfd_open(runner)
    except ProcessLookupError:
        return True
    if os.getppid() != runner:  # it died, and its pid may be another process's by now
        return True
    poller = select.poll()
    poller.register(runner_fd, select.POLLIN)
    poller.register(os.pidfd_open(program), select.POLLIN)
    return any(fd == runner_fd for fd, _ in poller.poll())


def reap_orphans() -> None:
    """SIGKILL and reap every child this subreaper has (they inherit theirs), until none is left."""
    children = f"/proc/self/task/{os.getpid()}/children"
    while True:
        try:
            with open(children) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return  # no /proc: nothing can be found, so nothing is waited for
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            reaped, _ = os.waitpid(-1, 0 if pids else os.WNOHANG)
        except ChildProcessError:
            return
        if not pids and not reaped:  # one just came to us: it shows in `children` next time
            time.sleep(0.001)


def _signal_group(program: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(program, signum)


def _exit_as(prctl: Callable[..., int], status: int) -> NoReturn:
    """End with the program's status: its exit code, or death by the same signal."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        prctl(PR_SET_DUMPABLE, 0)  # the program's SIGQUIT or SIGSEGV: no core file of ours
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 128 - code)
