"""The runner's own output: marked, timestamped lines on stderr, secrets redacted.

The service's output never passes through here: it reaches stdout unchanged.
Everything the runner itself prints does, so that a token registered with
`add_secret` (or written as URL userinfo) can never reach a log line, and a
value with a newline in it (a folder name, `EXECUTE_CODE`) can never forge a
line of its own: control characters in a message are escaped.

Redaction is linear in the text: registered secrets are found with
`str.replace`, and the URL-userinfo pattern is bounded on both sides, so a
100 KB line costs what reading it costs.
"""

import codecs
import io
import os
import re
import sys
import time

from runner import output

PREFIX = "runner"
#: `scheme://userinfo@`; a password may hold an unencoded `/`. Both parts are
#: bounded so that a long run of letters (or of `a://`) is not scanned again
#: from every position: the reason the pattern is linear.
_URL_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)"
    r"(?:(?P<user>[^/@\s:]{1,256}):[^@\s]{1,1024}|(?P<alone>[^/@\s]{1,1024}))@"
)
#: Prefixes of well-known tokens (GitHub, GitLab) written as a URL's user name.
TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-")
#: A user name this long, with letters and digits, is taken for a token.
TOKEN_LENGTH = 20
#: Tool output is passed on a line at a time; a line longer than this is
#: passed on in pieces, keeping the last `_OVERLAP` characters back so that a
#: secret (or URL) across the cut is still found whole.
_LONG_LINE = 65536
_OVERLAP = 16384
_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """Remember a value that must be printed as `***` wherever it appears."""
    if value and len(value) >= 3:
        _secrets.add(value)


def looks_like_token(user: str) -> bool:
    """Whether a user name written alone before `@` is really a token (`https://TOKEN@host`)."""
    if user.lower().startswith(TOKEN_PREFIXES):
        return True
    return (len(user) >= TOKEN_LENGTH and any(c.isdigit() for c in user)
            and any(c.isalpha() for c in user))


def _hide_userinfo(match: re.Match[str]) -> str:
    """`user:***@` for a password, `***@` for a token alone; a plain user name stays."""
    if match["user"] is not None:
        return f"{match['scheme']}{match['user']}:***@"
    if looks_like_token(match["alone"]):
        return f"{match['scheme']}***@"
    return match[0]


def redact(text: str) -> str:
    """Hide every registered secret, then URL credentials.

    In that order: a password with an unencoded `@` (`user:ab@cd@host`, which URL
    parsers split at the last `@`) is registered whole, while the pattern ends at the
    first `@` and would leave `cd` for the secret to no longer match.
    """
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_USERINFO.sub(_hide_userinfo, text)


#: Control characters (and Unicode line breaks) as visible escapes; tab stays.
_ESCAPES = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c != 0x09},
    0x0A: "\\n",
    0x0D: "\\r",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def escape(text: str) -> str:
    """`text` on one line, with no character a terminal or a log reader acts on."""
    return text.translate(_ESCAPES)


_STARTED = time.monotonic()
_DIM, _CYAN, _YELLOW, _RED, _RESET = "\033[2m", "\033[36m", "\033[33m", "\033[31m", "\033[0m"


def on_terminal() -> bool:
    """A person is watching: compact colored status. Else (a container log): plain lines."""
    stream = sys.stderr  # None when the runner was started with its stderr closed
    return (stream is not None and stream.isatty() and os.environ.get("TERM") != "dumb"
            and "NO_COLOR" not in os.environ)


def _stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def _line(message: str, color: str = "") -> str:
    """`[runner 12:00:01.234] message` in a log; `+1.23s ▸ message` on a terminal."""
    if on_terminal():
        elapsed = time.monotonic() - _STARTED
        return f"{_DIM}{elapsed:+7.2f}s{_RESET} {_CYAN}▸{_RESET} {color}{message}{_RESET}"
    return f"[{PREFIX} {_stamp()}] {message}"


def _emit(text: str) -> None:
    """Write to stderr, waiting for a slow reader of a non-blocking pipe."""
    stream = sys.stderr
    if stream is None:  # started with stderr closed: there is nowhere to write
        return
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # a test's StringIO
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    output.write_all(fd, text.encode(getattr(stream, "encoding", None) or "utf-8",
                                     "backslashreplace"))


def _write(line: str) -> None:
    """One line of the runner's own, always at the start of a line of the log."""
    _emit(output.line_break(sys.stderr) + redact(line) + "\n")


def info(message: str) -> None:
    """A progress line of the runner."""
    _write(_line(escape(message)))


def warn(message: str) -> None:
    """Something the user should know about that does not stop the run."""
    _write(_line(f"warning: {escape(message)}", _YELLOW))


def error(message: str) -> None:
    """The one `error:` line of a failed run (the contract: it starts the line)."""
    line = f"error: {escape(message)}"
    _write(f"{_RED}{line}{_RESET}" if on_terminal() else line)


def redraw(message: str) -> None:
    """Replace the terminal's current line with `message` (a progress display).

    The next line the runner writes goes below it (see `output.line_break`).
    """
    _emit("\r\033[K" + redact(f"[{PREFIX}] {escape(message)}"))


class Passthrough:
    """Output of a tool the runner runs for the user (pip, setup.sh, a VCS client).

    Redacted a whole line at a time (`\n` or a progress bar's `\r`), so a
    secret split across two reads of the pipe is still found. A line is never
    kept whole beyond `_LONG_LINE` characters, so one endless line costs
    neither memory nor time.
    """

    def __init__(self) -> None:
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data: bytes) -> None:
        text = self._partial + self._decoder.decode(data)
        cut = max(text.rfind("\n"), text.rfind("\r")) + 1
        self._partial = text[cut:]
        self._emit(text[:cut])
        if len(self._partial) > _LONG_LINE:
            # Redacted text stays redacted when redacted again, so the kept
            # overlap can go through `redact` twice.
            shown = redact(self._partial)
            self._partial = shown[-_OVERLAP:]
            _emit(shown[:-_OVERLAP])

    def close(self) -> None:
        """Show an unfinished last line."""
        self._emit(self._partial + self._decoder.decode(b"", final=True))
        self._partial = ""

    @staticmethod
    def _emit(text: str) -> None:
        if text:
            _emit(redact(text))
