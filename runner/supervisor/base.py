"""The supervisor: run the service, forward stops, restart it, watch its port.

One loop in the main thread waits on three things at once with `poll`: the
service's exit (a pidfd, noticed at once), its output pipes (passed on
unchanged, last lines kept for errors) and our own signals (a wakeup fd).
Timers (readiness probes, stop deadline, backoff) are the poll's timeout.
Variants (watch mode, the smoke check) subclass it, as uvicorn's reloaders
are variants of one supervisor.
"""

import os
import select
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from runner import log, signals
from runner.config import Config
from runner.errors import ServiceError
from runner.output import Tail, pump, write_all
from runner.proc import Child, end, poll_ms, signal_group, spawn
from runner.supervisor.backoff import Backoff, Ending
from runner.supervisor.readiness import group_listens, port_in_use

if TYPE_CHECKING:
    from runner.supervisor.standby import Standby

STOP_SIGNALS = signals.STOP_SIGNALS
WAITING_WARNING_EVERY = 30.0
SECOND_STOP_AFTER = 0.5  # a repeated stop sooner than this is a duplicate, not a person


def _probe_interval(elapsed: float) -> float:
    """Probe often while a fast service is likely to come up, then back off."""
    return 0.005 if elapsed < 2 else 0.05 if elapsed < 10 else 0.25


def _earliest(*timeouts: float | None) -> float | None:
    """The shortest of some timeouts, None (forever) when none is set."""
    return min((t for t in timeouts if t is not None), default=None)


def _standby(config: Config, poller: select.poll) -> "Standby | None":
    """The standby when asked for and of use (imported only then: nothing else needs it)."""
    if not config.standby or (config.restart == "never" and not config.watch):
        return None
    from runner.supervisor.standby import Standby

    return Standby(poller)


class Restart(NamedTuple):
    """Start the service again after `delay` seconds (None: when a variant says)."""

    delay: float | None


class Exit(NamedTuple):
    """End the run with this exit code."""

    code: int


def exit_status(returncode: int) -> int:
    """A child's status as a shell would report it: 128+N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


class Run:
    """One start of the service."""

    __slots__ = ("child", "fds", "pidfd", "probed_at", "ready_after", "started", "stop_requested")

    def __init__(self, child: Child, pidfd: int) -> None:
        self.child = child
        self.pidfd = pidfd
        self.started = time.monotonic()
        self.ready_after: float | None = None
        self.probed_at = 0.0  # output wakes the loop far more often than probes are due
        self.stop_requested = False
        self.fds: dict[int, Callable[[bytes], None]] = {}  # pipe -> sink

    @property
    def ran_for(self) -> float:
        return time.monotonic() - self.started


class Supervisor:
    """Keeps one service process running until it is done or we are stopped."""

    def __init__(
        self, config: Config, argv: Sequence[str | Path], cwd: Path, env: Mapping[str, str]
    ) -> None:
        self.config = config
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.tail = Tail()
        self.backoff = Backoff(config.max_restarts, config.min_uptime)
        self.stop_signum: int | None = None
        self.failure: ServiceError | None = None
        self._stop_deadline: float | None = None
        self._poller = select.poll()
        self._wakeup_r = -1
        self._go = False
        self._stop_requested_at = 0.0
        self.standby = _standby(config, self._poller)

    # -- the loop -------------------------------------------------------------

    def run(self) -> int:
        """Supervise until the service ends for good; return the runner's exit code."""
        with self._signals():
            if port_in_use(self.config.port):
                log.warn(f"port {self.config.port} is already in use by another process")
            try:
                return self._supervise()
            finally:
                if self.standby is not None:
                    self.standby.discard()

    def _supervise(self) -> int:
        while True:
            run = self.start()
            returncode = self.serve(run)
            if self.failure is not None:
                raise self.failure
            if self.stop_signum is not None:
                return exit_status(returncode)
            if run.stop_requested:
                decision = self.stopped(run)
            else:
                decision = self.after_exit(run, returncode)
                if isinstance(decision, Restart) and decision.delay != 0:
                    self.prepare_standby()  # a spare that imports while we wait
            if isinstance(decision, Exit):
                return decision.code
            if not self.wait(decision.delay):
                return 128 + (self.stop_signum or 0)

    def start(self) -> Run:
        """Start the service once: in the standby's spare when there is one."""
        if self.standby is not None:
            child = self.standby.take(self._wakeup_r)
            if child is not None:
                return self.track(child, " from the standby")
        return self.track(self._spawn())

    def _spawn(self) -> Child:
        """A new service process; `ServiceError` when it cannot start (its folder is gone)."""
        try:
            return spawn(self.argv, cwd=self.cwd, env=self.env)
        except OSError as exc:
            if not self.cwd.is_dir():  # the service deleted it, or a `git clean` meanwhile
                raise ServiceError(
                    f"cannot start the service again: its folder {self.cwd} is gone "
                    f"({exc.strerror}): restore the code and start the runner again") from None
            raise ServiceError(f"cannot start the service: {exc}") from None

    def prepare_standby(self) -> None:
        """With --standby: have a spare ready for the next start."""
        if self.standby is not None:
            self.standby.prepare(self.argv, self.cwd, self.env)

    def track(self, child: Child, how: str = "") -> Run:
        """Supervise a just-started service process: its exit and its output."""
        self.tail = Tail()  # errors quote the last run only
        run = Run(child=child, pidfd=os.pidfd_open(child.pid))
        for pipe, ours in ((child.stdout, 1), (child.stderr, 2)):
            assert pipe is not None
            run.fds[pipe.fileno()] = self._passthrough(ours)
            self._poller.register(pipe.fileno(), select.POLLIN)
        self._poller.register(run.pidfd, select.POLLIN)
        log.info(f"service started (pid {child.main_pid}) on port {self.config.port}{how}")
        return run

    def serve(self, run: Run) -> int:
        """Pass output on and watch the port until the service process exits."""
        warned_at = 0.0
        while run.child.poll() is None:
            for fd, _ in self._poller.poll(poll_ms(self._timeout(run))):
                self.on_event(run, fd)
            self.tick(run)
            self._check_stop_deadline(run)
            if run.ready_after is None and run.child.poll() is None:
                self._probe(run)
                warned_at = self._warn_not_ready(run, warned_at)
        self._finish(run)
        return run.child.returncode

    def after_exit(self, run: Run, returncode: int) -> "Restart | Exit":
        """Decide what follows an exit nobody asked for.

        Raises `ServiceError` when the service cannot be kept running.
        """
        self.backoff.record(run.ran_for, Ending(exit_status(returncode), tuple(self.tail.lines())))
        how = f"exited with status {exit_status(returncode)} after {run.ran_for:.2f} s"
        policy = self.config.restart
        if policy == "never" or (returncode == 0 and policy == "on-failure"):
            if returncode != 0:
                raise ServiceError(f"the service {how} (--restart never); "
                                   f"its last output: {self.tail.quote()}")
            log.info(f"service {how}")
            return Exit(0)
        if self.backoff.exhausted:
            raise ServiceError(
                f"the service failed {self.backoff.failures} times in a row, each within "
                f"{self.config.min_uptime:g} s of its start (last: {how}); "
                f"its last output: {self.tail.quote()} "
                "(fix the error above and start again)"
            )
        if self.backoff.repeating:
            raise ServiceError(
                f"the service failed {self.backoff.same_endings} times in a row with the same "
                f"output and exit status {exit_status(returncode)}, so restarting will not fix "
                f"it; its last output: {self.tail.quote()} (fix the error above and start again)"
            )
        log.warn(f"service {how}; restarting in {self.backoff.delay:.1f} s")
        return Restart(self.backoff.delay)

    def wait(self, seconds: float | None) -> bool:
        """Wait before a restart (None: until `tick` says go); False if stopped meanwhile."""
        deadline = None if seconds is None else time.monotonic() + seconds
        self._go = False
        while self.stop_signum is None:
            self.tick(None)
            left = None if deadline is None else deadline - time.monotonic()
            if self._go or (left is not None and left <= 0):
                return True
            for fd, _ in self._poller.poll(poll_ms(_earliest(left, self.timer()))):
                self.on_event(None, fd)
        return False

    def stop_pending(self, seconds: float) -> bool:
        """For variants that wait outside the loop: whether a stop signal comes within
        `seconds`. It is left for the loop to act on."""
        return bool(select.select([self._wakeup_r], [], [], seconds)[0])

    def restart_now(self) -> None:
        """For variants: end a `wait` early (a change came)."""
        self._go = True

    # -- hooks for variants -----------------------------------------------------------

    def on_ready(self, run: Run) -> None:
        """The service has just opened its port: make the standby's spare now.

        Not sooner, so that its imports do not slow down the service's start.
        """
        self.prepare_standby()

    def stopped(self, run: Run) -> "Restart | Exit":
        """What follows when a variant stopped the service itself."""
        return Exit(exit_status(run.child.returncode))

    def timer(self) -> float | None:
        """Seconds until a variant's own timer is due (None: no timer)."""
        return None

    def tick(self, run: Run | None) -> None:
        """Called after every wake-up, with the current run (None between runs)."""

    # -- events -----------------------------------------------------------------

    def on_event(self, run: Run | None, fd: int) -> None:
        """Handle one readable fd: our signal pipe or a service output pipe."""
        if fd == self._wakeup_r:
            self._drain_wakeup(run)
        elif self.standby is not None and self.standby.owns(fd):
            self.standby.on_report()
        elif run is not None and fd in run.fds and not pump(fd, run.fds[fd]):
            self._poller.unregister(fd)  # end of its output
            del run.fds[fd]

    def _passthrough(self, ours: int) -> Callable[[bytes], None]:
        """A sink passing the service's output on unchanged to our `ours` fd."""

        def sink(data: bytes) -> None:
            self.tail.feed(data)
            write_all(ours, data)

        return sink

    def request_stop(self, run: Run | None, signum: int) -> None:
        """Forward a stop to the service; a person's second Ctrl+C kills it at once.

        Only SIGINT, and only a while after the first stop: tools that signal a
        whole process tree (`timeout`, cgroup-wide SIGTERM) repeat a stop at once,
        and that must not cut the service's graceful drain short. SIGHUP (a
        terminal closing) is a stop like SIGTERM; SIGQUIT kills without a drain.
        """
        if self.stop_signum is not None:
            if run is not None and signum == signal.SIGINT and self._forcible():
                log.warn("second Ctrl+C (SIGINT): killing the service now")
                signal_group(run.child, signal.SIGKILL)
            elif run is not None and signum == signal.SIGQUIT:
                self._quit(run)
            return
        self.stop_signum = signum
        self._stop_requested_at = time.monotonic()
        if run is not None:
            log.info(f"{signal.Signals(signum).name} received")
            if signum == signal.SIGQUIT:
                self._quit(run)
            else:
                self.stop_service(run)

    def _quit(self, run: Run) -> None:
        log.warn("SIGQUIT received: killing the service now, without a graceful stop")
        signal_group(run.child, signal.SIGKILL)

    def _forcible(self) -> bool:
        return time.monotonic() - self._stop_requested_at >= SECOND_STOP_AFTER

    def stop_service(self, run: Run) -> None:
        """Send the configured stop signal; SIGKILL follows after the stop timeout."""
        if run.child.poll() is not None or self._stop_deadline is not None:
            return
        stop = self.config.stop_signal
        log.info(f"stopping the service: {stop.name}, "
                 f"SIGKILL after {self.config.stop_timeout:g} s")
        signal_group(run.child, stop)
        run.stop_requested = True
        self._stop_deadline = time.monotonic() + self.config.stop_timeout

    # -- internals ----------------------------------------------------------------

    def _timeout(self, run: Run) -> float | None:
        timers = []
        if run.ready_after is None:
            timers.append(_probe_interval(run.ran_for))
        if self._stop_deadline is not None:
            timers.append(max(0.0, self._stop_deadline - time.monotonic()))
        return _earliest(*timers, self.timer())

    def _probe(self, run: Run) -> None:
        if run.ran_for - run.probed_at < _probe_interval(run.ran_for):
            return
        run.probed_at = run.ran_for
        if group_listens(run.child.main_pid, self.config.port):
            run.ready_after = run.ran_for
            log.info(f"service ready on :{self.config.port} after {run.ready_after:.2f} s")
            self.on_ready(run)
            return
        timeout = self.config.ready_timeout
        if timeout is not None and run.ran_for > timeout and self.failure is None:
            self.failure = ServiceError(
                f"the service did not open port {self.config.port} within {timeout:g} s "
                f"(--ready-timeout); its last output: {self.tail.quote()} "
                "(make it listen on the port in $PORT)"
            )
            self.stop_service(run)

    def _warn_not_ready(self, run: Run, warned_at: float) -> float:
        if run.ready_after is None and run.ran_for - warned_at >= WAITING_WARNING_EVERY:
            log.warn(f"service has not opened port {self.config.port} after "
                     f"{run.ran_for:.0f} s (it must listen on $PORT)")
            return run.ran_for
        return warned_at

    def _check_stop_deadline(self, run: Run) -> None:
        if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
            log.warn(f"service still running {self.config.stop_timeout:g} s after "
                     f"{self.config.stop_signal.name}: killing it")
            signal_group(run.child, signal.SIGKILL)
            self._stop_deadline = None

    def _finish(self, run: Run) -> None:
        """After the exit: pass on what is left of its output, end its group."""
        for fd in list(run.fds):
            while fd in run.fds and select.select([fd], [], [], 0)[0]:
                self.on_event(run, fd)
        for fd in list(run.fds):
            self._poller.unregister(fd)
        self._poller.unregister(run.pidfd)
        os.close(run.pidfd)
        end(run.child, grace=0)
        self._stop_deadline = None

    def _drain_wakeup(self, run: Run | None) -> None:
        for signum in os.read(self._wakeup_r, 64):
            if signum in STOP_SIGNALS:
                self.request_stop(run, signum)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """Route SIGTERM/SIGINT to the loop through a wakeup pipe."""
        read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup_r = read
        self._poller.register(read, select.POLLIN)
        previous = {s: signal.signal(s, lambda *_: None) for s in STOP_SIGNALS}
        old_wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(read)
            os.close(write)
