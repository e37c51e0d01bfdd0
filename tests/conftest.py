"""Fixtures shared by all tests."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import free_port, write_service


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
