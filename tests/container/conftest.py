"""Fixtures of the container tests: the workspace image, built once per session
by `build.sh` (cached layers make a rebuild take seconds), and containers that
are removed after each test.

The image tests need podman: without it they are skipped, with the reason,
unless `CI` is set; then `build.sh` installs it (as root, from Debian).
"""

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from helpers import free_port
from podman_tools import HERE, IMAGE, PREFIX, Container, podman

BUILD_TIMEOUT = 1800


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
def start(image: str) -> Iterator[Callable[..., Container]]:
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
