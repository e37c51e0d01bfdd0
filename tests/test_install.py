"""Install steps: order, failures, --keep-going, --requirements-only, --code-only."""

import sys
from pathlib import Path

from helpers import (
    RunnerProcess,
    build_wheel,
    free_port,
    run_runner,
    serve_once,
    wait_for,
    write_service,
)


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


def test_a_setup_sh_with_windows_line_endings_says_so(tmp_path: Path) -> None:
    """bash reads the \\r of CRLF as part of each command (`$'false\\r': command not found`),
    which few users read as "line endings"."""
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_bytes(b"echo fetching\r\nfalse\r\n")
    runner = run_runner([svc, "--requirements-only"])
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        f"error: setup.sh failed: bash setup.sh exited 127; last output: fetching | "
        f"{svc / 'setup.sh'}: line 2: $'false\\r': command not found; setup.sh has Windows "
        "line endings (CRLF), which bash reads as part of each command: save it with LF "
        "endings (dos2unix setup.sh) (fix setup.sh, or pass --keep-going to start the service "
        "anyway)")


def test_a_redrawn_progress_line_is_quoted_as_last_drawn(tmp_path: Path) -> None:
    """A tool's progress redrawn with \\r (git's `Receiving objects: 50%\\r...100%`) is
    quoted as a terminal last showed it, not every state it went through."""
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text(
        "printf 'Receiving: 10%%\\rReceiving: 55%%\\rReceiving: 100%%, done.\\n'\n"
        "echo 'fatal: out of luck'\nexit 3\n")
    runner = run_runner([svc, "--requirements-only"])
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        "error: setup.sh failed: bash setup.sh exited 3; last output: Receiving: 100%, done. | "
        "fatal: out of luck (fix setup.sh, or pass --keep-going to start the service anyway)")


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
    """The service is told the flag's port (not the environment's) and listens there."""
    svc = write_service(tmp_path / "svc", reply_expr="os.environ['PORT']")
    port, env_port = free_port(), free_port()
    reply, _ = serve_once([svc, "--port", str(port)], env={"PORT": str(env_port)}, port=port)
    assert reply == str(port)  # and it answered on `port`: serve_once asked there


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


SKIPPED = "unchanged since the last install: skipped"


def test_a_change_to_an_included_requirements_file_reinstalls(tmp_path: Path) -> None:
    """`-r`/`-c` files are part of what the stamp hashes, recursively."""
    svc = write_service(tmp_path / "svc")
    first = build_wheel(tmp_path / "wheels", "firstdep")
    second = build_wheel(tmp_path / "wheels", "seconddep")
    (svc / "reqs").mkdir()
    (svc / "requirements.txt").write_text("--no-index\n-r reqs/base.txt\n")
    (svc / "reqs" / "base.txt").write_text("--constraint=pins.txt\n")
    (svc / "reqs" / "pins.txt").write_text("")
    (svc / "reqs" / "more.txt").write_text(f"{first}\n")
    target = tmp_path / "site"
    args = [svc, "--requirements-only", "--cache-dir", tmp_path / "cache"]
    env = {"PIP_TARGET": str(target)}
    (svc / "reqs" / "base.txt").write_text("--constraint=pins.txt\n-rmore.txt\n")
    assert run_runner(args, env=env).proc.returncode == 0
    assert (target / "firstdep.py").is_file()
    assert f"requirements.txt {SKIPPED}" in run_runner(args, env=env).stderr

    (svc / "reqs" / "more.txt").write_text(f"{first}\n{second}\n")  # two levels down
    changed = run_runner(args, env=env)
    assert changed.proc.returncode == 0, changed.stderr
    assert "installing from requirements.txt" in changed.stderr
    assert (target / "seconddep.py").is_file()

    (svc / "reqs" / "pins.txt").write_text("# a constraint changed\n")
    assert "installing from requirements.txt" in run_runner(args, env=env).stderr


def test_an_include_on_the_first_line_after_a_bom_is_hashed(tmp_path: Path) -> None:
    """Windows editors start a file with a BOM (and end lines with CRLF); pip reads past
    both, so the runner must too, or a change to the included file is never installed."""
    svc = write_service(tmp_path / "svc")
    (svc / "requirements.txt").write_bytes(b"\xef\xbb\xbf-r base.txt\r\n")
    (svc / "base.txt").write_text("")
    args = [svc, "--requirements-only", "--cache-dir", tmp_path / "cache"]
    assert run_runner(args).proc.returncode == 0
    (svc / "base.txt").write_text("# a pin changed\n")
    again = run_runner(args)
    assert again.proc.returncode == 0, again.stderr
    assert "installing from requirements.txt" in again.stderr


def test_watch_reinstalls_when_an_included_file_changes(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", body="import importlib.util as u",
                        reply_expr="str(u.find_spec('laterdep') is not None)")
    target = tmp_path / "site"
    wheel = build_wheel(tmp_path / "wheels", "laterdep")
    (svc / "requirements.txt").write_text("-r base.txt\n")
    (svc / "base.txt").write_text("")
    env = {"PIP_TARGET": str(target), "PYTHONPATH": str(target)}
    runner = RunnerProcess([svc, "--watch", "--cache-dir", tmp_path / "cache"], env=env)
    try:
        first = runner.wait_http()
        (svc / "base.txt").write_text(f"{wheel}\n")
        wait_for(lambda: runner.get(timeout=1) == (200, b"True"), 60, "the new dependency")
    finally:
        runner.signal()
        status = runner.finish()
        runner.kill()
    assert first == (200, b"False")
    assert status == 0
    assert runner.stderr.count("installing from requirements.txt") == 2


def test_an_unreadable_requirements_file_on_a_later_run_is_an_error_line(tmp_path: Path) -> None:
    """The tests run as root, whom no mode bits stop: a link to /proc/self/mem, a regular
    file whose read fails (EIO), stands in for a file the runner's user may not read."""
    svc = write_service(tmp_path / "svc")
    (svc / "requirements.txt").write_text("-r base.txt\n")
    (svc / "base.txt").write_text("")
    args = [svc, "--requirements-only", "--cache-dir", tmp_path / "cache"]
    assert run_runner(args).proc.returncode == 0
    (svc / "base.txt").unlink()
    (svc / "base.txt").symlink_to("/proc/self/mem")
    runner = run_runner(args)
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        f"error: base.txt cannot be read (Input/output error): make {svc / 'base.txt'} "
        "readable by the runner's user")


def test_a_large_requirements_file_is_hashed_in_chunks(tmp_path: Path) -> None:
    """A 64 MB file costs the stamp a few MB of memory, not its size."""
    import tracemalloc

    from runner.install.requirements import RequirementsStep
    from runner.install.stamps import inputs_hash

    big = tmp_path / "requirements.txt"
    with big.open("w") as f:
        for _ in range(64):
            f.write("# a comment line of a generated requirements file\n" * 20_000)
    tracemalloc.start()
    try:
        inputs_hash(RequirementsStep().inputs(big))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_a_temporary_code_root_leaves_no_stamp(tmp_path: Path, tmp: Path) -> None:
    """Code fetched into the run's scratch folder (here: git without --cache-dir) is gone
    after the run: a stamp for its path could never be used again."""
    import subprocess

    repo = write_service(tmp_path / "repo")
    (repo / "requirements.txt").write_text("")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", repo], check=True)
    subprocess.run([*git, "-C", repo, "add", "."], check=True)
    subprocess.run([*git, "-C", repo, "commit", "-qm", "c"], check=True)
    xdg = tmp_path / "xdg"
    env = {"XDG_CACHE_HOME": str(xdg), "TMPDIR": str(tmp), "RUNNER_CACHE_DIR": ""}
    runner = run_runner([f"git+{repo.as_uri()}", "--requirements-only"], env=env)
    assert runner.proc.returncode == 0, runner.stderr
    assert "installing from requirements.txt" in runner.stderr
    assert not list(xdg.rglob("stamps/*")), list(xdg.rglob("*"))


def test_a_pip_failure_quotes_pips_error_line(tmp_path: Path) -> None:
    """pip's cause (its `ERROR:` line), not the lines it prints after it."""
    svc = write_service(tmp_path / "svc")
    wheel = build_wheel(tmp_path / "wheels", "localdep")
    (svc / "requirements.txt").write_text(f"localdep @ {wheel.as_uri()} --hash=sha256:{'0' * 64}\n")
    runner = run_runner([svc, "--requirements-only"])
    assert runner.proc.returncode == 4
    assert runner.error_line().startswith(
        "error: requirements.txt failed: pip install -r requirements.txt exited 1; last output: "
        "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.")


def test_a_failed_pip_subprocess_is_quoted_without_pips_boilerplate(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "requirements.txt").write_text("pkg @ git+http://127.0.0.1:9/r.git\n")
    runner = run_runner([svc, "--requirements-only"], env={"PIP_NO_INDEX": "1"})
    assert runner.proc.returncode == 4
    # pip's own output has lines that start with `error:` too; the runner's is the last.
    line = runner.stderr.splitlines()[-1]
    assert line.startswith("error: requirements.txt failed: pip install -r requirements.txt "
                           "exited 1; last output: "), line
    assert "git clone --filter=blob:none --quiet http://127.0.0.1:9/r.git" in line, line
    assert "See above for output" not in line and "originates from a subprocess" not in line
