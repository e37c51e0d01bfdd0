"""How a long transfer shows its progress: a line redrawn for a person, a log line now and then.

A person at a terminal sees one line redrawn in place; a container log (or
`NO_COLOR`, or `TERM=dumb`: the same test as the runner's other lines, in
`log.on_terminal`) gets a plain line every `LOG_EVERY` seconds, never a `\r`.
"""

import time

from runner import log

#: Seconds between progress lines when stderr is not a terminal (logs).
LOG_EVERY = 2.0
#: Seconds between redraws of the progress line on a terminal.
DRAW_EVERY = 0.2


def human(n: float) -> str:
    """Bytes as a short figure a user can read (`12.3 MB`)."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} GB"


class Progress:
    """Progress of one download of `total` bytes (None: the server did not say)."""

    def __init__(self, what: str, total: int | None) -> None:
        self.what = what
        self.total = total
        self.redraw = log.on_terminal()
        self.start = self.last = time.monotonic()

    def line(self, size: int) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = f"{human(size / elapsed)}/s"
        if self.total:
            return (f"downloading {self.what}: {size * 100 // self.total}% "
                    f"({human(size)} of {human(self.total)}) at {rate}")
        return f"downloading {self.what}: {human(size)} at {rate}"

    def update(self, size: int) -> None:
        """`size` bytes have come; show it if it is time to."""
        now = time.monotonic()
        if now - self.last < (DRAW_EVERY if self.redraw else LOG_EVERY):
            return
        self.last = now
        if self.redraw:
            log.redraw(self.line(size))  # the runner's next line goes below it
        else:
            log.info(self.line(size))

    def done(self, size: int) -> None:
        """The download is complete: say how big and how fast."""
        elapsed = time.monotonic() - self.start
        log.info(f"downloaded {self.what}: {human(size)} in {elapsed:.1f} s "
                 f"({human(size / max(elapsed, 1e-6))}/s)")
