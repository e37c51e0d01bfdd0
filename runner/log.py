"""The runner's own output: marked, timestamped lines on stderr, secrets redacted.

The service's output never passes through here: it reaches stdout unchanged.
Everything the runner itself prints does, so that a token registered with
`add_secret` (or written as URL userinfo) can never reach a log line.
"""

import os
import re
import sys
import time
from functools import cache

PREFIX = "runner"
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """Remember a value that must be printed as `***` wherever it appears."""
    if value and len(value) >= 3:
        _secrets.add(value)


def redact(text: str) -> str:
    """Hide URL credentials and every registered secret."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}***@", text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


_STARTED = time.monotonic()
_DIM, _CYAN, _YELLOW, _RED, _RESET = "\033[2m", "\033[36m", "\033[33m", "\033[31m", "\033[0m"


@cache
def on_terminal() -> bool:
    """A person is watching: compact colored status. Else (a container log): plain lines."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb" and "NO_COLOR" not in os.environ


def _stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def _line(message: str, color: str = "") -> str:
    """`[runner 12:00:01.234] message` in a log; `+1.23s ▸ message` on a terminal."""
    if on_terminal():
        elapsed = time.monotonic() - _STARTED
        return f"{_DIM}{elapsed:+7.2f}s{_RESET} {_CYAN}▸{_RESET} {color}{message}{_RESET}"
    return f"[{PREFIX} {_stamp()}] {message}"


def _write(line: str) -> None:
    sys.stderr.write(redact(line) + "\n")
    sys.stderr.flush()


def info(message: str) -> None:
    """A progress line of the runner."""
    _write(_line(message))


def warn(message: str) -> None:
    """Something the user should know about that does not stop the run."""
    _write(_line(f"warning: {message}", _YELLOW))


def error(message: str) -> None:
    """The one `error:` line of a failed run (the contract: it starts the line)."""
    line = f"error: {message}"
    _write(f"{_RED}{line}{_RESET}" if on_terminal() else line)


class Passthrough:
    """Output of a tool the runner runs for the user (pip, setup.sh, a VCS client).

    Redacted a whole line at a time (`\n` or a progress bar's `\r`), so a
    secret split across two reads of the pipe is still found.
    """

    def __init__(self) -> None:
        self._partial = ""

    def write(self, data: bytes) -> None:
        text = self._partial + data.decode("utf-8", "replace")
        cut = max(text.rfind("\n"), text.rfind("\r")) + 1
        self._partial = text[cut:]
        self._emit(text[:cut])

    def close(self) -> None:
        """Show an unfinished last line."""
        self._emit(self._partial)
        self._partial = ""

    @staticmethod
    def _emit(text: str) -> None:
        if text:
            sys.stderr.write(redact(text))
            sys.stderr.flush()
