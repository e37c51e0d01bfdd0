"""`setup.sh`: the user's own install script, run with bash in the code root."""

from pathlib import Path

from runner.install.base import InstallContext, InstallStep, run_checked


class SetupShStep(InstallStep):
    """Runs `bash setup.sh` (never through a shell string) with the service's PATH."""


    def run(self, ctx: InstallContext, file: Path) -> None:
        run_checked(ctx, file, "bash setup.sh", ["bash", file])
