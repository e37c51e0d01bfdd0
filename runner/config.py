"""All settings of one run in one place, from the command line and the environment.

Like uvicorn's `Config`: every module reads its settings from here, so a
flag, its environment variable and its default are written once.
"""

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

RESTART_POLICIES = ("on-failure", "always", "never")
DEFAULT_PORT = 8091


@dataclass
class Config:
    """One run's settings. Defaults are what the image's plain start uses."""

    code: str | None = None
    service_args: list[str] = field(default_factory=list)
    port: int = DEFAULT_PORT
    requirements_only: bool = False
    code_only: bool = False
    keep_going: bool = False
    reinstall: bool = False
    watch: bool = False
    standby: bool = False
    watch_ignore: list[str] = field(default_factory=list)
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
    max_unpacked_bytes: int = 2 * 1024**3
    max_archive_members: int = 100_000
    lab_endpoint: str | None = None
    lab_token: str | None = field(default=None, repr=False)
    lab_project: str | None = None
    runner_python: Path | None = None
    resources_path: Path = Path("/resources")
    workspace_home: Path = Path("/workspace")

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
