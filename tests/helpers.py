"""Shared test tools: run the real runner as a process, talk real HTTP to it.

Every test that starts the runner goes through `RunnerProcess`, which keeps
all its output; `finish()` checks that none of the test secrets leaked.
"""

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Secrets the tests hand to the runner; none may ever appear in its output.
TEST_SECRETS = ("tok-S3cr3t-9f4b2e", "gitpass-7Qx2Lm", "labtoken-Zz81Kq")


#: Runner processes started by the current test (see `RunnerProcess`).
STARTED: list["RunnerProcess"] = []


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `condition` until it is truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes] | None:
    """(status, body) of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return None  # nothing listening, or a service stopped while answering


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class RunnerProcess:
    """The runner started as a real process: `python -m runner ARGS`.

    Every one started is in `STARTED`; conftest kills those still running when
    their test ends, so a failing test leaves no runner (and no service) behind.
    """

    def __init__(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        argv0: Sequence[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        full_env = {**os.environ, "PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        full_env.pop("EXECUTE_CODE", None)
        # This checkout's runner, from any working directory, installed or not.
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        full_env.update(env or {})
        command = list(argv0 or [sys.executable, "-m", "runner"])
        self.proc = subprocess.Popen(
            [*command, *map(os.fspath, args)],
            env=full_env,
            cwd=cwd or ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._readers = [
            threading.Thread(target=_collect, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=_collect, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        STARTED.append(self)

    @property
    def stdout(self) -> str:
        """The runner's stdout so far (all of it once `finish` returned)."""
        return b"".join(self._out).decode(errors="replace")

    @property
    def stderr(self) -> str:
        """The runner's stderr so far (all of it once `finish` returned)."""
        return b"".join(self._err).decode(errors="replace")

    def wait_log(self, text: str, timeout: float = 30) -> None:
        """Wait until the runner's stderr contains `text`."""
        try:
            wait_for(lambda: text in self.stderr, timeout, f"{text!r} in the runner's log")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the log:\n{self.stderr}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str = "/", timeout: float = 5) -> tuple[int, bytes] | None:
        return http_get(self.url + path, timeout)

    def wait_http(self, path: str = "/", timeout: float = 60) -> tuple[int, bytes]:
        """Wait for the first HTTP answer; fail early if the runner exits."""

        def answered() -> tuple[int, bytes] | None:
            if self.proc.poll() is not None:
                self.finish()
                raise AssertionError(
                    f"runner exited {self.proc.returncode} before serving:\n{self.stderr}"
                )
            return self.get(path, timeout=2)

        return wait_for(answered, timeout, f"HTTP on {self.url}{path}")  # type: ignore[return-value]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 60) -> int:
        """Wait for the exit, keep the output, check no secret leaked."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"runner did not exit within {timeout} s") from None
        finally:
            for reader in self._readers:
                reader.join(timeout=10)
        assert_no_secrets(self.stdout + self.stderr)
        return self.proc.returncode

    def error_line(self) -> str:
        """The runner's one `error:` line (fails when there is not exactly one)."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, f"expected one error line, got:\n{self.stderr}"
        runner_frames = re.search(r'File ".*/runner/[a-z_/]+\.py"', self.stderr)
        assert runner_frames is None, f"runner traceback:\n{self.stderr}"
        return lines[0]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _collect(stream: Any, chunks: list[bytes]) -> None:
    """Read a pipe to its end in a thread, so tests can look at output as it comes."""
    for chunk in iter(lambda: stream.read1(65536), b""):
        chunks.append(chunk)


def run_runner(
    args: Sequence[str | os.PathLike[str]], timeout: float = 120, **kwargs: object
) -> RunnerProcess:
    """Run the runner to its end (for runs that fail or only install)."""
    runner = RunnerProcess(args, **kwargs)  # type: ignore[arg-type]
    runner.finish(timeout)
    return runner


def assert_no_secrets(text: str) -> None:
    for secret in TEST_SECRETS:
        assert secret not in text, f"secret {secret!r} leaked into output"


def serve_once(
    args: Sequence[str | os.PathLike[str]], *, timeout: float = 60, **kwargs: Any
) -> tuple[str, RunnerProcess]:
    """Start the runner, take its service's first answer on /, then stop it with SIGTERM.

    A served run must also end cleanly, so this checks the answer is a 200 and
    the runner exits 0 after SIGTERM. It returns the answer's text and the
    finished runner (for assertions on its log); a runner that never gets that
    far is killed, so no process outlives the test. `kwargs` go to `RunnerProcess`.
    """
    runner = RunnerProcess(args, **kwargs)
    try:
        status, body = runner.wait_http(timeout=timeout)
        runner.signal(signal.SIGTERM)
        assert runner.finish() == 0, runner.stderr
    finally:
        runner.kill()
    assert status == 200, f"the service answered {status}:\n{runner.stderr}"
    return body.decode(), runner


#: How a test service stops by default: on SIGTERM, a clean exit 0.
EXIT_ON_SIGTERM = "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))"


def service_source(
    body: str = "",
    *,
    reply: str = "ok",
    reply_expr: str | None = None,
    status_expr: str = "200",
    signals: str = EXIT_ON_SIGTERM,
) -> str:
    """The code of a tiny stdlib HTTP service answering `reply` on every path.

    Tests vary it only through these parameters, never by editing the text:
    `body` is extra code run first (e.g. an import); `reply_expr`, a Python
    expression evaluated once at start, is served instead of the literal
    `reply`; `status_expr` is evaluated per request (it may use `self.path`);
    `signals` is the statement that sets up the service's signal handling.
    """
    return SERVICE_TEMPLATE.format(
        body=body,
        reply_expr=repr(reply) if reply_expr is None else reply_expr,
        status_expr=status_expr,
        signals=signals,
    )


def write_service(folder: Path, body: str = "", **options: str | None) -> Path:
    """`folder` with a `__main__.py` of `service_source(body, **options)`.

    The options are those of `service_source` (reply, reply_expr, status_expr,
    signals). Writing again with other ones is how a test edits a running service.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__main__.py").write_text(service_source(body, **options))  # type: ignore[arg-type]
    return folder


SERVICE_TEMPLATE = '''\
import http.server, os, signal, sys
{body}
REPLY = {reply_expr}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        data = REPLY.encode()
        self.send_response({status_expr})
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


{signals}
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


def build_wheel(folder: Path, name: str, version: str = "1.0", source: str = "") -> Path:
    """A pure-Python wheel of one module `name` with `source`, made by hand.

    pip installs a wheel file with no index and no build step, so the tests
    need neither PyPI nor setuptools. Its RECORD holds real hashes, as a
    built wheel's does.
    """
    import base64
    import hashlib
    import zipfile

    def record_hash(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": source.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\n"
                         b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={record_hash(data)},{len(data)}\n" for path, data in files.items()
    ) + f"{dist}/RECORD,,\n"
    files[f"{dist}/RECORD"] = record.encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None once it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


def running(pid: int, started: int) -> bool:
    """Whether the process that had this PID and start time is still there."""
    return start_time(pid) == started


def read_pid(file: Path, timeout: float = 20) -> tuple[int, int]:
    """The PID a script wrote to `file`, with its start time.

    A process that may end before the test looks writes its start time after
    its PID (`echo $$ $(cut -d" " -f22 /proc/$$/stat)`).
    """
    text = wait_for(lambda: file.exists() and file.read_text().strip(), timeout,
                    f"a pid in {file.name}")
    pid, *written = map(int, str(text).split())
    started = written[0] if written else start_time(pid)
    assert started is not None, f"process {pid} ended before the test saw it"
    return pid, started
