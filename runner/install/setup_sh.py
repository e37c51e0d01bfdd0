"""`setup.sh`: the user's own install script, run with bash in the code root."""

from pathlib import Path

from runner.install.base import InstallContext, InstallStep, check, run_tool_in

#: Said after bash's own words when setup.sh has CRLF line endings: bash reads the `\r`
#: as part of each command (`$'false\r': command not found`).
CRLF_HINT = ("; setup.sh has Windows line endings (CRLF), which bash reads as part of each "
             "command: save it with LF endings (dos2unix setup.sh)")


class SetupShStep(InstallStep):
    """Runs `bash setup.sh` (never through a shell string) with the service's PATH."""


    def run(self, ctx: InstallContext, file: Path) -> None:
        finished = run_tool_in(ctx, ["bash", file])
        if not finished.ok and _has_crlf(file):
            check(finished, file, "bash setup.sh", finished.tail.quote() + CRLF_HINT)
        check(finished, file, "bash setup.sh")


def _has_crlf(file: Path) -> bool:
    """Whether the script's first 64 KB hold a CRLF (read only after a failure)."""
    try:
        with file.open("rb") as f:
            return b"\r\n" in f.read(65536)
    except OSError:  # bash read it; if we cannot now, there is no hint to give
        return False
