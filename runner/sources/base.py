"""The code-source interface: turn an `EXECUTE_CODE` value into local code.

As in repo2docker's content providers, each kind of source is one class that
says whether a spec is its kind (`detect`) and brings the code into a local
folder (`fetch`). What counts as runnable code is decided once, here, for all.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from runner.config import Config
from runner.errors import ResolveError
from runner.scratch import Scratch


@dataclass(frozen=True)
class Code:
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


class CodeSource(ABC):
    """One kind of place code comes from."""

    #: Short name for log lines ("local", "git", "lab", ...).
    name: ClassVar[str]

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
