"""`--standby`: keep one spare interpreter ready to become the service at a restart.

The supervisor asks for a spare once the service is up (and before a restart
if none is waiting); at a restart it takes the spare instead of starting a
cold interpreter. The restart policy is untouched: the standby makes a restart
fast, not more frequent. A spare that is unfit (its imports started a thread,
opened a socket or imported the code root's own modules) turns the standby
off for the run with one warning: from then on restarts are cold starts.
"""

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner import log
from runner.supervisor.prewarm import READY, Zygote, third_party_imports


class Standby:
    """At most one spare, made on request and handed over at a restart."""

    def __init__(self) -> None:
        self._spare: Zygote | None = None
        self.off_because: str | None = None

    def prepare(self, argv: Sequence[str | Path], cwd: Path, env: Mapping[str, str]) -> None:
        """Start a spare for this command unless one is waiting or the standby is off."""
        if self._spare is not None or self.off_because is not None:
            return
        modules = third_party_imports(cwd)
        self._spare = Zygote(argv, cwd, env, modules)
        log.info(f"standby: a spare interpreter (pid {self._spare.child.pid}) is importing "
                 f"{len(modules)} modules")

    def take(self, interrupt_fd: int) -> subprocess.Popen[bytes] | None:
        """The spare, now running the service; None means: start it cold.

        Waits for a spare still importing, unless `interrupt_fd` (our signals) wakes.
        """
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        verdict = spare.verdict(interrupt_fd)
        if verdict == READY:
            return spare.go()
        spare.discard()
        if verdict is not None:
            self.off_because = verdict
            log.warn(f"--standby off: {verdict}, so restarts are cold starts from now on")
        return None

    def discard(self) -> None:
        """End the waiting spare, if any (the environment changed, or the run is over)."""
        if self._spare is not None:
            self._spare.discard()
            self._spare = None
