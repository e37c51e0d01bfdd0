"""`requirements.txt`: installed with the service Python's own pip.

The runner reads the file only for what it decides itself: which files it
includes (`-r`/`-c`, recursively: a change to any of them re-installs, and
`--watch` watches them) and which URLs carry a password (registered as
secrets before pip runs, since pip prints requirement lines as written and
passes VCS URLs, credentials and all, to git's argument list).
"""

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from runner.credentials import register_credentials
from runner.install.base import InstallContext, InstallStep, check_pip, run_tool_in, unreadable

#: pip's include options, in all the spellings pip takes: `-r f`, `-rf`, `--requirement=f`.
INCLUDE = re.compile(
    r"^\s*(?:-r|-c|--requirement|--constraint)(?:\s*=\s*|\s+|(?=[^\s-]))(?P<path>\S+)")
#: A URL written anywhere in a line (`pkg @ git+https://...`, `--index-url=https://...`).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
#: pip's comment rule: `#` at the start of a line or after whitespace.
_COMMENT = re.compile(r"(^|\s+)#.*$")


class RequirementsStep(InstallStep):
    """`python -m pip install -r requirements.txt` of the service Python."""


    def inputs(self, file: Path) -> list[Path]:
        return requirement_files(file)

    def run(self, ctx: InstallContext, file: Path) -> None:
        register_url_secrets(file)
        argv: list[str | Path] = [
            ctx.service_env.python, "-m", "pip", "install",
            "--disable-pip-version-check", "--no-input", "-r", file,
        ]
        check_pip(run_tool_in(ctx, argv), file, "pip install -r requirements.txt")


def requirement_files(file: Path) -> list[Path]:
    """`file` and every local file it includes with `-r`/`-c`, recursively, each once.

    Paths are relative to the including file's folder, as pip reads them; a
    URL include is pip's to fetch, a missing file pip's to report.
    """
    found: list[Path] = []
    todo = [file]
    while todo:
        path = todo.pop(0)
        if path in found:
            continue
        found.append(path)
        for line in read_lines(path):
            match = INCLUDE.match(line)
            if match and "://" not in match["path"]:
                included = Path(os.path.normpath(path.parent / match["path"]))
                if included.is_file():
                    todo.append(included)
    return found


def read_lines(path: Path) -> Iterator[str]:
    """The lines of a requirements file without comments, read as they come (a huge
    file is never whole in memory); InstallError when unreadable."""
    try:
        with path.open(encoding="utf-8-sig", errors="replace") as f:  # a BOM, as pip reads it
            for line in f:
                yield _COMMENT.sub("", line)
    except OSError as exc:
        raise unreadable(path, exc) from None


def register_url_secrets(file: Path) -> None:
    """Register the credentials of every URL in `file` and what it includes."""
    for path in requirement_files(file):
        register_text_secrets(read_lines(path))


def register_text_secrets(lines: Iterable[str]) -> None:
    """Register the credentials of every URL written in `lines` (a `pip:` list too)."""
    for line in lines:
        for url in _URL.findall(line):
            register_credentials(url)
