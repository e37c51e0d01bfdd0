"""What the image does when it starts: serve code, open the workspace, or run a command.

`docker run IMAGE` with `EXECUTE_CODE` (or with runner arguments) serves the
code; with neither it opens the workspace. Like the entrypoints of the
official images, a first argument that is a program (`bash`, or the seed's
`CMD ["python", "/resources/docker-entrypoint.py", "--code-only"]`) is run
as it is, without a shell.
"""

import os
import shutil
from collections.abc import Sequence

from runner import cli, log, workspace
from runner.config import workspace_home
from runner.errors import RunnerError, UsageError


def main(argv: Sequence[str], environ: dict[str, str] | os._Environ) -> int:
    """Run a program, serve code (from `WORKSPACE_HOME`) or open the workspace.

    Returns the exit code; the program and the workspace replace this process.
    """
    if argv and _is_program(argv[0]):
        return _exec(argv)
    if environ.get("EXECUTE_CODE") or argv:
        home = workspace_home(environ)
        if os.path.isdir(home):  # False, not an error, for a name over the limit
            os.chdir(home)
        return cli.main(argv)
    try:
        workspace.start(environ)
    except RunnerError as exc:
        log.error(str(exc))
        return exc.exit_code


def _is_program(arg: str) -> bool:
    """A program on PATH (or by path), but not a flag and not code to serve."""
    if arg.startswith("-") or arg.endswith(".py") or os.path.isdir(arg):
        return False
    return shutil.which(arg) is not None


def _exec(argv: Sequence[str]) -> int:
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:
        error = UsageError(f"cannot run {argv[0]}: {exc.strerror}: check the command "
                           "given to the container")
        log.error(str(error))
        return error.exit_code
