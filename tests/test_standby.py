"""--standby: a spare interpreter, its third-party imports done, becomes the service at a crash.

The "third-party" modules here are real modules on PYTHONPATH outside the code root,
each recording the process that imported it, so a test can tell the spare's imports
from a cold start's.
"""

import os
import re
import signal
import time
from pathlib import Path

import pytest
from helpers import RunnerProcess, pid_alive, run_runner, wait_for, write_service
from test_supervisor import SPAWNS_A_WORKER, script

from runner.supervisor.readiness import group_listens

#: What a service can see of how it was started; a spare must show a cold start's values.
SEEN = ("' '.join(map(str, [__name__, sys.argv, os.getcwd(), os.environ['PORT'], __file__, "
        "__spec__, __package__, __loader__.name, sys.path[0], signal.getsignal(signal.SIGINT), "
        "signal.getsignal(signal.SIGPIPE), signal.getsignal(signal.SIGTERM), "
        "sorted(os.listdir('/proc/self/fd')), threading.active_count(), local.TEXT]))")

RECORDS_ITS_IMPORT = ("import os, time\n"
                      "with open(os.environ['IMPORTS_LOG'], 'a') as log:\n"
                      "    log.write(f'{os.getpid()} {time.time()}\\n')\n")


def imports(log: Path) -> list[tuple[int, float]]:
    """(pid, time) of every import of the recording module so far."""
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    return [(int(pid), float(at)) for pid, at in (line.split() for line in lines)]


def started_pids(stderr: str) -> list[int]:
    return [int(p) for p in re.findall(r"service started \(pid (\d+)\)", stderr)]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder of third-party modules, outside the code root."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "heavydep.py").write_text(RECORDS_ITS_IMPORT)
    return folder


def standby_service(tmp_path: Path, site: Path, *flags: str) -> tuple[Path, RunnerProcess]:
    svc = write_service(tmp_path / "svc", body="import heavydep, local, threading",
                        reply_expr=SEEN)
    (svc / "local.py").write_text("TEXT = 'one'\n")
    env = {"PYTHONPATH": str(site), "IMPORTS_LOG": str(tmp_path / "imports.log")}
    runner = RunnerProcess([svc, "--min-uptime", "0", *flags, "--", "--flag", "x"], env=env)
    return svc, runner


def crash(runner: RunnerProcess) -> None:
    """kill -9 the current service (the last one the runner started)."""
    os.kill(started_pids(runner.stderr)[-1], signal.SIGKILL)


def test_a_crash_restarts_in_the_spare_and_serves_what_a_cold_start_serves(
    tmp_path: Path, site: Path
) -> None:
    log = tmp_path / "imports.log"
    svc, runner = standby_service(tmp_path, site, "--standby")
    try:
        cold = runner.wait_http()
        wait_for(lambda: len(imports(log)) == 2, 20, "the spare to import heavydep")
        crashed = time.time()
        crash(runner)
        runner.wait_log("from the standby")
        warm = runner.wait_http()
        (svc / "local.py").write_text("TEXT = 'two'\n")  # edited between crashes
        wait_for(lambda: len(imports(log)) == 3, 20, "the next spare to import heavydep")
        crash(runner)
        wait_for(lambda: runner.stderr.count("from the standby") == 2, 20, "a second warm start")
        edited = runner.wait_http()
    finally:
        runner.signal()
        runner.finish()
    assert warm == cold, runner.stderr
    assert cold[1].endswith(b"one") and edited == (200, cold[1][:-3] + b"two")
    first, spare = imports(log)[:2]  # the third spare may have imported it too by now
    cold_pid, warm_pid = started_pids(runner.stderr)[:2]
    assert (first[0], spare[0]) == (cold_pid, warm_pid)  # the restarted service is the spare
    assert spare[1] < crashed  # which had imported heavydep before the crash


@pytest.mark.parametrize("what, source", [
    ("started a thread", "import threading, time\n"
                         "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"),
    ("opened a socket", "import socket\nconnection = socket.socket()\n"),
])
def test_a_library_that_starts_threads_or_opens_sockets_falls_back_to_cold_starts(
    tmp_path: Path, site: Path, what: str, source: str
) -> None:
    (site / "busydep.py").write_text(source)
    svc = write_service(tmp_path / "svc", body="import busydep")
    runner = RunnerProcess([svc, "--standby", "--min-uptime", "0"],
                           env={"PYTHONPATH": str(site)})
    try:
        runner.wait_log("spare interpreter")
        crash(runner)
        wait_for(lambda: len(started_pids(runner.stderr)) == 2, 20, "a restart")
        runner.wait_http()
        wait_for(lambda: runner.stderr.count("service ready on") == 2, 20, "the second start")
        spare_after = _spare(runner)  # none: the standby is off (made right at "ready")
    finally:
        runner.signal()
        runner.finish()
    warnings = [line for line in runner.stderr.splitlines() if "--standby off" in line]
    assert len(warnings) == 1, runner.stderr
    assert f"importing busydep {what}, so restarts are cold starts" in warnings[0]
    assert "from the standby" not in runner.stderr
    assert spare_after is None and runner.stderr.count("spare interpreter") == 1


def test_sigterm_with_a_spare_waiting_leaves_no_process(service: Path) -> None:
    runner = RunnerProcess([service, "--standby"])
    try:
        runner.wait_http()
        spare = int(wait_for(lambda: _spare(runner), 20, "the spare process"))
        assert not group_listens(spare, runner.port)  # the spare never holds the port
        service_pid = started_pids(runner.stderr)[-1]
        runner.signal(signal.SIGTERM)
        status = runner.finish()
    finally:
        runner.kill()
    assert status == 0, runner.stderr
    assert not pid_alive(spare) and not pid_alive(service_pid)


def _spare(runner: RunnerProcess) -> int | None:
    """The program the runner started that is not the service (each runs under its keeper)."""
    programs = {program for keeper in _children(runner.proc.pid) for program in _children(keeper)}
    others = programs - set(started_pids(runner.stderr))
    return others.pop() if others else None


def _children(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return set(map(int, f.read().split()))
    except FileNotFoundError:  # it ended meanwhile
        return set()


def test_a_spare_runs_multiprocessing_spawn_workers(tmp_path: Path) -> None:
    runner = RunnerProcess([script(tmp_path, SPAWNS_A_WORKER), "--standby", "--min-uptime", "0"])
    try:
        runner.wait_http()
        wait_for(lambda: _spare(runner), 20, "the spare process")
        crash(runner)
        runner.wait_log("from the standby")
        wait_for(lambda: len(started_pids(runner.stderr)) == 2, 20, "the restart")
        answer = runner.wait_http(timeout=30)
    finally:
        runner.signal()
        runner.finish()
    assert answer == (200, b"from a spawn worker"), runner.stderr


def test_without_standby_there_is_no_spare(service: Path) -> None:
    runner = RunnerProcess([service])
    try:
        runner.wait_http()
        runner.wait_log("service ready on")  # a spare is started right after this line
        spare = _spare(runner)
    finally:
        runner.signal()
        runner.finish()
    assert spare is None
    assert "spare interpreter" not in runner.stderr


def traceback_of(stderr: str) -> str:
    return stderr[stderr.index("Traceback"):stderr.index("ValueError: boom")]


def test_an_error_in_a_warm_start_shows_a_cold_starts_traceback(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc",
                        body='if os.path.exists("boom"):\n    raise ValueError("boom")')
    runner = RunnerProcess([svc, "--standby", "--max-restarts", "1"])
    try:
        runner.wait_http()
        wait_for(lambda: _spare(runner), 20, "the spare process")
        (svc / "boom").touch()
        crash(runner)
        status = runner.finish()
    finally:
        runner.kill()
    cold = run_runner([svc, "--max-restarts", "0"])
    assert status == 5 and "from the standby" in runner.stderr
    assert traceback_of(runner.stderr) == traceback_of(cold.stderr)
    assert runner.error_line().endswith("ValueError: boom (fix the error above and start again)")


def last_run_output(stderr: str) -> list[str]:
    """What the service started last wrote to stderr (the runner's lines left out)."""
    last = stderr[stderr.rindex("service started"):]
    return [line for line in last.splitlines()[1:]
            if not line.startswith(("[runner ", "error: "))]


def restart_after(edit: str, svc: Path, standby: str) -> RunnerProcess:
    """The runner's run when `edit` breaks the main, then the service crashes once."""
    runner = RunnerProcess([svc, standby, "--max-restarts", "1"])
    try:
        runner.wait_http()
        if standby == "--standby":
            runner.wait_log("standby: the spare")
        if edit == "syntax error":
            (svc / "__main__.py").write_text("def (:\n")
        else:
            (svc / "__main__.py").unlink()
        crash(runner)
        runner.finish()
    finally:
        runner.kill()
    return runner


@pytest.mark.parametrize("edit", ["syntax error", "main removed"])
def test_a_broken_main_in_a_warm_start_shows_what_a_cold_start_shows(
    tmp_path: Path, edit: str
) -> None:
    """A save with a typo (or a main deleted) before a crash: no frames of the runner's spare."""
    warm = restart_after(edit, write_service(tmp_path / "warm"), "--standby")
    cold = restart_after(edit, write_service(tmp_path / "cold"), "--no-standby")
    assert "from the standby" in warm.stderr
    assert warm.proc.returncode == cold.proc.returncode == 5
    assert (last_run_output(warm.stderr) ==
            [line.replace("/cold/", "/warm/") for line in last_run_output(cold.stderr)])
    assert "spare.py" not in warm.stderr


def test_runner_standby_1_turns_it_on(service: Path) -> None:
    runner = RunnerProcess([service], env={"RUNNER_STANDBY": "1"})
    try:
        runner.wait_log("standby: the spare")
    finally:
        runner.signal()
        runner.finish()


def test_a_bad_runner_standby_value_is_a_usage_error(service: Path) -> None:
    runner = run_runner([service], env={"RUNNER_STANDBY": "maybe"})
    assert runner.proc.returncode == 2
    assert runner.error_line() == (
        "error: RUNNER_STANDBY: expected 1 or 0, got 'maybe' (see `execute-code --help`)")
