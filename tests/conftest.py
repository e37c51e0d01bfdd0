"""Fixtures shared by all tests."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import STARTED, free_port, write_service


@pytest.fixture(autouse=True)
def _no_runner_outlives_its_test() -> Iterator[None]:
    """Kill (and reap) every runner a test started and left running, pass or fail.

    Runners that wider-scoped fixtures started (set up before this one) are
    theirs to stop: one module-scoped service serves several tests.
    """
    before = len(STARTED)
    yield
    while len(STARTED) > before:
        STARTED.pop().kill()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """A minimal stdlib service folder answering `ok`."""
    return write_service(tmp_path / "svc")


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """An empty folder for the runner's TMPDIR: where its temp folders go, and must be gone from."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder
