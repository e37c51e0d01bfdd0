"""The install-step interface and the service environment the steps build.

Each step is one class; the registry in `runner/install/__init__.py` names the
files that trigger it in the code root.
A step may change the `ServiceEnv` for the steps after it and the service
(the conda step swaps the Python); the others run inside it.
"""

import os
import re
from abc import ABC, abstractmethod
from pathlib import Path

from runner.config import Config
from runner.errors import InstallError
from runner.proc import Finished, run_tool
from runner.sources.base import Code


class ServiceEnv:
    """The Python the service runs on and what its environment adds.

    `path_prefix` folders go first on PATH (a conda env's `bin/`); `extra` are
    more variables (`CONDA_PREFIX`). Built from the runner's own environment.
    """

    __slots__ = ("extra", "path_prefix", "python")

    def __init__(self, python: Path, path_prefix: list[Path] | None = None,
                 extra: dict[str, str] | None = None) -> None:
        self.python = python
        self.path_prefix = [] if path_prefix is None else path_prefix
        self.extra = {} if extra is None else extra

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


class InstallContext:
    """What a step works on: the code, the run's settings, the environment so far."""

    __slots__ = ("code", "config", "service_env")

    def __init__(self, code: Code, config: Config, service_env: ServiceEnv) -> None:
        self.code = code
        self.config = config
        self.service_env = service_env


class InstallStep(ABC):
    """One dependency step, run only when its file is in the code root."""

    def inputs(self, file: Path) -> list[Path]:
        """Every file whose content decides what the step installs: `file`, and what it
        includes (requirements.txt's `-r`/`-c` files). Stamps hash them; --watch watches them."""
        return [file]

    @abstractmethod
    def run(self, ctx: InstallContext, file: Path) -> None:
        """Install what `file` asks for; raise `InstallError` when it fails."""

    def activate(self, ctx: InstallContext, file: Path) -> None:
        """With `--code-only`: use what an earlier `--requirements-only` installed.

        Most steps leave nothing to activate; the conda step points the service
        at the environment it made.
        """
        return None


#: The lines pip ends a failure with that say nothing about its cause.
PIP_BOILERPLATE = re.compile(
    r"^(\s*(╰─>\s*)?See above for (the )?output\.?|\s*│?\s*exit code: \d+|"
    r"\s*note: This error originates from a subprocess.*|\s*hint: See above.*|"
    r"error: [a-z]+(-[a-z]+)+|\s*note: .*)$")


def check(finished: Finished, file: Path, what: str, last: str | None = None) -> None:
    """Turn a failed tool run into the contract's exit-4 error line.

    `last` is what to quote as the cause; by default the tool's last lines.
    """
    if finished.ok:
        return
    status = "timed out" if finished.returncode is None else f"exited {finished.returncode}"
    raise InstallError(
        f"{file.name} failed: {what} {status}; last output: {last or finished.tail.quote()} "
        f"(fix {file.name}, or pass --keep-going to start the service anyway)"
    )


def check_pip(finished: Finished, file: Path, what: str) -> None:
    """`check` for a pip run: quote pip's cause, not its closing boilerplate."""
    check(finished, file, what, pip_cause(finished.tail.lines()))


def pip_cause(lines: list[str]) -> str | None:
    """pip's `ERROR:` line (the last one), else its last lines that are not boilerplate.

    pip ends a failed subprocess (a git clone, a build) with `error: <name>`,
    `(x) ... did not run successfully`, `exit code: N`, `╰─> See above for
    output` and a note: the cause is the subprocess's own line before them.
    """
    errors = [line.strip() for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[-1]
    kept = [line.strip(" \u2502\u00d7") for line in lines if not PIP_BOILERPLATE.match(line)]
    kept = list(dict.fromkeys(line for line in kept if line))  # pip repeats its "did not run" line
    return " | ".join(kept[-2:]) or None


def unreadable(path: Path, exc: OSError) -> InstallError:
    """An install file the runner cannot read (exit 4, not a traceback)."""
    return InstallError(f"{path.name} cannot be read ({exc.strerror or exc}): make {path} "
                        "readable by the runner's user")


def run_tool_in(ctx: InstallContext, argv: list[str | Path]) -> Finished:
    """Run one tool of a step in the code root with the service environment."""
    return run_tool(argv, cwd=ctx.code.root, env=ctx.service_env.environ())
