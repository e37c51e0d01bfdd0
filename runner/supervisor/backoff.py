"""When to restart a service that stopped, and how long to wait first.

Like supervisord's `startsecs` and pm2's `min_uptime`: only a run that stayed
up `min_uptime` seconds (default 10, from its start) was a good start, so its
exit restarts at once and the count of failures starts again. Every shorter
run is a quick failure, whatever the restart policy and whether or not it
opened its port (Sanic's `app.run()` binds, then dies with its worker a
second later): quick failures back off 0.5 s, 1 s, 2 s ... up to 30 s, and
after `max_restarts` of them in a row the runner gives up instead of looping.
A start-up error that repeats exactly (the same last lines and status,
`SAME_ENDINGS` times in a row) gives up sooner: restarting will not fix it.
"""

from typing import NamedTuple

FIRST_DELAY = 0.5
MAX_DELAY = 30.0
SAME_ENDINGS = 3


class Ending(NamedTuple):
    """How a run ended: its exit status and its last lines of output."""

    status: int
    last_lines: tuple[str, ...]


class Backoff:
    """Counts quick failures in a row and turns them into delays."""

    __slots__ = ("_last", "failures", "max_restarts", "min_uptime", "same_endings")

    def __init__(self, max_restarts: int, min_uptime: float) -> None:
        self.max_restarts = max_restarts
        self.min_uptime = min_uptime
        self.failures = 0
        self.same_endings = 0
        self._last: Ending | None = None

    def record(self, ran_for: float, ending: Ending) -> None:
        """Note how long the last run lasted and how it ended."""
        if ran_for >= self.min_uptime:
            self.failures = self.same_endings = 0
            self._last = None
            return
        self.failures += 1
        repeated = ending == self._last and bool(ending.last_lines)  # no output proves nothing
        self.same_endings = self.same_endings + 1 if repeated else 1
        self._last = ending

    @property
    def repeating(self) -> bool:
        """The same quick failure several times over: a deterministic start-up error."""
        return self.same_endings >= SAME_ENDINGS

    @property
    def exhausted(self) -> bool:
        """Too many quick failures in a row: stop restarting."""
        return self.failures > self.max_restarts

    @property
    def delay(self) -> float:
        """Seconds to wait before the next start."""
        if self.failures == 0:
            return 0.0
        doublings = min(self.failures - 1, 64)  # past 2**1023 a float overflows
        return min(FIRST_DELAY * 2 ** doublings, MAX_DELAY)
