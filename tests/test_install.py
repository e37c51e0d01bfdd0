"""Install steps: order, failures, --keep-going, --requirements-only, --code-only."""

import sys
from pathlib import Path

from helpers import RunnerProcess, make_wheel, run_runner, write_service


def serve_and_stop(runner: RunnerProcess) -> tuple[int, bytes]:
    """The first HTTP answer of a service, then a clean stop."""
    try:
        return runner.wait_http()
    finally:
        runner.signal()
        assert runner.finish() == 0


def test_setup_sh_then_requirements_in_order(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", body="import localdep",
                        reply="served")
    wheel = make_wheel(tmp_path / "wheels", "localdep")
    (svc / "setup.sh").write_text('echo "setup saw python $(command -v python)" > order.log\n')
    (svc / "requirements.txt").write_text(f"{wheel}\n")
    target = tmp_path / "site"
    runner = RunnerProcess([svc], env={"PIP_TARGET": str(target), "PYTHONPATH": str(target)})
    assert serve_and_stop(runner) == (200, b"served")
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
    svc = write_service(tmp_path / "svc", body="import sys; PY = sys.executable")
    main = svc / "__main__.py"
    main.write_text(main.read_text().replace("REPLY = 'ok'", "REPLY = PY"))
    venv = tmp_path / "venv"
    import venv as venv_mod

    venv_mod.create(venv, with_pip=False)
    runner = RunnerProcess([svc], env={"RUNNER_PYTHON": str(venv / "bin" / "python")})
    assert serve_and_stop(runner) == (200, str(venv / "bin" / "python").encode())


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
    runner = RunnerProcess([svc, "--keep-going"])
    assert serve_and_stop(runner) == (200, b"still up")
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
    runner = RunnerProcess([svc, "--code-only"])
    assert serve_and_stop(runner) == (200, b"no install")
    assert not (svc / "installed").exists()


def test_service_gets_port_and_unbuffered(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", body="REPLY_ENV = os.environ['PORT'] + ' ' + "
                        "os.environ['PYTHONUNBUFFERED']")
    main = svc / "__main__.py"
    main.write_text(main.read_text().replace("REPLY = 'ok'", "REPLY = REPLY_ENV"))
    runner = RunnerProcess([svc], env={"PYTHONUNBUFFERED": ""})
    assert serve_and_stop(runner) == (200, f"{runner.port} 1".encode())


def test_port_flag_wins_over_env(tmp_path: Path) -> None:
    from helpers import free_port

    svc = write_service(tmp_path / "svc")
    port = free_port()
    runner = RunnerProcess([svc, "--port", str(port)], env={"PORT": "1"})
    runner.port = port
    assert serve_and_stop(runner) == (200, b"ok")


def test_no_traceback_for_python_used(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "requirements.txt").write_text("")
    runner = run_runner([svc, "--requirements-only"], env={"RUNNER_PYTHON": sys.executable})
    assert runner.proc.returncode == 0
    assert "Traceback" not in runner.stderr
