"""Temporary folders of one run, removed when the run ends on every path.

The pipeline holds one `Scratch` for the whole run (`with Scratch() as s:`);
signals reach it as the `Stopped` exception, so `__exit__` runs on SIGTERM,
SIGINT and SIGHUP too, and no repeated signal cuts the removal short. If
the runner is SIGKILLed while a child runs, that child's keeper removes the
root (`keeper.remove_with_runner`); if no child ran, the next run does: a
live run holds an `flock` on its root, so a `runner-run-*` folder nobody holds is
a killed run's. Nothing is created until a source or step asks for a folder.
"""

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

from runner import keeper, signals

#: The run's root in TMPDIR; no other folder may be named so (they would be swept).
ROOT_PREFIX = "runner-run-"


def in_scratch(path: Path) -> bool:
    """Whether `path` lies in a run's scratch folder (gone when that run ends)."""
    try:
        inside = path.absolute().relative_to(Path(tempfile.gettempdir()).absolute())
    except ValueError:
        return False
    return bool(inside.parts) and inside.parts[0].startswith(ROOT_PREFIX)


class Scratch:
    """Hands out temporary folders under one root and removes the root at the end."""

    #: The run's scratch while it is open (`with Scratch()`), for `tool_environ`.
    current: "Scratch | None" = None

    def __init__(self) -> None:
        self._root: Path | None = None
        self._lock = -1
        self._tools_tmp: Path | None = None

    def mkdtemp(self, prefix: str) -> Path:
        """A new empty folder that is gone when the run ends."""
        if self._root is None:
            tmp = Path(tempfile.gettempdir())
            remove_unlocked(tmp, ROOT_PREFIX)
            self._root, self._lock = locked_mkdtemp(tmp, ROOT_PREFIX)
            keeper.remove_with_runner(self._root)  # should the runner be SIGKILLed
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self._root))

    def tools_tmpdir(self) -> Path:
        """The TMPDIR of every tool of the run: what they leave there (pip's `pip-*`) goes too."""
        if self._tools_tmp is None:
            self._tools_tmp = self.mkdtemp("tmp-")
        return self._tools_tmp

    def cleanup(self) -> None:
        """Remove every folder handed out; safe to call twice."""
        if self._root is not None:
            with signals.uninterruptible(final=True):
                shutil.rmtree(self._root, ignore_errors=True)
            os.close(self._lock)
            keeper.forget(self._root)
            self._root = self._tools_tmp = None

    def __enter__(self) -> "Scratch":
        Scratch.current = self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        Scratch.current = None
        self.cleanup()


def tool_environ(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a tool (pip, setup.sh, a VCS client): TMPDIR inside the run's scratch folder."""
    if Scratch.current is None:
        return dict(env)
    return {**env, "TMPDIR": str(Scratch.current.tools_tmpdir())}


@contextlib.contextmanager
def step_folder(prefix: str) -> Iterator[Path]:
    """A folder for one step's own files (the conda worker's job), removed when it ends.

    Inside the run's scratch folder, so a SIGKILL of the runner meanwhile leaves
    nothing either: the keeper, or the next run, removes the whole root.
    """
    if Scratch.current is None:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)
        return
    folder = Scratch.current.mkdtemp(prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def locked_mkdtemp(parent: Path, prefix: str) -> tuple[Path, int]:
    """A new folder `parent/PREFIX*` and the fd of the `flock` held on it while it is in use.

    It is made under a hidden name and renamed once locked, so `remove_unlocked`
    never sees it unlocked.
    """
    fresh = Path(tempfile.mkdtemp(prefix=f".new-{prefix}", dir=parent))
    lock = os.open(fresh, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    folder = fresh.with_name(fresh.name.removeprefix(".new-"))
    os.rename(fresh, folder)
    return folder, lock


def remove_unlocked(parent: Path, prefix: str) -> None:
    """Remove the `parent/PREFIX*` folders of runs that were killed (no live run locks them).

    A folder we cannot open (another user's) is left alone.
    """
    for folder in parent.glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                os.close(lock)
