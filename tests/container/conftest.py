"""Fixtures of the container tests: the workspace image, built once per session
by `build.sh` (cached layers make a rebuild take seconds), and containers that
are removed after each test.

The image tests need podman: without it they are skipped, with the reason,
unless `CI` is set; then `build.sh` installs it (as root, from Debian).
"""

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import free_port, http_get, wait_for

HERE = Path(__file__).resolve().parent
#: Every image and container of these tests starts with this, to be told apart.
PREFIX = "wsr-test"
IMAGE = f"localhost/{PREFIX}/workspace:latest"
BUILD_TIMEOUT = 1800


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `podman ARGS` with the settings this machine needs (containers.conf)."""
    env = {**os.environ, "CONTAINERS_CONF": str(HERE / "containers.conf")}
    result = subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Container:
    """A started container; `ports` maps container ports to published host ports."""

    name: str
    ports: dict[int, int] = field(default_factory=dict)

    def url(self, path: str = "/", port: int = 8091) -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def get(self, path: str = "/", port: int = 8091) -> tuple[int, bytes] | None:
        return http_get(self.url(path, port), timeout=2)

    def state(self) -> dict:
        return json.loads(podman("inspect", "--format", "{{json .State}}", self.name).stdout)

    def logs(self) -> str:
        result = podman("logs", self.name)
        return result.stdout + result.stderr

    def wait_http(self, path: str = "/", port: int = 8091, timeout: float = 60) -> tuple:
        """The first HTTP answer; fails at once (with the logs) if the container ends."""

        def answered() -> tuple[int, bytes] | None:
            if not self.state()["Running"]:
                raise AssertionError(f"container {self.name} ended:\n{self.logs()}")
            return self.get(path, port)

        return wait_for(answered, timeout, f"HTTP on {self.url(path, port)}")  # type: ignore[return-value]

    def exec(self, *argv: str, detach: bool = False) -> subprocess.CompletedProcess:
        return podman("exec", *(["-d"] if detach else []), self.name, *argv)


@pytest.fixture(scope="session")
def image() -> str:
    """The workspace image, built (or found in podman's layer cache) once per session."""
    if shutil.which("podman") is None and not os.environ.get("CI"):
        pytest.skip("podman is not installed: `bash tests/container/build.sh` installs it "
                    "(as root, on Debian) and builds the image; with CI set these tests run")
    result = subprocess.run(["bash", str(HERE / "build.sh"), IMAGE], capture_output=True,
                            text=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        pytest.fail(f"build.sh exited {result.returncode}:\n{result.stderr[-5000:]}")
    return IMAGE


@pytest.fixture
def start(image: str) -> Iterator:
    """`start(ports=..., env=..., volumes=..., image=..., args=...)` runs a container
    detached, publishing each container port on a free host port of 127.0.0.1;
    every container started is removed when the test ends."""
    names: list[str] = []

    def run(*, ports: Sequence[int] = (8091,), env: Mapping[str, str] | None = None,
            volumes: Mapping[Path, str] | None = None, image_name: str = image,
            args: Sequence[str] = ()) -> Container:
        container = Container(f"{PREFIX}-{uuid.uuid4().hex[:10]}",
                              {port: free_port() for port in ports})
        options = [f"--publish=127.0.0.1:{host}:{port}" for port, host in container.ports.items()]
        options += [f"--env={key}={value}" for key, value in (env or {}).items()]
        options += [f"--volume={src}:{dst}:ro" for src, dst in (volumes or {}).items()]
        names.append(container.name)
        podman("run", "--detach", f"--name={container.name}", *options, image_name, *args)
        return container

    yield run
    for name in names:
        podman("rm", "--force", "--time=0", name, check=False)
