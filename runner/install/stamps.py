"""Install stamps: skip a step whose file and environment are as it left them.

A stamp records, per code root and service Python, the hash of each step's
file and a fingerprint of the environment after the last complete install.
A step's file hash covers every file it reads (requirements.txt and the
files it includes with `-r`/`-c`), so an edit to an included file
re-installs. A warm start then costs a few `stat` calls and reads instead of
a pip run. Stamps are written only when the whole install succeeded, and
dropped when one fails, so a half install is never trusted.

A code root in the run's scratch folder (code fetched over http, from ML Lab
or a VCS without `--cache-dir`) is gone after the run and never seen again at
that path: its stamps are not written, so none pile up that nothing reuses.
"""

import hashlib
import json
import os
from pathlib import Path

from runner.install.base import ServiceEnv, unreadable
from runner.scratch import in_scratch

#: How much of a file is hashed at a time (a 200 MB requirements.txt is not read whole).
CHUNK = 1 << 20


def file_hash(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def inputs_hash(paths: list[Path]) -> str:
    """One digest of several files and their names; InstallError when one is unreadable.

    Names count relative to the first file's folder, so the same files fetched
    into a new temporary folder have the same digest (the conda key uses it).
    """
    digest = hashlib.sha256()
    for path in paths:
        name = os.path.relpath(path, paths[0].parent)
        try:
            digest.update(f"{name}\0{file_hash(path)}\0".encode())
        except OSError as exc:
            raise unreadable(path, exc) from None
    return digest.hexdigest()


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
        self.lasting = not in_scratch(code_root)
        try:
            self._saved: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._saved = {}
        self._done: dict[str, str] = {}

    def file_unchanged(self, file: Path, inputs: list[Path]) -> bool:
        """Whether `file` and the files it reads are as they were at the last complete install."""
        saved = self._saved.get(file.name)
        return saved is not None and saved.get("file") == inputs_hash(inputs)

    def env_unchanged(self, file: Path, service_env: ServiceEnv) -> bool:
        """Whether the environment is as the last complete install left it."""
        saved = self._saved.get(file.name)
        return saved is not None and saved.get("env") == fingerprint(service_env)

    def record(self, file: Path, inputs: list[Path]) -> None:
        """Note a step as installed (or found unchanged) in this run."""
        self._done[file.name] = inputs_hash(inputs)

    def save(self, service_env: ServiceEnv) -> None:
        """After a complete install: stamp every step with the final environment."""
        if not self.lasting:
            return
        env = fingerprint(service_env)
        data = {name: {"file": digest, "env": env} for name, digest in self._done.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def drop(self) -> None:
        """After a failed install: trust nothing next time."""
        self.path.unlink(missing_ok=True)
