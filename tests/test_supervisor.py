"""The supervisor, seen from outside: restarts, stops, signals, readiness, output."""

import os
import re
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import RunnerProcess, pid_alive, run_runner, serve_once, wait_for, write_service


def script(tmp_path: Path, source: str) -> Path:
    """A service folder whose __main__.py is `source`."""
    folder = tmp_path / "svc"
    folder.mkdir(exist_ok=True)
    (folder / "__main__.py").write_text(textwrap.dedent(source))
    return folder


def service_pids(stderr: str) -> list[int]:
    return [int(p) for p in re.findall(r"service started \(pid (\d+)\)", stderr)]


def current_pid(runner: RunnerProcess) -> int:
    """The pid of the service the runner started last (read from its log so far)."""
    return int(wait_for(lambda: _last_pid(runner), 10, "service start line"))


def _last_pid(runner: RunnerProcess) -> int | None:
    pids = [p for p in _children(runner.proc.pid)]
    return pids[-1] if pids else None


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


CRASH = """\
    import sys
    print("loading model", flush=True)
    print("ValueError: model file is corrupt", file=sys.stderr, flush=True)
    sys.exit(1)
"""


#: Fails differently each time (as a service waiting for a database does).
CRASH_VARYING = """\
    import sys, time
    print(f"loading model at {time.time()}", flush=True)
    print("ValueError: model file is corrupt", file=sys.stderr, flush=True)
    sys.exit(1)
"""


def test_quick_failures_back_off_then_exit_5(tmp_path: Path) -> None:
    started = time.monotonic()
    runner = run_runner([script(tmp_path, CRASH_VARYING), "--max-restarts", "3"])
    assert runner.proc.returncode == 5
    assert len(service_pids(runner.stderr)) == 4
    for delay in ("0.5", "1.0", "2.0"):
        assert f"restarting in {delay} s" in runner.stderr
    assert time.monotonic() - started >= 3.5
    line = runner.error_line()
    assert line.startswith("error: the service failed 4 times in a row, each within 10 s of "
                           "its start (last: exited with status 1 after ")
    assert re.search(r"its last output: loading model at [0-9.]+ \| ValueError: model file is "
                     r"corrupt \(fix the error above and start again\)$", line), line


def test_the_same_start_up_error_three_times_stops_early(tmp_path: Path) -> None:
    started = time.monotonic()
    runner = run_runner([script(tmp_path, CRASH)], timeout=30)
    assert runner.proc.returncode == 5
    assert len(service_pids(runner.stderr)) == 3
    assert time.monotonic() - started < 10  # not 5 restarts' 15.5 s of backoff
    assert runner.error_line() == (
        "error: the service failed 3 times in a row with the same output and exit status 1, "
        "so restarting will not fix it; its last output: loading model | ValueError: model "
        "file is corrupt (fix the error above and start again)")


def test_exit_0_ends_the_run_without_restart(tmp_path: Path) -> None:
    runner = run_runner([script(tmp_path, "print('done')\n")])
    assert runner.proc.returncode == 0
    assert runner.stdout == "done\n"
    assert len(service_pids(runner.stderr)) == 1


def test_restart_never_reports_the_failure(tmp_path: Path) -> None:
    runner = run_runner([script(tmp_path, CRASH), "--restart", "never"])
    assert runner.proc.returncode == 5
    assert len(service_pids(runner.stderr)) == 1
    assert "(--restart never)" in runner.error_line()


def test_restart_always_restarts_after_exit_0(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", body=textwrap.dedent("""\
        import pathlib
        count = pathlib.Path("runs.txt")
        runs = int(count.read_text()) + 1 if count.exists() else 1
        count.write_text(str(runs))
        import threading
        if runs == 1:
            threading.Timer(0.3, lambda: os._exit(0)).start()
    """), reply_expr='f"run {runs}"')
    runner = RunnerProcess([svc, "--restart", "always"])
    try:
        wait_for(lambda: runner.get() == (200, b"run 2"), 20, "the second run to serve")
    finally:
        runner.signal()
        assert runner.finish() == 0


#: A service that opens its port, then dies `DIES_AFTER` s later: Sanic's documented
#: `app.run()` does this when its worker fails (the main process binds, exits ~1 s later).
#: Each run prints its own number, so no two runs have the same output.
DIES_AFTER_OPENING = textwrap.dedent("""\
    import pathlib, socket, threading, time
    count = pathlib.Path("runs.txt")
    runs = int(count.read_text()) + 1 if count.exists() else 1
    count.write_text(str(runs))
    def die():
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(os.environ["PORT"])), 1).close()
                break
            except OSError:
                time.sleep(0.01)
        time.sleep(DIES_AFTER)
        print(f"run {runs}: worker died", flush=True)
        os._exit(STATUS)
    threading.Thread(target=die, daemon=True).start()
""")


def dies_after_opening(folder: Path, status: int, after: float) -> Path:
    body = DIES_AFTER_OPENING.replace("STATUS", str(status)).replace("DIES_AFTER", str(after))
    return write_service(folder, body=body)


def runs_so_far(svc: Path) -> int:
    """The count the service keeps in runs.txt (0 before the first, or mid-write)."""
    count = svc / "runs.txt"
    text = count.read_text().strip() if count.exists() else ""
    return int(text) if text else 0


def test_a_service_that_opens_its_port_then_dies_is_a_quick_failure(tmp_path: Path) -> None:
    svc = dies_after_opening(tmp_path / "svc", status=1, after=0.3)
    runner = run_runner([svc, "--max-restarts", "2"], timeout=30)
    assert runner.proc.returncode == 5
    assert runner.stderr.count("service ready on") == 3
    assert len(service_pids(runner.stderr)) == 3
    assert "restarting in 0.5 s" in runner.stderr and "restarting in 1.0 s" in runner.stderr
    line = runner.error_line()
    assert line.startswith("error: the service failed 3 times in a row, each within 10 s of "
                           "its start (last: exited with status 1 after ")
    assert line.endswith("its last output: run 3: worker died (fix the error above and "
                         "start again)")


def test_restart_always_backs_off_quick_runs_too(tmp_path: Path) -> None:
    svc = dies_after_opening(tmp_path / "svc", status=0, after=0.05)
    runner = run_runner([svc, "--restart", "always", "--max-restarts", "2"], timeout=30)
    assert runner.proc.returncode == 5
    assert len(service_pids(runner.stderr)) == 3
    assert "restarting in 0.5 s" in runner.stderr and "restarting in 1.0 s" in runner.stderr
    assert "(last: exited with status 0 after " in runner.error_line()


def test_a_run_that_stayed_up_resets_the_count(tmp_path: Path) -> None:
    """With --min-uptime 0.5, runs of 0.8 s are good: restarted at once, never exit 5."""
    svc = dies_after_opening(tmp_path / "svc", status=1, after=0.8)
    runner = RunnerProcess([svc, "--max-restarts", "1", "--min-uptime", "0.5"])
    try:
        wait_for(lambda: runs_so_far(svc) >= 4, 30, "a fourth run")
    finally:
        runner.signal()
        runner.finish()
    assert runner.stderr.count("restarting in 0.0 s") >= 3, runner.stderr
    assert "error:" not in runner.stderr


def test_crashed_service_is_restarted_at_once(service: Path) -> None:
    runner = RunnerProcess([service, "--min-uptime", "0.2"])
    try:
        runner.wait_http()
        runner.wait_log("service ready on")
        time.sleep(0.3)  # past --min-uptime: this run counts as good
        first = current_pid(runner)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: _last_pid(runner) not in (None, first), 10, "a new service process")
        assert runner.wait_http(timeout=10) == (200, b"ok")
    finally:
        runner.signal()
        assert runner.finish() == 0
    assert "restarting in 0.0 s" in runner.stderr


def test_port_in_use_by_another_process(service: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = run_runner([service, "--max-restarts", "1"], port=port)
    assert runner.proc.returncode == 5
    assert f"warning: port {port} is already in use by another process" in runner.stderr
    assert "Address already in use" in runner.stderr  # the service's own error
    assert "service ready" not in runner.stderr
    assert "Address already in use" in runner.error_line()


def test_sigterm_reaches_the_service_and_its_status_is_ours(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", signals=(
        "signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), os._exit(7)))"
    ))
    runner = RunnerProcess([svc])
    runner.wait_http()
    pid = current_pid(runner)
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 7
    assert "got TERM" in runner.stdout
    assert not pid_alive(pid)


def test_stop_signal_int(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc",
                        signals="signal.signal(signal.SIGINT, lambda *a: os._exit(42))")
    runner = RunnerProcess([svc, "--stop-signal", "INT"])
    runner.wait_http()
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 42


def test_service_ignoring_sigterm_is_killed_after_stop_timeout(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", signals="signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    runner = RunnerProcess([svc, "--stop-timeout", "1"])
    runner.wait_http()
    pid = current_pid(runner)
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 137
    assert "killing it" in runner.stderr
    assert not pid_alive(pid)


def test_a_repeated_sigterm_does_not_cut_the_drain_short(tmp_path: Path) -> None:
    drain = ("signal.signal(signal.SIGTERM, lambda *a: threading.Timer(1, os._exit, [7]).start())")
    svc = write_service(tmp_path / "svc", "import threading", signals=drain)
    runner = RunnerProcess([svc])
    runner.wait_http()
    runner.signal(signal.SIGTERM)
    runner.signal(signal.SIGTERM)  # as `timeout` + `pkill`, or a cgroup-wide stop, do
    assert runner.finish() == 7  # drained for its second, not killed (137)


def test_a_second_ctrl_c_kills_at_once(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", signals="signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    runner = RunnerProcess([svc, "--stop-timeout", "60"])
    runner.wait_http()
    runner.signal(signal.SIGINT)
    runner.wait_log("stopping the service")
    time.sleep(0.6)  # a person's second press comes later than the runner's 0.5 s threshold
    runner.signal(signal.SIGINT)
    assert runner.finish(timeout=10) == 137
    assert "second Ctrl+C (SIGINT): killing the service now" in runner.stderr


def test_service_dies_with_a_killed_runner(service: Path) -> None:
    runner = RunnerProcess([service])
    runner.wait_http()
    pid = current_pid(runner)
    runner.signal(signal.SIGKILL)
    runner.finish()
    wait_for(lambda: not pid_alive(pid), 5, "the service to die with the runner")


def test_ready_timeout(tmp_path: Path) -> None:
    never_listens = "import threading\nprint('warming up', flush=True)\nthreading.Event().wait()\n"
    svc = script(tmp_path, never_listens)
    runner = run_runner([svc, "--ready-timeout", "0.5", "--stop-timeout", "2"], timeout=20)
    assert runner.proc.returncode == 5
    line = runner.error_line()
    assert line.startswith(f"error: the service did not open port {runner.port} within 0.5 s "
                           "(--ready-timeout); its last output: warming up")


def test_output_passes_through_unchanged(tmp_path: Path) -> None:
    svc = script(tmp_path, """\
        import sys
        sys.stdout.write("plain line\\n\\tindented \\u00e9\\n")
        sys.stdout.write("no newline at end")
        sys.stderr.write("to stderr\\n")
    """)
    runner = run_runner([svc])
    assert runner.proc.returncode == 0
    assert runner.stdout == "plain line\n\tindented \u00e9\nno newline at end"
    assert "to stderr\n" in runner.stderr
    runner_lines = [line for line in runner.stderr.splitlines() if line != "to stderr"]
    assert runner_lines and all(re.match(r"\[runner \d\d:\d\d:\d\d\.\d{3}\] ", line)
                                for line in runner_lines)


def test_sigterm_during_install_stops_it_and_cleans_up(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text("echo $$ > setup.pid\nsleep 60\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    runner = RunnerProcess([svc], env={"TMPDIR": str(tmp)})
    pid = int(wait_for(lambda: (svc / "setup.pid").exists() and (svc / "setup.pid").read_text(),
                       10, "setup.sh to start"))
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 143
    assert not pid_alive(pid)
    assert list(tmp.iterdir()) == []


SPAWNS_A_WORKER = """\
    import http.server, multiprocessing, os


    def work(queue):
        queue.put(b"from a spawn worker")


    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(REPLY)))
            self.end_headers()
            self.wfile.write(REPLY)


    if __name__ == "__main__":
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        worker = context.Process(target=work, args=(queue,))
        worker.start()
        REPLY = queue.get(timeout=10)
        worker.join()
        server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
        server.serve_forever()
"""


def test_a_folder_service_can_start_multiprocessing_spawn_workers(tmp_path: Path) -> None:
    """`python DIR` leaves spawn children without the main's functions (Sanic's workers)."""
    runner = RunnerProcess([script(tmp_path, SPAWNS_A_WORKER), "--max-restarts", "0"])
    try:
        answer = runner.wait_http(timeout=30)
    finally:
        runner.signal()
        runner.finish()
    assert answer == (200, b"from a spawn worker"), runner.stderr


@pytest.mark.parametrize("standby", ["--no-standby", "--standby"])
def test_a_code_folder_removed_before_a_restart_is_one_error_line(
    tmp_path: Path, standby: str
) -> None:
    """A service that deletes its own folder (or a `git clean` meanwhile) cannot be restarted."""
    svc = script(tmp_path, """\
        import os, shutil, sys
        shutil.rmtree(os.path.dirname(os.path.abspath(__file__)))
        sys.exit(1)
    """)
    runner = run_runner([svc, standby], timeout=20)
    assert runner.proc.returncode == 5
    assert runner.error_line() == (
        f"error: cannot start the service again: its folder {svc} is gone "
        "(No such file or directory): restore the code and start the runner again")


def test_a_full_disk_under_the_log_loses_output_but_not_the_service(tmp_path: Path) -> None:
    """stdout on a full disk (ENOSPC): its lines are dropped, the service goes on serving."""
    svc = write_service(tmp_path / "svc", body="print('starting', flush=True)")
    to_full_disk = ["sh", "-c", 'exec "$@" >/dev/full', "sh", sys.executable, "-m", "runner"]
    runner = RunnerProcess([svc], argv0=to_full_disk)
    try:
        runner.wait_log("service ready")
        answer = runner.get()
    finally:
        runner.signal()
        status = runner.finish()
    assert (answer, status) == ((200, b"ok"), 0), runner.stderr
    assert "Traceback" not in runner.stderr


#: Beyond what poll(2) takes (2**31 ms, 24.8 days): "wait as good as forever".
MONTH = str(31 * 24 * 3600)


def test_a_stop_timeout_of_a_month_waits_instead_of_crashing(tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", signals="signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    runner = RunnerProcess([svc, "--stop-timeout", MONTH])
    try:
        runner.wait_http()
        runner.signal(signal.SIGTERM)
        runner.wait_log("stopping the service")
        runner.signal(signal.SIGQUIT)  # a person who will not wait a month
        status = runner.finish(timeout=10)
    finally:
        runner.kill()
    assert status == 137, runner.stderr
    assert "Traceback" not in runner.stderr


def test_a_network_timeout_of_a_month_clones_instead_of_crashing(tmp_path: Path) -> None:
    from test_containment import git_repo

    repo = git_repo(tmp_path / "repo", reply="cloned")
    reply, _ = serve_once([f"git+file://{repo}", "--network-timeout", MONTH])
    assert reply == "cloned"


def test_a_runner_started_with_stdin_stdout_and_stderr_closed_serves(tmp_path: Path) -> None:
    """As some process managers start it: no log to write to is no reason not to serve.

    Byte 15 is SIGTERM's number: written into a pipe of the runner's that took the number
    of its closed stdout (its signal pipe), it would stop the service.
    """
    svc = write_service(tmp_path / "svc", body="print(chr(15), flush=True)")
    closed = ["sh", "-c", 'exec "$@" <&- >&- 2>&-', "sh", sys.executable, "-m", "runner"]
    runner = RunnerProcess([svc], argv0=closed)
    try:
        answer = runner.wait_http(timeout=20)
    finally:
        runner.signal()
        status = runner.finish()
    assert (answer, status) == ((200, b"ok"), 0)


def test_the_backoff_stays_at_its_longest_after_a_thousand_quick_failures() -> None:
    """`--max-restarts 1000000` (restart for ever) and a database down overnight: 1025 quick
    failures, 30 s apart, are 8.5 hours, too long to run through the runner here; 0.5 * 2**1024
    overflowed a float and ended the runner."""
    from runner.supervisor.backoff import MAX_DELAY, Backoff, Ending

    backoff = Backoff(max_restarts=1_000_000, min_uptime=10)
    for attempt in range(1100):
        backoff.record(0.1, Ending(1, (f"connection refused, attempt {attempt}",)))
    assert (backoff.delay, backoff.exhausted) == (MAX_DELAY, False)
