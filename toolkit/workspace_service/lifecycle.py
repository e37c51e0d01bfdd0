"""The one state that `/health` and `/ready` report, shared by the server and the service."""

import threading

STARTING, READY, DRAINING, FAILED = "starting", "ready", "draining", "failed"


class Lifecycle:
    """starting → ready → draining, or → failed; never back.

    Liveness and readiness are read from it apart: a draining service is alive
    but not ready; a failed one is neither (its process exits a moment later).
    """

    def __init__(self) -> None:
        self.status = STARTING
        self._changed = threading.Condition()

    def _move(self, to: str, allowed_from: tuple[str, ...]) -> None:
        with self._changed:
            if self.status in allowed_from:
                self.status = to
                self._changed.notify_all()

    def past_starting(self, timeout: float) -> str:
        """The status once it is no longer `starting`, or after `timeout` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self.status != STARTING, timeout)
            return self.status

    def ready(self) -> None:
        """Startup finished: accept work (unless a stop already began)."""
        self._move(READY, (STARTING,))

    def drain(self) -> None:
        """A stop began: no longer ready, still alive."""
        self._move(DRAINING, (STARTING, READY))

    def fail(self) -> None:
        """Startup raised: neither alive nor ready."""
        self._move(FAILED, (STARTING, READY, DRAINING))

    @property
    def is_ready(self) -> bool:
        return self.status == READY
