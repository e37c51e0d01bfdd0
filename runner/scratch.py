"""Temporary folders of one run, removed when the run ends on every path.

The pipeline holds one `Scratch` for the whole run (`with Scratch() as s:`);
signals reach it as the `Stopped` exception, so `__exit__` runs on SIGTERM
and SIGINT too. Nothing is created until a source or step asks for a folder.
"""

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

#: How the run's scratch folder is named, in the temporary folder.
PREFIX = "runner-"


def in_scratch(path: Path) -> bool:
    """Whether `path` lies in a run's scratch folder (gone when that run ends)."""
    try:
        inside = path.absolute().relative_to(Path(tempfile.gettempdir()).absolute())
    except ValueError:
        return False
    return bool(inside.parts) and inside.parts[0].startswith(PREFIX)


class Scratch:
    """Hands out temporary folders under one root and removes the root at the end."""

    def __init__(self) -> None:
        self._root: Path | None = None

    def mkdtemp(self, prefix: str) -> Path:
        """A new empty folder that is gone when the run ends."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix=PREFIX))
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self._root))

    def cleanup(self) -> None:
        """Remove every folder handed out; safe to call twice."""
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
