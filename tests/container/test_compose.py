"""The one-machine deployment (deploy/compose/compose.yaml) brought up by podman-compose.

Three replicas of the workspace image serving examples/async-service, nginx
and Redis built FROM the same Debian base: a request through nginx answers
200, a task completes and every replica reports it (nginx sends each status
GET to a replica picked afresh, so the store is shared); a rolling restart
(each replica restarted in turn) fails no GET, and nginx finds the restarted
replicas at their new addresses; `down` leaves no container, network or
volume of the project behind.
"""

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, free_port, http_get, wait_for
from podman_tools import HERE, PREFIX, podman

COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
UP_TIMEOUT = 600  # builds nginx and Redis from the Debian base the first time
CNI_PLUGIN_DIRS = ("/usr/lib/cni", "/usr/libexec/cni", "/opt/cni/bin")


class Stack:
    """A compose project of its own name, on a free port of 127.0.0.1."""

    def __init__(self, image: str) -> None:
        self.project = f"{PREFIX}-compose-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.env = {**os.environ, "CONTAINERS_CONF": str(HERE / "containers.conf"),
                    "WORKSPACE_IMAGE": image, "HTTP_PORT": str(self.port)}

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(["podman-compose", "-p", self.project, "-f", str(COMPOSE), *args],
                                env=self.env, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL, check=False)
        assert result.returncode == 0, f"podman-compose {' '.join(args)}:\n" \
                                       f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def left_behind(self) -> list[str]:
        """Containers, networks and volumes of this project that still exist."""
        label = f"label=io.podman.compose.project={self.project}"
        found = podman("ps", "--all", "--filter", label, "--format", "{{.Names}}").stdout.split()
        found += [n for n in podman("network", "ls", "--format", "{{.Name}}").stdout.split()
                  if n.startswith(self.project)]
        found += [v for v in podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
                  if v.startswith(self.project)]
        return found


@pytest.fixture
def stack(image: str) -> Iterator[Stack]:
    if shutil.which("podman-compose") is None:
        pytest.skip("podman-compose is not installed (pip install podman-compose)")
    backend = podman("info", "--format", "{{.Host.NetworkBackend}}").stdout.strip()
    if backend == "cni" and not any(Path(d, "dnsname").exists() for d in CNI_PLUGIN_DIRS):
        pytest.fail("podman's CNI networks need the dnsname plugin for the replicas to find "
                    "each other: apt-get install golang-github-containernetworking-plugin-dnsname "
                    "(tests/install.sh does)")
    stack = Stack(image)
    try:
        yield stack
    finally:
        subprocess.run(["podman-compose", "-p", stack.project, "-f", str(COMPOSE), "down",
                        "--volumes", "--timeout", "5"], env=stack.env, capture_output=True,
                       timeout=120, check=False)


def post_task(url: str) -> str:
    request = urllib.request.Request(url, data=json.dumps({"size": 1}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 202
        return json.loads(answer.read())["task_id"]


def answered_200(url: str) -> tuple[int, bytes] | None:
    answer = http_get(url, timeout=5)
    return answer if answer and answer[0] == 200 else None


def task_status(url: str) -> str | None:
    answer = http_get(url, timeout=5)
    return json.loads(answer[1])["status"] if answer and answer[0] == 200 else None


class SteadyGets:
    """GETs through nginx one after another, from start until `stop()`: what a
    client sees during a rolling restart."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[int | None] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            answer = http_get(self.url, timeout=10)
            self.answers.append(answer[0] if answer else None)

    def stop(self) -> list[int | None]:
        """Every answer that was not a 200 (None: no answer at all)."""
        self._done.set()
        self._thread.join(30)
        return [status for status in self.answers if status != 200]


def replica_ready(name: str) -> bool:
    """The replica's own /ready, asked inside its container (nginx never asks it)."""
    probe = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8091/ready', " \
            "timeout=2)"
    return podman("exec", name, "python3", "-c", probe, check=False).returncode == 0


def reached_through_nginx(stack: Stack, name: str) -> bool:
    """Whether one of a few GETs through nginx reached replica `name` (by its access log)."""
    token = uuid.uuid4().hex
    for _ in range(6):  # nginx tries the replicas from a random one on
        http_get(stack.url(f"/echo/{token}"), timeout=10)
    logs = podman("logs", name)
    return token in logs.stdout + logs.stderr


def test_compose_stack_serves_tasks_and_leaves_nothing(stack: Stack) -> None:
    stack.compose("up", "--detach", "--build", timeout=UP_TIMEOUT)
    label = f"label=io.podman.compose.project={stack.project}"
    services = podman("ps", "--filter", label,
                      "--format", '{{index .Labels "com.docker.compose.service"}}').stdout.split()
    replicas = podman("ps", "--filter", label, "--filter",
                      "label=com.docker.compose.service=service",
                      "--format", "{{.Names}}").stdout.split()
    echo = wait_for(lambda: answered_200(stack.url("/echo/compose")), 180,
                    "an answer through nginx")

    task_id = post_task(stack.url("/"))
    status_url = stack.url(f"/tasks/{task_id}")
    wait_for(lambda: task_status(status_url) == "completed", 120, "the task to complete")
    statuses = [task_status(status_url) for _ in range(6)]  # every replica, most likely

    # A rolling restart as deploy/README.md tells it: each replica restarted in
    # turn, the next once it is ready and nginx sends it requests. A restarted
    # container comes back at a new address, which nginx must find; until it has
    # (up to 2 s), stopping the next one could leave nginx no address that answers.
    load = SteadyGets(stack.url("/echo/rolling"))
    for name in replicas:
        podman("restart", "--time", "40", name)
        wait_for(lambda name=name: replica_ready(name), 60, f"{name} ready again")
        wait_for(lambda name=name: reached_through_nginx(stack, name), 30,
                 f"nginx to send {name} requests")
    after_restart = [answered_200(stack.url("/echo/restarted")) is not None for _ in range(6)]
    failed_during_restart = load.stop()

    started = time.monotonic()
    stack.compose("down", "--volumes", "--timeout", "40", timeout=180)
    down_seconds = time.monotonic() - started

    assert sorted(services) == ["nginx", "redis", "service", "service", "service"]
    assert json.loads(echo[1]) == {"echo": "compose"}
    assert statuses == ["completed"] * 6
    assert failed_during_restart == [], f"of {len(load.answers)} GETs"
    assert after_restart == [True] * 6
    assert stack.left_behind() == []
    assert down_seconds < 40, f"down took {down_seconds:.1f} s: a container ignored SIGTERM"
