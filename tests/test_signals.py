"""Stop signals outside the service's run: during installs, during clean-up, and the odd ones.

Each test gives the runner its own TMPDIR (the `tmp` fixture) and checks that it
is empty afterwards; processes are checked by PID and start time.
"""

import functools
import http.server
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from archives import tar_bytes
from helpers import RunnerProcess, read_pid, running, service_source, wait_for, write_service


def test_a_second_sigterm_does_not_cut_a_tools_stop_short(tmp_path: Path, tmp: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text("trap '' TERM\nsleep 60 &\necho $! > sleep.pid\nwait\n")
    runner = RunnerProcess([svc], env={"TMPDIR": str(tmp)})
    try:
        sleep = read_pid(svc / "sleep.pid")
        runner.signal(signal.SIGTERM)
        time.sleep(1)  # the case: the second SIGTERM a second later, inside the grace
        runner.signal(signal.SIGTERM)
        code = runner.finish(timeout=30)
        survived = running(*sleep)
    finally:
        runner.kill()
    assert code == 143, runner.stderr
    assert not survived, "setup.sh's sleep outlived the runner"
    assert "still running 5 s after SIGTERM: killing it" in runner.stderr
    assert "Traceback" not in runner.stderr
    assert list(tmp.iterdir()) == []


class Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A stdlib file server on 127.0.0.1 for `root`: (its URL, root)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Files, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", root
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_a_repeated_sigterm_does_not_interrupt_the_clean_up(
    file_server: tuple[str, Path], tmp: Path
) -> None:
    url, root = file_server
    quick_exit = ("signal.signal(signal.SIGTERM, "
                  "lambda *a: threading.Timer(0.05, os._exit, [0]).start())")
    main = service_source("import threading", signals=quick_exit).encode()
    files = {f"data/{i // 1000}/{i}.txt": b"x" for i in range(20_000)}
    (root / "svc.tgz").write_bytes(tar_bytes({"__main__.py": main, **files}))
    runner = RunnerProcess([f"{url}/svc.tgz"], env={"TMPDIR": str(tmp)})
    try:
        runner.wait_http(timeout=120)
        runner.signal(signal.SIGTERM)
        time.sleep(0.15)  # the case: while 20,000 unpacked files are being removed
        runner.signal(signal.SIGTERM)
        code = runner.finish(timeout=60)
    finally:
        runner.kill()
    assert code == 0, runner.stderr
    assert "before the service started" not in runner.stderr
    assert list(tmp.iterdir()) == []


def test_sighup_stops_the_service_like_sigterm(service: Path, tmp: Path) -> None:
    runner = RunnerProcess([service], env={"TMPDIR": str(tmp)})
    try:
        runner.wait_http()
        runner.signal(signal.SIGHUP)
        code = runner.finish(timeout=30)
    finally:
        runner.kill()
    assert code == 0, runner.stderr
    assert "SIGHUP received" in runner.stderr
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGHUP, 129), (signal.SIGQUIT, 131)])
def test_sighup_and_sigquit_during_an_install_clean_up(
    tmp_path: Path, tmp: Path, signum: int, code: int
) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text("echo $$ > setup.pid\nsleep 60\n")
    runner = RunnerProcess([svc], env={"TMPDIR": str(tmp)})
    try:
        setup = read_pid(svc / "setup.pid")
        runner.signal(signum)
        exit_code = runner.finish(timeout=30)
        survived = running(*setup)
    finally:
        runner.kill()
    assert exit_code == code, runner.stderr
    assert f"stopped by {signal.Signals(signum).name} before the service started" in runner.stderr
    assert not survived
    assert list(tmp.iterdir()) == []


def test_sigquit_kills_the_service_at_once(tmp_path: Path, tmp: Path) -> None:
    svc = write_service(tmp_path / "svc", signals="signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    runner = RunnerProcess([svc, "--stop-timeout", "60"], env={"TMPDIR": str(tmp)})
    try:
        runner.wait_http()
        started = time.monotonic()
        runner.signal(signal.SIGQUIT)
        code = runner.finish(timeout=30)
        took = time.monotonic() - started
    finally:
        runner.kill()
    assert code == 137, runner.stderr
    assert took < 10
    assert "SIGQUIT received: killing the service now, without a graceful stop" in runner.stderr
    assert list(tmp.iterdir()) == []


def test_tools_get_a_tmpdir_inside_the_runners_scratch_folder(tmp_path: Path, tmp: Path) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text(
        "python -c 'import tempfile; print(tempfile.mkdtemp(prefix=\"pip-\"))' > made.txt\n"
        "echo $$ > setup.pid\nsleep 60\n")
    runner = RunnerProcess([svc], env={"TMPDIR": str(tmp)})
    try:
        read_pid(svc / "setup.pid")
        runner.signal(signal.SIGTERM)  # as a stop during `pip install` does to pip's own folders
        code = runner.finish(timeout=30)
    finally:
        runner.kill()
    assert code == 143
    made = Path((svc / "made.txt").read_text().strip())
    assert made.parent.parent.parent == tmp and made.parent.parent.name.startswith("runner-run-")
    assert list(tmp.iterdir()) == []


def test_sigterm_during_pip_install_leaves_none_of_pips_temp_folders(
    tmp_path: Path, tmp: Path
) -> None:
    with socket.socket() as index:  # an index that takes the connection and never answers
        index.bind(("127.0.0.1", 0))
        index.listen(8)
        svc = write_service(tmp_path / "svc")
        (svc / "requirements.txt").write_text(
            f"--index-url http://127.0.0.1:{index.getsockname()[1]}/simple\nsome-package\n")
        runner = RunnerProcess([svc], env={"TMPDIR": str(tmp), "PIP_NO_CACHE_DIR": "1"})
        try:
            wait_for(lambda: list(tmp.glob("**/pip-*")), 60, "pip to make its temp folders")
            runner.signal(signal.SIGTERM)
            code = runner.finish(timeout=30)
        finally:
            runner.kill()
    assert code == 143, runner.stderr
    assert list(tmp.iterdir()) == []
