"""Pre-started service processes (`--standby`): restarts without the import cost.

A spare interpreter is started with the service's Python, environment and
working directory. It runs `spare.py`, which imports the third-party modules
the code root imports (found here by reading its files, never by running
them), reports whether it is fit, then blocks until told to go and runs the
main exactly as `python MAIN` would. Modules of the code root itself are
never pre-imported: they are what the user is editing. A service that
imports torch or flask then restarts in a fraction of its cold start.
`standby.py` decides when to make one and when to use it.
"""

import ast
import os
import select
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from runner.proc import Child, end, spawn

MAX_FILES = 500
MAX_FILE_BYTES = 1_000_000
SKIP_DIRS = {".git", ".hg", ".svn", ".bzr", "__pycache__", ".venv", "venv", "node_modules"}
SPARE = Path(__file__).with_name("spare.py")
READY = "ready"


def third_party_imports(root: Path) -> list[str]:
    """Modules the code root's files import whose top-level package is not in the code root.

    Full dotted names (`sklearn.tree`, not `sklearn`): a package's submodules are
    often most of its import time.
    """
    names: set[str] = set()
    for path in _python_files(root):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue
        names.update(_imported(tree))
    local = {p.stem for p in root.glob("*.py")} | {p.name for p in root.iterdir() if p.is_dir()}
    local |= {"__future__", "__main__"}
    return sorted(name for name in names if name.partition(".")[0] not in local)


def _python_files(root: Path) -> Iterator[Path]:
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
        for name in files:
            path = Path(folder) / name
            if name.endswith(".py") and path.stat().st_size <= MAX_FILE_BYTES:
                yield path
                count += 1
                if count >= MAX_FILES:
                    return


def _imported(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


class Zygote:
    """One spare service process: importing, then waiting for `go`.

    Its stdin is one end of a socket pair: it reports "ready" (or "unfit WHY")
    there, and reads `g` from it.
    """

    def __init__(
        self, argv: Sequence[str | Path], cwd: Path, env: Mapping[str, str], modules: list[str]
    ) -> None:
        python, main, *args = [os.fspath(a) for a in argv]
        self.control, theirs = socket.socketpair()
        try:
            self.child = spawn([python, SPARE, main, ",".join(modules), *args],
                               cwd=cwd, env=env, stdin=theirs.fileno())
        finally:
            theirs.close()
        self._verdict: str | None = None

    def fileno(self) -> int:
        """The socket its report arrives on (readable once it is ready or unfit)."""
        return self.control.fileno()

    def verdict(self, interrupt_fd: int | None = None) -> str | None:
        """READY, or why it cannot serve; None when `interrupt_fd` became readable first.

        Waits while it is still importing: a cold start would wait for those imports too.
        """
        if self._verdict is not None:
            return self._verdict
        report = b""
        watched = [self.control] if interrupt_fd is None else [self.control, interrupt_fd]
        while not report.endswith(b"\n"):
            if interrupt_fd in select.select(watched, [], [])[0]:
                return None
            data = self.control.recv(512)
            if not data:
                status = self.child.wait()
                self._verdict = f"the spare interpreter exited with status {status} unready"
                return self._verdict
            report += data
        text = report.decode(errors="replace").strip()
        self._verdict = READY if text == READY else text.removeprefix("unfit ")
        return self._verdict

    def go(self) -> Child:
        """Let it run the service; from now on it is the service process."""
        self.control.sendall(b"g")
        self.control.close()
        return self.child

    def discard(self) -> None:
        """End it unused (the environment changed, or the runner is done)."""
        self.control.close()
        end(self.child, grace=0)
