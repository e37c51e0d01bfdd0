"""The code-source interface: turn an `EXECUTE_CODE` value into local code.

As in repo2docker's content providers, each kind of source is one class that
says whether a spec is its kind (`detect`) and brings the code into a local
folder (`fetch`). What counts as runnable code is decided once, here, for all.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar, NamedTuple

from runner.config import Config
from runner.errors import ResolveError
from runner.scratch import Scratch


class Code(NamedTuple):
    """Code ready to install and run.

    `root` is where install files are looked up and the service's working
    directory; `main` is what `python` runs: the root folder itself (its
    `__main__.py`) or a single script inside it.
    """

    root: Path
    main: Path

    @classmethod
    def from_path(cls, path: Path, origin: str) -> "Code":
        """Check that `path` is runnable; `origin` names it in errors (redacted)."""
        path = path.absolute()
        try:
            return cls._runnable(path, origin)
        except OSError as exc:  # e.g. a name over the system's limit
            raise ResolveError(f"{origin} cannot be used as code: {exc.strerror or exc}") from None

    @classmethod
    def _runnable(cls, path: Path, origin: str) -> "Code":
        if path.is_dir():
            if not (path / "__main__.py").is_file():
                raise ResolveError(
                    f"no __main__.py in {origin}: add a __main__.py that starts your "
                    "service, or point EXECUTE_CODE at a single .py script"
                )
            return cls(root=path, main=path)
        if path.is_file():
            if path.suffix != ".py":
                raise ResolveError(
                    f"{origin} is not a Python script: point EXECUTE_CODE at a .py file "
                    "or a folder with __main__.py"
                )
            return cls(root=path.parent, main=path)
        raise ResolveError(f"{origin} does not exist")

    @property
    def main_file(self) -> Path:
        """The file `python` starts: the script, or the folder's `__main__.py`."""
        return self.main / "__main__.py" if self.main == self.root else self.main

    def refuse_links_out(self, files: Iterable[Path], origin: str) -> None:
        """Refuse fetched code whose main or install `files` lead out of its root.

        A repository or archive can hold a link to any file of this machine
        (`requirements.txt -> /etc/passwd`, shown by pip); as with
        `#subdirectory`, what fetched code runs or installs stays inside it.
        """
        root = self.root.resolve()
        for file in (self.main_file, *files):
            target = file.resolve()
            if not target.is_relative_to(root):
                raise ResolveError(
                    f"{file.name} in {origin} is a link to {target}, outside the code: the "
                    "runner does not follow links out of fetched code; commit the file itself"
                )


class CodeSource(ABC):
    """One kind of place code comes from."""

    #: Short name for log lines ("local", "git", "lab", ...).
    name: ClassVar[str]
    #: Whether links out of the code root are refused (fetched code: someone
    #: else wrote it). A user's own folder may link where the user likes.
    confined: ClassVar[bool] = True

    def __init__(self, spec: str, config: Config) -> None:
        self.spec = spec
        self.config = config

    @classmethod
    @abstractmethod
    def detect(cls, spec: str, config: Config) -> bool:
        """Whether `spec` is this kind of source. Cheap: no network, no heavy import."""

    @abstractmethod
    def fetch(self, scratch: Scratch) -> Path:
        """Bring the code to a local folder or script and return its path.

        Temporary files go under `scratch.mkdtemp(...)` (or the cache dir of
        the config); failures raise `ResolveError` with a redacted message.
        """
