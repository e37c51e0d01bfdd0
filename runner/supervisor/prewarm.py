"""Pre-started service processes for `--watch`: restarts without the import cost.

After the service comes up, a spare interpreter is started with the same
Python, environment and working directory. It imports the third-party modules
the code root imports (found by reading its files, never by running them),
then blocks until told to go, and then runs the main exactly as `python MAIN`
would (`runpy.run_path` as `__main__`, same `sys.argv`). Modules of the code
root itself are never pre-imported: they are what the user is editing. A
service that imports torch or flask then restarts in a fraction of its cold
start. Only for watch mode: the image's normal start never uses it.
"""

import ast
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from runner.proc import Child, end, spawn

MAX_FILES = 500
MAX_FILE_BYTES = 1_000_000
SKIP_DIRS = {".git", ".hg", ".svn", ".bzr", "__pycache__", ".venv", "venv", "node_modules"}

# Runs in the spare interpreter: argv = [-c, MAIN, MODULES (comma-joined), *SERVICE_ARGS].
ZYGOTE = """\
import os, sys
main, modules, args = sys.argv[1], sys.argv[2], sys.argv[3:]
root = os.path.abspath(main if os.path.isdir(main) else os.path.dirname(main))
sys.path[0] = root
import importlib.util
for name in filter(None, modules.split(",")):
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and not (spec.origin or "").startswith(root + os.sep):
            importlib.import_module(name)
    except BaseException:
        pass  # the real run imports it again and shows the error where it belongs
if os.read(0, 1) != b"g":
    os._exit(0)
devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(devnull, 0)
os.close(devnull)
sys.argv = [main, *args]
import runpy
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def third_party_imports(root: Path) -> list[str]:
    """Top-level names the code root's files import that are not in the code root."""
    names: set[str] = set()
    for path in _python_files(root):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue
        names.update(_imported(tree))
    local = {p.stem for p in root.glob("*.py")} | {p.name for p in root.iterdir() if p.is_dir()}
    return sorted(names - local - {"__future__", "__main__"})


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
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


class Zygote:
    """One spare service process, waiting for `go`."""

    def __init__(
        self, argv: Sequence[str | Path], cwd: Path, env: Mapping[str, str], modules: list[str]
    ) -> None:
        python, main, *args = [os.fspath(a) for a in argv]
        command = [python, "-c", ZYGOTE, main, ",".join(modules), *args]
        self.child = spawn(command, cwd=cwd, env=env, stdin=subprocess.PIPE)

    def alive(self) -> bool:
        return self.child.poll() is None

    def go(self) -> Child:
        """Let it run the service; from now on it is the service process."""
        assert self.child.stdin is not None
        self.child.stdin.write(b"g")
        self.child.stdin.close()
        return self.child

    def discard(self) -> None:
        """End it unused (the environment changed, or the runner is done)."""
        end(self.child, grace=0)
