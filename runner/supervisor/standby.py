"""`--standby`: keep one spare interpreter ready to become the service at a restart.

The supervisor asks for a spare once the service is up (and before a delayed
restart if none is waiting); at a restart it takes the spare instead of
starting a cold interpreter. The restart policy is untouched: the standby
makes a restart fast, not more frequent. The spare's report arrives on a
socket in the supervisor's poll, so its readiness is logged when it happens.
A spare that is unfit (its imports started a thread, opened a socket or
imported the code root's own modules, or it died) turns the standby off for
the run with one warning: from then on restarts are cold starts.
"""

import contextlib
import select
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner import log
from runner.proc import Child
from runner.supervisor.prewarm import READY, Zygote, third_party_imports


class Standby:
    """At most one spare, made on request and handed over at a restart."""

    def __init__(self, poller: select.poll) -> None:
        self._poller = poller
        self._spare: Zygote | None = None
        self._started = 0.0
        self.off_because: str | None = None

    def prepare(self, argv: Sequence[str | Path], cwd: Path, env: Mapping[str, str]) -> None:
        """Start a spare for this command unless one is waiting or the standby is off."""
        if self._spare is not None or self.off_because is not None:
            return
        self._started = time.monotonic()
        try:
            modules = third_party_imports(cwd)
            self._spare = Zygote(argv, cwd, env, modules)
        except OSError as exc:  # its folder is gone: the cold start says so
            self._turn_off(f"a spare could not start ({exc.strerror or exc})")
            return
        self._poller.register(self._spare.fileno(), select.POLLIN)
        log.info(f"standby: a spare interpreter (pid {self._spare.child.main_pid}) is importing "
                 f"{len(modules)} modules")

    def owns(self, fd: int) -> bool:
        """Whether `fd` is the waiting spare's report socket."""
        return self._spare is not None and fd == self._spare.fileno()

    def on_report(self) -> None:
        """The spare has said whether it is fit (its socket is readable)."""
        assert self._spare is not None
        self._poller.unregister(self._spare.fileno())
        verdict = self._spare.verdict()
        if verdict == READY:
            log.info(f"standby: the spare (pid {self._spare.child.main_pid}) is ready after "
                     f"{time.monotonic() - self._started:.2f} s")
        elif verdict is not None:
            self._turn_off(verdict)

    def take(self, interrupt_fd: int) -> Child | None:
        """The spare, now running the service; None means: start it cold.

        Waits for a spare still importing, unless `interrupt_fd` (our signals) wakes.
        """
        spare = self._spare
        if spare is None:
            return None
        verdict = spare.verdict(interrupt_fd)
        if verdict != READY:
            self.discard()
            if verdict is not None:
                self._turn_off(verdict)
            return None
        self._release()
        try:
            return spare.go()
        except OSError:  # it died while waiting (killed by someone): start cold, next time again
            spare.discard()
            return None

    def discard(self) -> None:
        """End the waiting spare, if any (the environment changed, or the run is over)."""
        spare = self._spare
        if spare is not None:
            self._release()
            spare.discard()

    def _release(self) -> None:
        """Forget the spare, its socket out of the poll first."""
        assert self._spare is not None
        with contextlib.suppress(KeyError):  # its report was read already
            self._poller.unregister(self._spare.fileno())
        self._spare = None

    def _turn_off(self, why: str) -> None:
        self.discard()
        self.off_because = why
        log.warn(f"--standby off: {why}, so restarts are cold starts from now on")
