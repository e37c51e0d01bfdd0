"""The install-step interface and the service environment the steps build.

Each step is one class keyed by the file that triggers it in the code root.
A step may change the `ServiceEnv` for the steps after it and the service
(the conda step swaps the Python); the others run inside it.
"""

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from runner.config import Config
from runner.errors import InstallError
from runner.proc import Finished, run_tool
from runner.sources.base import Code


@dataclass
class ServiceEnv:
    """The Python the service runs on and what its environment adds.

    `path_prefix` folders go first on PATH (a conda env's `bin/`); `extra` are
    more variables (`CONDA_PREFIX`). Built from the runner's own environment.
    """

    python: Path
    path_prefix: list[Path] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)

    def environ(self, base: dict[str, str] | os._Environ | None = None) -> dict[str, str]:
        """The full environment for a child: `base` plus our PATH and variables.

        The Python's own folder goes first on PATH (after a conda env's bin), so
        the `python` and `pip` that setup.sh calls are the service's.
        """
        env = dict(os.environ if base is None else base)
        env.update(self.extra)
        folders = [*map(str, self.path_prefix), str(self.python.parent)]
        current = env.get("PATH", os.defpath)
        env["PATH"] = os.pathsep.join([*folders, current])
        return env


@dataclass
class InstallContext:
    """What a step works on: the code, the run's settings, the environment so far."""

    code: Code
    config: Config
    service_env: ServiceEnv


class InstallStep(ABC):
    """One dependency step, run only when its file is in the code root."""

    #: The files that trigger the step, first match wins (e.g. a lock before its source).
    filenames: ClassVar[tuple[str, ...]]

    def trigger(self, code: Code) -> Path | None:
        """The file in the code root that asks for this step, if any."""
        for name in self.filenames:
            if (code.root / name).is_file():
                return code.root / name
        return None

    @abstractmethod
    def run(self, ctx: InstallContext, file: Path) -> None:
        """Install what `file` asks for; raise `InstallError` when it fails."""

    def activate(self, ctx: InstallContext, file: Path) -> None:
        """With `--code-only`: use what an earlier `--requirements-only` installed.

        Most steps leave nothing to activate; the conda step points the service
        at the environment it made.
        """
        return None


def check(finished: Finished, file: Path, what: str) -> None:
    """Turn a failed tool run into the contract's exit-4 error line."""
    if finished.ok:
        return
    status = "timed out" if finished.returncode is None else f"exited {finished.returncode}"
    raise InstallError(
        f"{file.name} failed: {what} {status}; last output: {finished.tail.quote()} "
        f"(fix {file.name}, or pass --keep-going to start the service anyway)"
    )


def run_checked(ctx: InstallContext, file: Path, what: str, argv: list[str | Path]) -> None:
    """Run one tool of a step in the code root with the service environment."""
    finished = run_tool(argv, cwd=ctx.code.root, env=ctx.service_env.environ())
    check(finished, file, what)
