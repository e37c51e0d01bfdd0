"""`environment.yml` / `conda-lock.yml`: the conda environment of the service.

Not built yet: until it is, a code folder that asks for a conda environment
fails clearly instead of starting without the packages it needs.
"""

from pathlib import Path

from runner.errors import InstallError
from runner.install.base import InstallContext, InstallStep


class CondaStep(InstallStep):
    """Makes the conda environment that every later step and the service use."""

    filenames = ("conda-lock.yml", "environment.yml")

    def run(self, ctx: InstallContext, file: Path) -> None:
        raise InstallError(
            f"{file.name} found, but conda environments are not supported yet: "
            "list the packages in requirements.txt instead"
        )
