"""The workspace mode: JupyterLab (with terminals) to try code before serving it.

The image starts this when it is given no code. JupyterLab replaces the
runner's process: it handles SIGTERM itself and there is nothing to supervise.
The token travels in the environment (`JUPYTER_TOKEN`), never in an argument
list or a file; Jupyter then shows it as `...` in its own log lines.
"""

import importlib.util
import os
import secrets
import sys
from pathlib import Path
from typing import NoReturn

from runner import log
from runner.config import workspace_home
from runner.errors import UsageError

DEFAULT_PORT = 8080


def command(home: Path, port: int) -> list[str]:
    """JupyterLab on all interfaces (a published container port needs 0.0.0.0)."""
    return [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ip=0.0.0.0", f"--port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={home}",
    ]


def start(environ: dict[str, str] | os._Environ) -> NoReturn:
    """Exec JupyterLab in `WORKSPACE_HOME`; raises `UsageError` when it cannot."""
    home = workspace_home(environ)
    if not os.path.isdir(home):  # False, not an error, for a name over the limit
        raise UsageError(f"WORKSPACE_HOME {home} is not a folder: create it or point "
                         "WORKSPACE_HOME at an existing folder")
    port = _port(environ.get("WORKSPACE_PORT"))
    if importlib.util.find_spec("jupyterlab") is None:
        raise UsageError(
            f"the workspace needs JupyterLab, which is not installed for {sys.executable}: "
            "run `pip install jupyterlab`, or set EXECUTE_CODE to serve code instead"
        )
    env = dict(environ)
    token = env.pop("WORKSPACE_TOKEN", "")
    if token:
        log.info(f"workspace: JupyterLab on port {port}, token from WORKSPACE_TOKEN")
    else:
        token = secrets.token_urlsafe(24)
        log.info(f"workspace: JupyterLab on port {port}; "
                 f"open http://127.0.0.1:{port}/lab?token={token}")
    env["JUPYTER_TOKEN"] = token
    argv = command(home, port)
    os.execve(argv[0], argv, env)


def _port(value: str | None) -> int:
    if not value:
        return DEFAULT_PORT
    if value.isdigit() and 1 <= int(value) <= 65535:
        return int(value)
    raise UsageError(f"WORKSPACE_PORT must be a port number 1-65535, got {value!r}")
