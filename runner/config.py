"""All settings of one run in one place, from the command line and the environment.

Like uvicorn's `Config`: every module reads its settings from here, so a
flag, its environment variable and its default are written once.
"""

import os
import signal
import sys
from pathlib import Path

RESTART_POLICIES = ("on-failure", "always", "never")
DEFAULT_PORT = 8091
#: Where the image keeps the user's files (code given by a relative path, the
#: workspace mode's root); `WORKSPACE_HOME` moves it.
DEFAULT_WORKSPACE_HOME = Path("/workspace")


class Config:
    """One run's settings. Defaults are what the image's plain start uses.

    A plain class, not a dataclass: `dataclasses` imports `inspect` (about 5 ms),
    a cost on every start (issue 16). The defaults are class attributes, so
    `Config.port` names the default; `Config(port=...)` sets any of them.
    """

    code: str | None = None
    service_args: list[str]  # set per instance: a list default would be shared
    port: int = DEFAULT_PORT
    requirements_only: bool = False
    code_only: bool = False
    keep_going: bool = False
    reinstall: bool = False
    watch: bool = False
    standby: bool = False
    watch_ignore: list[str]  # per instance, as service_args
    check: bool = False
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 30.0
    restart: str = "on-failure"
    max_restarts: int = 5
    min_uptime: float = 10.0
    ready_timeout: float | None = None
    cache_dir: Path | None = None
    envs_dir: Path | None = None
    network_timeout: float = 120.0
    max_download_bytes: int = 2 * 1024**3
    max_unpacked_bytes: int = 2 * 1024**3
    max_archive_members: int = 100_000
    lab_endpoint: str | None = None
    lab_token: str | None = None
    lab_project: str | None = None
    runner_python: Path | None = None

    def __init__(self, **settings: object) -> None:
        self.service_args, self.watch_ignore = [], []
        for name, value in settings.items():
            if name not in Config.__annotations__:
                raise TypeError(f"Config() got an unexpected keyword argument {name!r}")
            setattr(self, name, value)

    @property
    def service_python(self) -> Path:
        """The Python the service and its requirements use before any conda step.

        The image points `RUNNER_PYTHON` at a venv of its own so that a user's
        pins never touch the runner's packages; elsewhere it is our own Python.
        """
        return self.runner_python or Path(sys.executable)


def env_path(environ: dict[str, str] | os._Environ, name: str) -> Path | None:
    """A path from the environment; unset and empty both mean none."""
    value = environ.get(name)
    return Path(value) if value else None


def workspace_home(environ: dict[str, str] | os._Environ) -> Path:
    """The image's home of the user's files: `WORKSPACE_HOME`, else /workspace.

    Read by the entrypoint before there is a `Config` (it changes into this
    folder, then the command line is parsed), hence a function of its own.
    """
    return env_path(environ, "WORKSPACE_HOME") or DEFAULT_WORKSPACE_HOME
