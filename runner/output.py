"""Moving a child's output through the runner while remembering its last lines.

The runner pipes its children's output so that, when one fails, the `error:`
line can quote what it printed last. The bytes themselves go on unchanged, at
pipe speed: what is kept of them is bounded (`Tail.LINE_KEEP` bytes of a
line, `size` lines), however long a line without a newline grows.
"""

import os
import select
from collections import deque
from collections.abc import Callable
from typing import IO

CHUNK = 65536
#: Files (device, inode) whose last written byte was not a newline.
_mid_line: set[tuple[int, int]] = set()


class Tail:
    """The last `size` lines of a byte stream, decoded for quoting in errors.

    Only the last `LINE_KEEP` bytes of each line are kept (an `…` marks a cut
    line): an error line needs the end of what a service said, and a service
    writing 80 MB without a newline must not make the runner hold 80 MB.
    """

    LINE_KEEP = 2048

    def __init__(self, size: int = 10) -> None:
        self._lines: deque[str] = deque(maxlen=size)
        self._partial = b""
        self._partial_cut = False

    def feed(self, data: bytes) -> None:
        """Take the next chunk of output."""
        *complete, rest = data.split(b"\n")
        if complete:
            complete[0] = self._partial + complete[0]
            first_cut, self._partial, self._partial_cut = self._partial_cut, rest, False
            self._add_last(complete, first_cut)
        else:
            self._partial += rest
        if len(self._partial) > self.LINE_KEEP:
            self._partial = self._partial[-self.LINE_KEEP:]
            self._partial_cut = True

    def _add_last(self, raws: list[bytes], first_cut: bool) -> None:
        """Keep the last non-blank ones of some complete lines, oldest first."""
        fresh: list[str] = []
        for index in range(len(raws) - 1, -1, -1):
            line = _shown(_decode(raws[index], self.LINE_KEEP, first_cut and index == 0))
            if line.strip():
                fresh.append(line)
                if len(fresh) == self._lines.maxlen:
                    break
        self._lines.extend(reversed(fresh))

    def lines(self) -> list[str]:
        """The remembered lines, oldest first, including an unfinished last line."""
        lines = list(self._lines)
        if self._partial.strip():
            lines.append(_shown(_decode(self._partial, self.LINE_KEEP, self._partial_cut)))
        return lines[-(self._lines.maxlen or 1):]

    def quote(self, limit: int = 3) -> str:
        """The last lines joined for one `error:` line."""
        lines = self.lines()[-limit:]
        return " | ".join(line.strip() for line in lines) if lines else "(no output)"


def _shown(line: str) -> str:
    """A line as a terminal last showed it: a progress line redrawn with `\\r` is its last
    state (git's `Receiving objects: 50%\\r...100%, done.`)."""
    return line.rstrip("\r").rsplit("\r", 1)[-1]


def _decode(raw: bytes, keep: int, cut: bool) -> str:
    """The last `keep` bytes of a line as text, `…` first when some were dropped."""
    cut = cut or len(raw) > keep
    return ("…" if cut else "") + raw[-keep:].decode("utf-8", "replace")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to `fd`; output that cannot be written is dropped.

    A closed reader (EPIPE), a full disk under the log (ENOSPC), a terminal
    gone (EIO): the service must go on running, so its output (and ours) is
    lost rather than the runner. A non-blocking `fd` (a pipe whose other end
    set O_NONBLOCK) with a slow reader is waited for, never dropped: the
    service then waits for us as it would for a plain pipe.
    """
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            _wait_writable(fd)
            continue
        except OSError:
            return
        view = view[written:]
    if data:
        _note_line_end(fd, data.endswith(b"\n"))


def _wait_writable(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.poll()


def _file_of(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _note_line_end(fd: int, at_line_start: bool) -> None:
    key = _file_of(fd)
    if key is None:
        return
    if at_line_start:
        _mid_line.discard(key)
    else:
        _mid_line.add(key)


def line_break(stream: IO[str]) -> str:
    """`\n` when output left the file behind `stream` in the middle of a line, else ``.

    The service's stdout and the runner's stderr are often one file (a
    container log, `2>&1`); a runner line glued to an unfinished service line
    would not start with `[runner` or `error:`.
    """
    try:
        key = _file_of(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return ""
    return "\n" if key in _mid_line else ""


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
