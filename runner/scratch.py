"""Temporary folders of one run, removed when the run ends on every path.

The pipeline holds one `Scratch` for the whole run (`with Scratch() as s:`);
signals reach it as the `Stopped` exception, so `__exit__` runs on SIGTERM
and SIGINT too. Nothing is created until a source or step asks for a folder.
"""

import shutil
import tempfile
from pathlib import Path
from types import TracebackType


class Scratch:
    """Hands out temporary folders under one root and removes the root at the end."""

    def __init__(self) -> None:
        self._root: Path | None = None

    def mkdtemp(self, prefix: str) -> Path:
        """A new empty folder that is gone when the run ends."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="runner-"))
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
