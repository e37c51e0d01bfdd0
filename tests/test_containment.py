"""What the runner leaves behind when it ends, however it ends: no process, no temp file.

Processes are checked by PID *and* start time (/proc/PID/stat field 22), so a
PID reused by an unrelated process is not mistaken for a survivor. Each test
gives the runner its own TMPDIR and checks it is empty afterwards.
"""

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import RunnerProcess, read_pid, run_runner, running, wait_for, write_service

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Tester", "GIT_AUTHOR_EMAIL": "tester@example.com",
    "GIT_COMMITTER_NAME": "Tester", "GIT_COMMITTER_EMAIL": "tester@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(["git", *map(os.fspath, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **GIT_ENV}, check=True)
    return done.stdout.strip()


def git_repo(folder: Path, **service: str) -> Path:
    """A one-commit git repository holding a service."""
    write_service(folder, **service)
    git("init", "-q", "-b", "main", cwd=folder)
    git("add", ".", cwd=folder)
    git("commit", "-q", "-m", "service", cwd=folder)
    return folder


#: Shell that starts `sleep SECONDS` as a daemon (setsid: its own session) that writes its
#: pid and start time, then waits until it has.
DAEMON = ("setsid sh -c 'echo $$ $(cut -d\" \" -f22 /proc/$$/stat) > {name}.pid; "
          "exec sleep {seconds}' &\nwhile [ ! -s {name}.pid ]; do sleep 0.01; done\n")
#: A service that starts a daemon and a plain child before it serves.
SPAWNING = """\
import subprocess
subprocess.Popen(["setsid", "-f", "sh", "-c", "echo $$ > daemon.pid; exec sleep 2001"])
subprocess.Popen(["sh", "-c", "echo $$ > child.pid; exec sleep 2002"])
"""


@pytest.mark.parametrize(("signum", "within"), [
    (signal.SIGTERM, 0),  # a normal stop: the runner waits for them, they are gone at once
    (signal.SIGKILL, 5),  # the runner cannot wait: its keeper ends them
], ids=["sigterm", "sigkill"])
def test_every_descendant_of_the_service_ends_with_the_runner(
    tmp_path: Path, tmp: Path, signum: int, within: float
) -> None:
    svc = write_service(tmp_path / "svc", SPAWNING)
    runner = RunnerProcess([svc], env={"TMPDIR": str(tmp)})
    try:
        runner.wait_http()
        daemon, child = read_pid(svc / "daemon.pid"), read_pid(svc / "child.pid")
        runner.signal(signum)
        code = runner.finish()
        wait_for(lambda: not running(*daemon) and not running(*child), within,
                 "the service's daemon and child to end")
    finally:
        runner.kill()
    assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL), runner.stderr
    assert list(tmp.iterdir()) == []


def test_a_daemon_started_by_setup_sh_ends_with_the_install(tmp_path: Path, tmp: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text(DAEMON.format(name="daemon", seconds=1001))
    runner = run_runner([svc, "--requirements-only"], env={"TMPDIR": str(tmp)})
    daemon = read_pid(svc / "daemon.pid", timeout=0)
    assert runner.proc.returncode == 0, runner.stderr
    assert not running(*daemon), "setup.sh's daemon outlived the install"
    assert list(tmp.iterdir()) == []


def test_a_killed_runner_during_setup_sh_leaves_no_process_and_no_temp_folder(
    tmp_path: Path, tmp: Path
) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text(
        "echo $$ > setup.pid\n"
        + DAEMON.format(name="daemon", seconds=1002)
        + "sleep 300 &\necho $! > sleep.pid\nwait\n")
    runner = RunnerProcess([svc], env={"TMPDIR": str(tmp)})
    try:
        pids = [read_pid(svc / f"{name}.pid") for name in ("setup", "daemon", "sleep")]
        assert list(tmp.iterdir()), "setup.sh runs with a TMPDIR inside the runner's scratch"
        runner.signal(signal.SIGKILL)
        runner.finish()
        wait_for(lambda: not any(running(*p) for p in pids), 5, "setup.sh and its children to end")
        wait_for(lambda: not list(tmp.iterdir()), 5, "the runner's temp folders to go")
    finally:
        runner.kill()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections are taken by the kernel and never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_clone_killed_mid_fill_leaves_no_partial_entry_after_the_next_start(
    tmp_path: Path, tmp: Path, silent_port: int
) -> None:
    stuck = git_repo(tmp_path / "stuck")
    (stuck / ".gitmodules").write_text(
        f'[submodule "lib"]\n\tpath = lib\n\turl = http://127.0.0.1:{silent_port}/lib.git\n')
    git("update-index", "--add", "--cacheinfo", f"160000,{'ab' * 20},lib", cwd=stuck)
    git("add", ".gitmodules", cwd=stuck)
    git("commit", "-q", "-m", "a submodule nobody serves", cwd=stuck)
    cache = tmp_path / "cache"
    env = {"TMPDIR": str(tmp)}
    runner = RunnerProcess([f"git+{stuck.as_uri()}", "--cache-dir", cache,
                            "--requirements-only"], env=env)
    try:
        runner.wait_log("initialising submodules")  # the checkout is half-way into the cache
        runner.signal(signal.SIGKILL)
        runner.finish()
    finally:
        runner.kill()
    assert list((cache / "vcs").glob(".partial-*")), "the killed fill left no staging folder"

    good = git_repo(tmp_path / "good")
    again = run_runner([f"git+{good.as_uri()}", "--cache-dir", cache, "--requirements-only"],
                       env=env)
    assert again.proc.returncode == 0, again.stderr
    assert sorted(p.name for p in (cache / "vcs").iterdir() if p.name.startswith(".")) == []


def _clients(url: str) -> list[int]:
    """PIDs of git processes fetching `url` (git and the helpers it starts name it)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if entry.isdigit() and b"git" in argv[0] and url.encode() in argv:
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_a_killed_runner_during_a_clone_leaves_no_client_and_no_temp_folder(
    tmp: Path, silent_port: int
) -> None:
    url = f"http://127.0.0.1:{silent_port}/stuck.git"
    runner = RunnerProcess([f"git+{url}", "--network-timeout", "60"], env={"TMPDIR": str(tmp)})
    try:
        wait_for(lambda: _clients(url), 20, "git to start")
        runner.signal(signal.SIGKILL)
        runner.finish()
        wait_for(lambda: not _clients(url), 5, "git and its helpers to end")
        wait_for(lambda: not list(tmp.iterdir()), 5, "the runner's temp folders to go")
    finally:
        runner.kill()


def test_a_run_killed_with_no_child_running_leaves_its_temp_folder_to_the_next_run(
    tmp_path: Path, tmp: Path, silent_port: int
) -> None:
    runner = RunnerProcess([f"http://127.0.0.1:{silent_port}/svc.py", "--network-timeout", "60"],
                           env={"TMPDIR": str(tmp)})
    try:
        wait_for(lambda: list(tmp.glob("runner-run-*/download-*")), 20, "the download to start")
        runner.signal(signal.SIGKILL)  # waiting on the server: no child, no keeper to clean up
        runner.finish()
    finally:
        runner.kill()
    left = list(tmp.iterdir())
    assert left, "nothing was left to clean up"

    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text("true\n")
    again = run_runner([svc, "--requirements-only"], env={"TMPDIR": str(tmp)})
    assert again.proc.returncode == 0, again.stderr
    assert list(tmp.iterdir()) == []
