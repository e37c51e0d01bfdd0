"""The image's entrypoint (`resources/docker-entrypoint.py`) run on this machine.

No podman needed: these check how it chooses between running a program,
serving code and opening the workspace, and its errors. The workspace itself
(JupyterLab) is tested in the image, test_image.py.
"""

import importlib.util
import sys
from pathlib import Path

import pytest
from helpers import ROOT, run_runner, serve_once

ENTRYPOINT = [sys.executable, str(ROOT / "resources" / "docker-entrypoint.py")]


def test_seed_cmd_of_a_custom_image_serves_the_code(service: Path) -> None:
    # CMD ["python", "/resources/docker-entrypoint.py", "--code-only"] reaches the
    # entrypoint as its arguments: it is run as a program, which serves the code.
    reply, _ = serve_once([*ENTRYPOINT, "--code-only"], argv0=ENTRYPOINT,
                          env={"EXECUTE_CODE": str(service)})
    assert reply == "ok"


def test_a_program_argument_runs_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "it ran; $(touch pwned)"
    runner = run_runner(["touch", marker], argv0=ENTRYPOINT, cwd=tmp_path)
    assert runner.proc.returncode == 0, runner.stderr
    assert marker.exists()
    assert not (tmp_path / "pwned").exists()


def test_a_program_that_cannot_run_is_a_usage_error(tmp_path: Path) -> None:
    program = tmp_path / "not-a-program"
    program.write_text("no shebang, no binary\n")
    program.chmod(0o755)
    runner = run_runner([program], argv0=ENTRYPOINT)
    assert runner.proc.returncode == 2
    assert runner.error_line() == (
        f"error: cannot run {program}: Exec format error: check the command given to the "
        "container"
    )


def test_workspace_home_that_is_not_a_folder(tmp_path: Path) -> None:
    runner = run_runner([], argv0=ENTRYPOINT, env={"WORKSPACE_HOME": str(tmp_path / "nope")})
    assert runner.proc.returncode == 2
    assert runner.error_line() == (
        f"error: WORKSPACE_HOME {tmp_path / 'nope'} is not a folder: create it or point "
        "WORKSPACE_HOME at an existing folder"
    )


def test_bad_workspace_port(tmp_path: Path) -> None:
    env = {"WORKSPACE_HOME": str(tmp_path), "WORKSPACE_PORT": "80x"}
    runner = run_runner([], argv0=ENTRYPOINT, env=env)
    assert runner.proc.returncode == 2
    assert runner.error_line() == (
        "error: WORKSPACE_PORT must be a port number 1-65535, got '80x'"
    )


@pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is not None,
                    reason="JupyterLab is installed here: the workspace would start")
def test_workspace_without_jupyterlab(tmp_path: Path) -> None:
    runner = run_runner([], argv0=ENTRYPOINT, env={"WORKSPACE_HOME": str(tmp_path)})
    assert runner.proc.returncode == 2
    assert runner.error_line() == (
        f"error: the workspace needs JupyterLab, which is not installed for "
        f"{sys.executable}: run `pip install "
        "jupyterlab`, or set EXECUTE_CODE to serve code instead"
    )
