"""The command line and code resolution of local paths: what a user typing it sees."""

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, run_runner, serve_once, write_service


def test_no_code_is_a_usage_error() -> None:
    runner = run_runner([])
    assert runner.proc.returncode == 2
    assert runner.error_line().startswith("error: nothing to run: set EXECUTE_CODE")


def test_bad_flag_value_is_a_usage_error(service: Path) -> None:
    runner = run_runner([service, "--restart", "sometimes"])
    assert runner.proc.returncode == 2
    assert "argument --restart: invalid choice: 'sometimes'" in runner.error_line()


@pytest.mark.parametrize("first, second", [
    ("--requirements-only", "--watch"), ("--requirements-only", "--check"), ("--watch", "--check"),
])
def test_flags_that_cannot_both_happen_are_a_usage_error(
    service: Path, first: str, second: str
) -> None:
    """Each asks for a different end of the run; one of them used to be ignored silently."""
    runner = run_runner([service, first, second], timeout=10)
    assert runner.proc.returncode == 2
    assert runner.error_line() == (
        f"error: argument {second}: not allowed with argument {first} "
        "(see `execute-code --help`)")


def test_an_empty_cache_dir_is_a_usage_error(service: Path, tmp_path: Path) -> None:
    """`--cache-dir "$UNSET"` made the working folder the cache, filling it with state/."""
    runner = run_runner([service, "--cache-dir", ""], cwd=tmp_path, timeout=10)
    assert runner.proc.returncode == 2
    assert runner.error_line() == (
        "error: argument --cache-dir: expected a folder, got '' (see `execute-code --help`)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc"]


def test_bad_port_from_env_is_a_usage_error(service: Path) -> None:
    runner = run_runner([service], env={"PORT": "eighty"})
    assert runner.proc.returncode == 2
    assert runner.error_line() == (
        "error: PORT: port must be a number, got 'eighty' (see `execute-code --help`)"
    )


def test_missing_path(tmp_path: Path) -> None:
    runner = run_runner([tmp_path / "nope"])
    assert runner.proc.returncode == 3
    assert runner.error_line().startswith(f"error: {tmp_path / 'nope'} does not exist")


def test_folder_without_main(tmp_path: Path) -> None:
    runner = run_runner([tmp_path])
    assert runner.proc.returncode == 3
    assert runner.error_line() == (
        f"error: no __main__.py in {tmp_path}: add a __main__.py that starts your "
        "service, or point EXECUTE_CODE at a single .py script"
    )


def test_file_that_is_not_python(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("echo hi\n")
    runner = run_runner([tmp_path / "run.sh"])
    assert runner.proc.returncode == 3
    assert "is not a Python script" in runner.error_line()


def test_argument_wins_over_env(tmp_path: Path) -> None:
    good = write_service(tmp_path / "good", reply="from-argument")
    reply, _ = serve_once([good], env={"EXECUTE_CODE": str(tmp_path / "missing")})
    assert reply == "from-argument"


def test_code_from_env(service: Path) -> None:
    reply, _ = serve_once([], env={"EXECUTE_CODE": str(service)})
    assert reply == "ok"


def test_single_script_runs_in_its_folder(tmp_path: Path) -> None:
    folder = write_service(tmp_path / "scripts", reply_expr="open('reply.txt').read()")
    script = folder / "serve.py"
    (folder / "__main__.py").rename(script)
    (folder / "reply.txt").write_text("from-cwd")
    reply, _ = serve_once([script])
    assert reply == "from-cwd"


@pytest.mark.parametrize("name", ["my service", "$(touch PWNED)", "it's \"quoted\""])
def test_odd_paths_are_just_paths(tmp_path: Path, name: str) -> None:
    folder = write_service(tmp_path / name, reply=name)
    (folder / "setup.sh").write_text("echo setup ran in \"$PWD\" > setup.out\n")
    reply, _ = serve_once([folder], cwd=tmp_path)
    assert reply == name
    assert (folder / "setup.out").read_text() == f"setup ran in {folder}\n"
    assert not (tmp_path / "PWNED").exists() and not (ROOT / "PWNED").exists()


def test_service_args_after_double_dash(tmp_path: Path) -> None:
    folder = write_service(tmp_path / "svc", reply_expr="' '.join(sys.argv[1:])")
    reply, _ = serve_once([folder, "--", "--model", "big one"])
    assert reply == "--model big one"


def test_help_does_not_import_heavy_libraries() -> None:
    """`--help` really runs (its text is printed), and pulls in no third-party library."""
    code = (
        "import sys, runner.cli\n"
        "try:\n    runner.cli.main(['--help'])\nexcept SystemExit as exc:\n    status = exc.code\n"
        "heavy = {'git', 'requests', 'rattler', 'yaml', 'watchdog', 'flask'} & set(sys.modules)\n"
        "print('heavy:', sorted(heavy), 'status:', status)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "usage: execute-code" in out.stdout, out.stdout + out.stderr
    assert out.stdout.strip().endswith("heavy: [] status: 0"), out.stdout + out.stderr


def test_version_prints_the_runners_version_and_exits_0() -> None:
    runner = run_runner(["--version"], timeout=10)
    assert (runner.proc.returncode, runner.stdout, runner.stderr) == (0, "execute-code 0.1.0\n", "")


def test_execute_code_script_from_the_source_tree(service: Path) -> None:
    script = ROOT / "resources" / "scripts" / "execute_code.py"
    reply, _ = serve_once([service], argv0=[sys.executable, str(script)], cwd=service.parent)
    assert reply == "ok"


def test_entrypoint_runs_relative_code_from_workspace_home(tmp_path: Path) -> None:
    write_service(tmp_path / "home" / "svc", reply="from-home")
    entrypoint = ROOT / "resources" / "docker-entrypoint.py"
    env = {"EXECUTE_CODE": "svc", "WORKSPACE_HOME": str(tmp_path / "home")}
    reply, _ = serve_once(["--code-only"], argv0=[sys.executable, str(entrypoint)], env=env)
    assert reply == "from-home"
