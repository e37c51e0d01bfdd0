"""Moving a child's output through the runner while remembering its last lines.

The runner pipes its children's output so that, when one fails, the `error:`
line can quote what it printed last. The bytes themselves go on unchanged.
"""

import errno
import os
from collections import deque
from collections.abc import Callable

CHUNK = 65536


class Tail:
    """The last `size` lines of a byte stream, decoded for quoting in errors."""

    def __init__(self, size: int = 10) -> None:
        self._lines: deque[str] = deque(maxlen=size)
        self._partial = b""

    def feed(self, data: bytes) -> None:
        """Take the next chunk of output."""
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            self._add(raw)

    def _add(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if line.strip():
            self._lines.append(line)

    def lines(self) -> list[str]:
        """The remembered lines, oldest first, including an unfinished last line."""
        lines = list(self._lines)
        if self._partial.strip():
            lines.append(self._partial.decode("utf-8", "replace"))
        return lines[-(self._lines.maxlen or 1):]

    def quote(self, limit: int = 3) -> str:
        """The last lines joined for one `error:` line."""
        lines = self.lines()[-limit:]
        return " | ".join(line.strip() for line in lines) if lines else "(no output)"


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to `fd`; a closed reader (EPIPE) just drops the output."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                return
            raise
        view = view[written:]


def pump(fd: int, sink: Callable[[bytes], object]) -> bool:
    """Move what is readable now from `fd` to `sink`; False at end of stream."""
    try:
        data = os.read(fd, CHUNK)
    except BlockingIOError:
        return True
    if not data:
        return False
    sink(data)
    return True
