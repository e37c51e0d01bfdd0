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
from helpers import RunnerProcess, run_runner, write_service

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
