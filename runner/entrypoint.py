"""What the image does when it starts: serve code, or open the workspace."""

import os
from collections.abc import Sequence

from runner import cli, log
from runner.errors import UsageError


def main(argv: Sequence[str], environ: dict[str, str] | os._Environ) -> int:
    """With `EXECUTE_CODE` (or a code argument): the pipeline from `WORKSPACE_HOME`."""
    if environ.get("EXECUTE_CODE") or _has_code_argument(argv):
        home = environ.get("WORKSPACE_HOME") or "/workspace"
        if os.path.isdir(home):
            os.chdir(home)
        return cli.main(argv)
    return workspace(environ)


def _has_code_argument(argv: Sequence[str]) -> bool:
    """Whether the arguments name code themselves (`docker run IMAGE ./svc`)."""
    try:
        return cli.build_parser().parse_args(list(argv)).code is not None
    except UsageError:
        return True  # let the pipeline report the bad flag


def workspace(environ: dict[str, str] | os._Environ) -> int:
    """The workspace mode (JupyterLab); not in this image yet."""
    error = UsageError(
        "EXECUTE_CODE is not set: set it to a folder, script or URL to serve "
        "(docker run --env EXECUTE_CODE=/workspace/my-service ...); "
        "the interactive workspace is not available in this image yet"
    )
    log.error(str(error))
    return error.exit_code
