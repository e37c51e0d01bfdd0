"""Install stamps: skip a step whose file and environment are as it left them.

A stamp records, per code root and service Python, the hash of each step's
file and a fingerprint of the environment after the last complete install.
A warm start then costs a few `stat` calls instead of a pip run. Stamps are
written only when the whole install succeeded, and dropped when one fails,
so a half install is never trusted.
"""

import hashlib
import json
import os
from pathlib import Path

from runner.install.base import ServiceEnv


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(service_env: ServiceEnv) -> str:
    """What changes when anything is installed into or removed from the environment.

    The interpreter itself, and the modification times of its site-packages
    folders (a pip install or uninstall adds or removes entries in them).
    """
    python = service_env.python
    parts = [str(python), str(python.resolve())]
    prefix = python.parent.parent
    site_packages = sorted(prefix.glob("lib/python3*/site-packages"))
    for folder in [python, prefix / "pyvenv.cfg", *site_packages]:
        try:
            stat = folder.stat()
        except OSError:
            continue
        parts.append(f"{folder}:{stat.st_mtime_ns}:{stat.st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class Stamps:
    """The stamps of one code root installed into one service Python."""

    def __init__(self, root: Path, code_root: Path, service_python: Path) -> None:
        key = f"{code_root.resolve()}\0{service_python}"
        self.path = root / "stamps" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")
        try:
            self._saved: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._saved = {}
        self._done: dict[str, str] = {}

    def file_unchanged(self, file: Path) -> bool:
        """Whether `file` is as it was at the last complete install."""
        saved = self._saved.get(file.name)
        return saved is not None and saved.get("file") == file_hash(file)

    def env_unchanged(self, file: Path, service_env: ServiceEnv) -> bool:
        """Whether the environment is as the last complete install left it."""
        saved = self._saved.get(file.name)
        return saved is not None and saved.get("env") == fingerprint(service_env)

    def record(self, file: Path) -> None:
        """Note a step as installed (or found unchanged) in this run."""
        self._done[file.name] = file_hash(file)

    def save(self, service_env: ServiceEnv) -> None:
        """After a complete install: stamp every step with the final environment."""
        env = fingerprint(service_env)
        data = {name: {"file": digest, "env": env} for name, digest in self._done.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def drop(self) -> None:
        """After a failed install: trust nothing next time."""
        self.path.unlink(missing_ok=True)
