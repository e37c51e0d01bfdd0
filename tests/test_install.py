"""Install steps: order, failures, --keep-going, --requirements-only, --code-only."""

import sys
from pathlib import Path

from helpers import build_wheel, free_port, run_runner, serve_once, write_service


def test_setup_sh_then_requirements_in_order(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", body="import localdep", reply="served")
    wheel = build_wheel(tmp_path / "wheels", "localdep")
    (svc / "setup.sh").write_text('echo "setup saw python $(command -v python)" > order.log\n')
    (svc / "requirements.txt").write_text(f"{wheel}\n")
    target = tmp_path / "site"
    reply, runner = serve_once([svc], env={"PIP_TARGET": str(target), "PYTHONPATH": str(target)})
    assert reply == "served"
    assert (svc / "order.log").read_text().startswith("setup saw python ")
    assert (target / "localdep.py").is_file()
    log = runner.stderr
    assert log.index("installing from setup.sh") < log.index("installing from requirements.txt")


def test_setup_sh_runs_with_the_service_python_first_on_path(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text('command -v python > which.txt\n')
    venv = tmp_path / "venv"
    import venv as venv_mod

    venv_mod.create(venv, with_pip=False)
    env = {"RUNNER_PYTHON": str(venv / "bin" / "python")}
    runner = run_runner([svc, "--requirements-only"], env=env)
    assert runner.proc.returncode == 0, runner.stderr
    assert (svc / "which.txt").read_text().strip() == str(venv / "bin" / "python")


def test_service_runs_on_runner_python(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", reply_expr="sys.executable")
    venv = tmp_path / "venv"
    import venv as venv_mod

    venv_mod.create(venv, with_pip=False)
    reply, _ = serve_once([svc], env={"RUNNER_PYTHON": str(venv / "bin" / "python")})
    assert reply == str(venv / "bin" / "python")


def test_failing_setup_sh_stops_the_run(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text("echo fetching weights\necho 'weights: not found' >&2\nexit 1\n")
    (svc / "requirements.txt").write_text("")
    runner = run_runner([svc])
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        "error: setup.sh failed: bash setup.sh exited 1; last output: fetching weights | "
        "weights: not found (fix setup.sh, or pass --keep-going to start the service anyway)"
    )
    assert "installing from requirements.txt" not in runner.stderr
    assert "service started" not in runner.stderr


def test_keep_going_starts_the_service_anyway(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", reply="still up")
    (svc / "setup.sh").write_text("exit 3\n")
    reply, runner = serve_once([svc, "--keep-going"])
    assert reply == "still up"
    assert "warning: setup.sh failed: bash setup.sh exited 3" in runner.stderr
    assert "going on because of --keep-going" in runner.stderr


def test_unknown_requirement_fails_with_pips_reason(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "requirements.txt").write_text("no-such-package-xq7 ==1.0\n")
    runner = run_runner([svc], env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple",
                                    "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"})
    assert runner.proc.returncode == 4
    line = runner.error_line()
    assert line.startswith("error: requirements.txt failed: pip install -r requirements.txt "
                           "exited 1; last output: ")
    assert "No matching distribution found for no-such-package-xq7==1.0" in line


def test_requirements_only_installs_and_exits(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text("touch installed\n")
    runner = run_runner([svc, "--requirements-only"])
    assert runner.proc.returncode == 0
    assert (svc / "installed").exists()
    assert "service started" not in runner.stderr


def test_code_only_skips_install(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", reply="no install")
    (svc / "setup.sh").write_text("touch installed\nexit 1\n")
    reply, _ = serve_once([svc, "--code-only"])
    assert reply == "no install"
    assert not (svc / "installed").exists()


def test_service_gets_port_and_unbuffered(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc",
                        reply_expr="os.environ['PORT'] + ' ' + os.environ['PYTHONUNBUFFERED']")
    reply, runner = serve_once([svc], env={"PYTHONUNBUFFERED": ""})
    assert reply == f"{runner.port} 1"


def test_port_flag_wins_over_env(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc")
    port = free_port()
    reply, _ = serve_once([svc, "--port", str(port)], env={"PORT": "1"}, port=port)
    assert reply == "ok"


def test_no_traceback_for_python_used(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "requirements.txt").write_text("")
    runner = run_runner([svc, "--requirements-only"], env={"RUNNER_PYTHON": sys.executable})
    assert runner.proc.returncode == 0
    assert "Traceback" not in runner.stderr


def test_tokens_printed_by_an_install_step_are_redacted(tmp_path: Path) -> None:
    from helpers import TEST_SECRETS

    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text('echo "lab $LAB_API_TOKEN git $GIT_TOKEN"\nexit 1\n')
    env = {"LAB_API_TOKEN": TEST_SECRETS[2], "GIT_TOKEN": TEST_SECRETS[0]}
    runner = run_runner([svc], env=env)  # finish() fails the test on any leak
    assert runner.proc.returncode == 4
    assert "lab *** git ***" in runner.error_line()


def test_a_secret_split_across_two_writes_is_still_redacted(tmp_path: Path) -> None:
    from helpers import TEST_SECRETS

    secret = TEST_SECRETS[0]
    svc = write_service(tmp_path / "svc")
    # The pause makes the runner read the two halves separately.
    (svc / "setup.sh").write_text(
        f"printf 'token: {secret[:6]}'\nsleep 0.3\nprintf '{secret[6:]} done\\n'\n"
    )
    runner = run_runner([svc, "--requirements-only"], env={"GIT_TOKEN": secret})
    assert runner.proc.returncode == 0
    assert "token: *** done" in runner.stderr
