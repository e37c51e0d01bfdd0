"""Fixtures for the toolkit's tests: a real service process on a free port, a real redis-server.

A service is a Python file written by the test and run as `python FILE` with
the toolkit from this checkout on PYTHONPATH, served by real waitress on
127.0.0.1; every process is ended by PID when the test ends.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import ROOT, free_port, http_get, wait_for

TOOLKIT = ROOT / "toolkit"


class ServiceProcess:
    """A service file run as a real process; its output is kept for assertions."""

    def __init__(self, source: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOST": "127.0.0.1",
                    "PORT": str(self.port),
                    "PYTHONPATH": os.pathsep.join([str(TOOLKIT), os.environ.get("PYTHONPATH", "")]),
                    **env}
        self.proc = subprocess.Popen([sys.executable, str(source)], env=full_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._chunks.append(line)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get_json(self, path: str) -> tuple[int, dict] | None:
        answer = http_get(self.url(path))
        return None if answer is None else (answer[0], json.loads(answer[1] or b"null"))

    def wait_ready(self, timeout: float = 15) -> None:
        """Until `/ready` answers 200; fail at once when the process exits first."""
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited {self.proc.returncode}:\n{self.output}")
            answer = http_get(self.url("/ready"), timeout=1)
            return answer is not None and answer[0] == 200
        wait_for(ready, timeout, "the service to be ready")

    def wait_listening(self, timeout: float = 15) -> None:
        wait_for(lambda: http_get(self.url("/health"), timeout=1) is not None or
                 self.proc.poll() is not None, timeout, "the service to listen")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


ServiceFactory = Callable[..., ServiceProcess]


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[ServiceFactory]:
    """`start_service(source, **env)`: write `source` (dedented) to a file and run it.
    TASKS_DB defaults to a file in the test's folder."""
    yield from _factory(tmp_path)


@pytest.fixture(scope="module")
def start_module_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceFactory]:
    """`start_service` for services shared by the tests of one module (fewer starts)."""
    yield from _factory(tmp_path_factory.mktemp("svc"))


def _factory(tmp_path: Path) -> Iterator[ServiceFactory]:
    started: list[ServiceProcess] = []

    def start(source: str, *, wait: bool = True, name: str = "svc.py",
              **env: str) -> ServiceProcess:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        env.setdefault("TASKS_DB", str(tmp_path / "tasks.sqlite3"))
        service = ServiceProcess(path, env)
        started.append(service)
        if wait:
            service.wait_ready()
        return service

    try:
        yield start
    finally:
        for service in started:
            service.stop()


class RedisServer:
    """A real redis-server (Debian's package) on a free port; `stop()` and `start()`
    again keep the port and, when `persistent`, the data (an append-only file synced
    at every write): a Redis that goes away and comes back."""

    def __init__(self, folder: Path, persistent: bool = False) -> None:
        self.persistent = persistent
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail("redis-server is missing: run tests/install.sh")
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis
        client = redis.Redis(port=self.port)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False
        wait_for(answers, 10, "redis-server to answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextmanager
def _redis(folder: Path, persistent: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(folder, persistent)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole session."""
    with _redis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may stop and start again; it
    keeps its data."""
    with _redis(tmp_path_factory.mktemp("redis"), persistent=True) as server:
        yield server
