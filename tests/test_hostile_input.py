"""Hostile and odd input (issue 11): each case gets one `error:` line, or passes through intact.

Every test runs the real runner as a process and judges what a user sees:
the exit code, the exact `error:` line, the bytes on stdout, the runner's
memory (read from /proc), and the time taken (generous deadlines: the
machine is shared, the point is linear against quadratic).
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    TEST_SECRETS,
    RunnerProcess,
    free_port,
    run_runner,
    serve_once,
    wait_for,
    write_service,
)

SECRET = TEST_SECRETS[0]

# -- a traceback or a hang instead of an error: line --------------------------------


def test_a_value_over_the_file_name_limit_is_not_a_path(tmp_path: Path) -> None:
    long_name = "x" * 5000
    runner = run_runner([long_name], cwd=tmp_path)
    assert runner.proc.returncode == 3
    assert runner.error_line().startswith(f"error: {long_name} does not exist locally: ")


def test_a_long_url_fails_with_its_password_hidden(tmp_path: Path) -> None:
    url = f"git+http://user:{SECRET}@127.0.0.1:{free_port()}/{'a' * 5000}.git"
    runner = run_runner([url], cwd=tmp_path)  # `finish` checks that SECRET is nowhere
    assert runner.proc.returncode == 3
    assert runner.error_line().startswith("error: cannot read repository git+http://")


@pytest.mark.parametrize(("spec", "shown"), [
    (f"https://user:{SECRET}@[::1/svc.py", "https://user:***@[::1/svc.py"),
    ("http://[not-an-ip]/svc.py", "http://[not-an-ip]/svc.py"),
    (f"git+https://user:{SECRET}@[::1/repo.git", "git+https://user:***@[::1/repo.git"),
    ("hg+http://[x]y/repo", "hg+http://[x]y/repo"),
])
def test_a_url_with_a_broken_ipv6_host_is_refused_with_its_password_hidden(
    tmp_path: Path, spec: str, shown: str
) -> None:
    runner = run_runner([spec], cwd=tmp_path)
    assert runner.proc.returncode == 3
    assert runner.error_line().startswith(f"error: {shown} is not a valid URL (")
    assert runner.error_line().endswith("): check the address")


def test_a_requirement_url_with_a_broken_ipv6_host_is_left_to_pip(tmp_path: Path) -> None:
    """The runner reads requirement URLs only for their passwords; pip says what is wrong."""
    svc = write_service(tmp_path / "svc")
    (svc / "requirements.txt").write_text(f"pkg @ https://user:{SECRET}@[::1/pkg.whl\n")
    runner = run_runner([svc, "--requirements-only"], cwd=tmp_path)
    assert runner.proc.returncode == 4
    assert runner.error_line().startswith("error: requirements.txt failed: pip install -r "
                                          "requirements.txt exited ")


@pytest.mark.parametrize(("args", "env", "named", "value"), [
    (["--stop-timeout", "inf"], {}, "argument --stop-timeout", "inf"),
    (["--stop-timeout", "nan"], {}, "argument --stop-timeout", "nan"),
    (["--stop-timeout", "-1"], {}, "argument --stop-timeout", "-1"),
    (["--ready-timeout", "inf"], {}, "argument --ready-timeout", "inf"),
    (["--network-timeout", "inf"], {}, "argument --network-timeout", "inf"),
    (["--network-timeout", "nan"], {}, "argument --network-timeout", "nan"),
    ([], {"RUNNER_NETWORK_TIMEOUT": "nan"}, "RUNNER_NETWORK_TIMEOUT", "nan"),
    ([], {"RUNNER_NETWORK_TIMEOUT": "-inf"}, "RUNNER_NETWORK_TIMEOUT", "-inf"),
    (["--stop-timeout", "1e10"], {}, "argument --stop-timeout", "1e10"),  # overflows clocks
    ([], {"RUNNER_NETWORK_TIMEOUT": "1e300"}, "RUNNER_NETWORK_TIMEOUT", "1e300"),
])
def test_durations_must_be_finite_and_not_negative(
    service: Path, args: list[str], env: dict[str, str], named: str, value: str
) -> None:
    runner = run_runner([service, *args], env=env)
    assert runner.proc.returncode == 2
    assert runner.error_line() == (
        f"error: {named}: expected a finite number of seconds, 0 to 1000000000, got {value!r} "
        "(see `execute-code --help`)"
    )


@pytest.mark.parametrize("kind", ["missing", "folder", "not executable", "too long"])
def test_a_bad_runner_python_is_a_usage_error(service: Path, tmp_path: Path, kind: str) -> None:
    python = tmp_path / "python"
    if kind == "too long":
        python = tmp_path / ("p" * 5000)
    elif kind == "folder":
        python.mkdir()
    elif kind == "not executable":
        python.write_text("#!/bin/sh\n")
    runner = run_runner([service], env={"RUNNER_PYTHON": str(python)})
    assert runner.proc.returncode == 2
    what = {"missing": "does not exist", "folder": "is a folder",
            "not executable": "is not executable", "too long": "does not exist"}[kind]
    assert runner.error_line() == (
        f"error: RUNNER_PYTHON {python} {what}: point it at the service's Python "
        "(e.g. /opt/venv/bin/python), or unset it to use the runner's own"
    )


def test_a_workspace_home_over_the_name_limit_is_just_not_a_folder(tmp_path: Path) -> None:
    entrypoint = ROOT / "resources" / "docker-entrypoint.py"
    env = {"EXECUTE_CODE": str(tmp_path / "nope"), "WORKSPACE_HOME": "w" * 5000}
    runner = run_runner([], argv0=[sys.executable, str(entrypoint)], env=env)
    assert runner.proc.returncode == 3
    assert runner.error_line().startswith(f"error: {tmp_path / 'nope'} does not exist locally")


def _service_with_setup(folder: Path) -> Path:
    """A service whose setup.sh leaves a mark: the install work happened."""
    write_service(folder)
    (folder / "setup.sh").write_text(f"touch {folder / 'installed'}\n")
    return folder


@pytest.mark.parametrize("setting", ["--cache-dir", "RUNNER_CACHE_DIR", "XDG_CACHE_HOME"])
def test_a_cache_folder_that_is_a_file_is_refused_before_the_work(
    tmp_path: Path, setting: str
) -> None:
    code = _service_with_setup(tmp_path / "svc")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    args: list[str | Path] = [code]
    env = {"RUNNER_CACHE_DIR": ""}
    if setting == "--cache-dir":
        args += ["--cache-dir", a_file]
    else:
        env[setting] = str(a_file)
    runner = run_runner(args, env=env)
    assert runner.proc.returncode == 2
    folder, named = {
        "--cache-dir": (a_file, "--cache-dir (or RUNNER_CACHE_DIR)"),
        "RUNNER_CACHE_DIR": (a_file, "--cache-dir (or RUNNER_CACHE_DIR)"),
        "XDG_CACHE_HOME": (a_file / "workspace-runner", "XDG_CACHE_HOME"),
    }[setting]
    problem = "is a file, not a folder" if folder == a_file else \
        "cannot be created (Not a directory)"
    assert runner.error_line() == (
        f"error: the runner's cache folder {folder} {problem}: point {named} at a writable folder"
    )
    assert not (code / "installed").exists()


def test_a_read_only_home_is_refused_before_the_work_but_fine_for_code_only(
    tmp_path: Path
) -> None:
    code = _service_with_setup(tmp_path / "svc")
    read_only = {"HOME": "/proc", "XDG_CACHE_HOME": "", "RUNNER_CACHE_DIR": ""}
    runner = run_runner([code], env=read_only)
    assert runner.proc.returncode == 2
    assert runner.error_line().startswith(
        "error: the runner's cache folder /proc/.cache/workspace-runner cannot be created (")
    assert runner.error_line().endswith(
        "): point HOME (or set RUNNER_CACHE_DIR) at a writable folder")
    assert not (code / "installed").exists()
    reply, _ = serve_once([code, "--code-only"], env=read_only)
    assert reply == "ok"


def _slow_reader(fd: int, got: list[bytes]) -> None:
    """Read a pipe to its end, slowly: 64 KB every 20 ms."""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            got.append(chunk)
            time.sleep(0.02)


def test_a_non_blocking_stdout_with_a_slow_reader_gets_every_byte(tmp_path: Path) -> None:
    size = 2 * 1024 * 1024
    code = tmp_path / "svc"
    code.mkdir()
    (code / "__main__.py").write_text(
        f"import sys\nsys.stdout.buffer.write(b'x' * {size})\nsys.stdout.flush()\n")
    read, write = os.pipe()
    os.set_blocking(write, False)  # as a parent (e.g. node) may leave it
    got: list[bytes] = []
    reader = threading.Thread(target=_slow_reader, args=(read, got))
    reader.start()
    runner = subprocess.Popen(
        [sys.executable, "-m", "runner", code, "--code-only"], cwd=ROOT, stdout=write,
        stderr=subprocess.PIPE, env={**os.environ, "PORT": str(free_port())})
    os.close(write)
    try:
        _, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
        runner.wait()
        reader.join(30)
    assert runner.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert len(b"".join(got)) == size


# -- redaction and long lines: linear, bounded --------------------------------------


def test_a_100_kb_line_through_setup_sh_is_redacted_quickly(tmp_path: Path) -> None:
    code = write_service(tmp_path / "svc")
    letters = "a" * 100_000
    (code / "setup.sh").write_text(f"echo {letters}\necho see http://user:{SECRET}@host/x\n")
    started = time.monotonic()
    runner = run_runner([code, "--requirements-only"], timeout=60)
    took = time.monotonic() - started
    assert runner.proc.returncode == 0, runner.stderr
    assert letters in runner.stderr
    assert "see http://user:***@host/x" in runner.stderr
    assert took < 5, f"{took:.1f} s for a 100 KB line (quadratic redaction takes ~15 s)"


@pytest.mark.parametrize("at", [65530, 65536 - 16384 - 5, 131072 - 7])
def test_a_secret_across_the_cut_of_a_long_tool_line_is_still_hidden(
    tmp_path: Path, at: int
) -> None:
    code = write_service(tmp_path / "svc")
    token = TEST_SECRETS[2]
    (code / "setup.sh").write_text(
        "python3 -c \"import sys; sys.stdout.write("
        f"'b' * {at} + '{token}' + 'c' * 200000 + chr(10))\"\n")
    runner = run_runner([code, "--requirements-only"], env={"LAB_API_TOKEN": token})
    assert runner.proc.returncode == 0, runner.stderr  # `finish` checked the token is hidden
    assert "b" * at + "***" + "c" * 200000 in runner.stderr


def _write_then_exit(folder: Path, data_expr: str, status: int, stream: str = "stdout") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__main__.py").write_text(
        f"import sys\nsys.{stream}.buffer.write({data_expr})\nsys.{stream}.flush()\n"
        f"sys.exit({status})\n")
    return folder


def test_an_8_mb_last_line_is_quoted_by_its_end_quickly(tmp_path: Path) -> None:
    code = _write_then_exit(tmp_path / "svc", "b'a' * 8_000_000 + b'THE-END'", 1)
    started = time.monotonic()
    runner = run_runner([code, "--restart", "never"], timeout=60)
    took = time.monotonic() - started
    assert runner.proc.returncode == 5
    line = runner.error_line()
    assert line.startswith("error: the service exited with status 1 after ")
    assert line.endswith("aaaTHE-END (fix the error above and start again)") or \
        line.endswith("aaaTHE-END")
    assert len(line) < 4000
    assert took < 15, f"{took:.1f} s"


def _vm_hwm_kb(pid: int) -> int:
    """The process's peak resident memory so far, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_80_mb_without_a_newline_passes_through_in_bounded_memory(tmp_path: Path) -> None:
    size = 80 * 1024 * 1024
    go = tmp_path / "go"
    code = tmp_path / "svc"
    code.mkdir()
    (code / "__main__.py").write_text(
        "import os, sys, time\n"
        "chunk = b'a' * 1048576\n"
        f"for _ in range({size // 1048576}):\n"
        "    sys.stdout.buffer.write(chunk)\n"
        "sys.stdout.flush()\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.02)\n")
    started = time.monotonic()
    runner = RunnerProcess([code, "--code-only"])
    try:
        wait_for(lambda: sum(map(len, runner._out)) >= size, 60, "80 MB on stdout")
        took = time.monotonic() - started
        peak_kb = _vm_hwm_kb(runner.proc.pid)
        go.touch()
        assert runner.finish() == 0, runner.stderr
    finally:
        runner.kill()
    assert sum(map(len, runner._out)) == size
    assert peak_kb < 80 * 1024, f"runner peak RSS {peak_kb} kB for 80 MB without a newline"
    assert took < 30, f"{took:.1f} s to pass 80 MB on"


# -- output marking -------------------------------------------------------------------


FORGED = "error: FORGED"
FAKE_READY = "[runner 00:00:00.000] service ready on :1 after 0.01 s"


def test_a_newline_in_execute_code_cannot_forge_runner_lines(tmp_path: Path) -> None:
    runner = run_runner([], env={"EXECUTE_CODE": f"{tmp_path}/nope\n{FORGED}\n{FAKE_READY}"})
    assert runner.proc.returncode == 3
    line = runner.error_line()  # exactly one line starts with `error: `
    assert line.startswith(f"error: {tmp_path}/nope\\nerror: FORGED\\n[runner ")
    assert FAKE_READY not in runner.stderr.splitlines()


def test_a_newline_in_a_folder_name_cannot_forge_runner_lines(tmp_path: Path) -> None:
    code = write_service(tmp_path / f"svc\n{FORGED}\n{FAKE_READY}")
    _, runner = serve_once([code])
    lines = runner.stderr.splitlines()
    assert not [line for line in lines if line.startswith("error:")], runner.stderr
    assert FAKE_READY not in lines
    assert f"svc\\n{FORGED}\\n" in runner.stderr


def test_unfinished_service_output_on_stderr_does_not_glue_the_error_line(
    tmp_path: Path
) -> None:
    code = _write_then_exit(tmp_path / "svc", "b'partial'", 1, stream="stderr")
    runner = run_runner([code, "--restart", "never"])
    assert runner.proc.returncode == 5
    assert runner.error_line().startswith("error: the service exited with status 1")
    assert "\npartial\n" in "\n" + runner.stderr


def test_unfinished_service_output_on_a_shared_log_does_not_glue_the_error_line(
    tmp_path: Path
) -> None:
    code = _write_then_exit(tmp_path / "svc", "b'partial'", 1)
    merged = subprocess.run(
        [sys.executable, "-m", "runner", code, "--restart", "never"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
        env={**os.environ, "PORT": str(free_port())})
    assert merged.returncode == 5
    lines = merged.stdout.decode().splitlines()
    assert "partial" in lines
    assert [line for line in lines if line.startswith("error: the service exited")]


# -- decide and document: links out of fetched code, install files of a shared folder ---

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def _git_repo_with_link(repo: Path, name: str, target: Path) -> str:
    """A git repository (file://) with a service and `name` a link to `target`."""
    write_service(repo)
    link = repo / name
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    for argv in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "links"]):
        subprocess.run(["git", *argv], cwd=repo, env={**os.environ, **GIT_ENV}, check=True,
                       capture_output=True)
    return f"git+{repo.as_uri()}"


@pytest.mark.parametrize("name", ["__main__.py", "requirements.txt"])
def test_a_checkout_linking_out_of_its_root_is_refused(tmp_path: Path, name: str) -> None:
    outside = write_service(tmp_path / "outside") / "__main__.py"
    url = _git_repo_with_link(tmp_path / "repo", name, outside)
    runner = run_runner([url], env={"TMPDIR": str(tmp_path)})
    assert runner.proc.returncode == 3
    assert runner.error_line() == (
        f"error: {name} in {url} is a link to {outside}, outside the code: the runner does "
        "not follow links out of fetched code; commit the file itself"
    )


def test_a_local_folder_may_link_where_its_owner_likes(tmp_path: Path) -> None:
    outside = write_service(tmp_path / "outside", reply="linked") / "__main__.py"
    code = tmp_path / "svc"
    code.mkdir()
    (code / "__main__.py").symlink_to(outside)
    reply, _ = serve_once([code])
    assert reply == "linked"


def test_a_single_script_logs_the_install_files_of_its_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    write_service(shared)
    script = shared / "__main__.py"
    (shared / "setup.sh").write_text("echo from the shared folder\n")
    (shared / "requirements.txt").write_text("\n")
    runner = run_runner([script, "--requirements-only"], env={"RUNNER_CACHE_DIR": str(tmp_path)})
    assert runner.proc.returncode == 0, runner.stderr
    assert f"] install files in {shared}: setup.sh, requirements.txt\n" in runner.stderr
