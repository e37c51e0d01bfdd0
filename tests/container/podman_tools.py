"""Podman for the container tests: `podman(...)` with this machine's settings and
`Container`, a started container with its published ports."""

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from helpers import http_get, wait_for

HERE = Path(__file__).resolve().parent
#: Every image and container of these tests starts with this, to be told apart.
PREFIX = "wsr-test"
IMAGE = f"localhost/{PREFIX}/workspace:latest"


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
