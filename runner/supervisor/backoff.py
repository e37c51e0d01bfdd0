"""When to restart a service that stopped, and how long to wait first.

Modelled on supervisord: a run that came up (its port opened) or lasted 60 s
was a good start, so a later crash restarts at once and the count of failures
starts again. Runs that die before that are quick failures: they back off
0.5 s, 1 s, 2 s ... up to 30 s, and after `max_restarts` of them in a row the
runner gives up instead of looping.
"""

from dataclasses import dataclass

FIRST_DELAY = 0.5
MAX_DELAY = 30.0
HEALTHY_AFTER = 60.0


@dataclass
class Backoff:
    """Counts quick failures in a row and turns them into delays."""

    max_restarts: int
    failures: int = 0

    def record(self, ran_for: float, was_ready: bool) -> None:
        """Note how the last run went."""
        if was_ready or ran_for >= HEALTHY_AFTER:
            self.failures = 0
        else:
            self.failures += 1

    @property
    def exhausted(self) -> bool:
        """Too many quick failures in a row: stop restarting."""
        return self.failures > self.max_restarts

    @property
    def delay(self) -> float:
        """Seconds to wait before the next start."""
        if self.failures == 0:
            return 0.0
        return min(FIRST_DELAY * 2 ** (self.failures - 1), MAX_DELAY)
