"""`requirements.txt`: installed with the service Python's own pip."""

from pathlib import Path

from runner.install.base import InstallContext, InstallStep, run_checked


class RequirementsStep(InstallStep):
    """`python -m pip install -r requirements.txt` of the service Python."""

    filenames = ("requirements.txt",)

    def run(self, ctx: InstallContext, file: Path) -> None:
        argv: list[str | Path] = [
            ctx.service_env.python, "-m", "pip", "install",
            "--disable-pip-version-check", "--no-input", "-r", file,
        ]
        run_checked(ctx, file, "pip install -r requirements.txt", argv)
