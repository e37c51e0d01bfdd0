"""A real local conda channel for the conda tests, built by hand in a temp folder.

The machine has no internet, so the tests cannot use conda-forge; they make
their own channel instead, indexed by rattler like any channel on disk:

- `hello-tool` (noarch: generic) ships a `bin/hello-tool` script;
- `condamod` (noarch: python) ships the module `condamod`;
- `oldlib` (noarch: generic) needs `python <3`, which nothing provides;
- `python` (this platform) is a stand-in for a real Python build: it links
  the machine's interpreter into the prefix the way a venv does (`pyvenv.cfg`
  with `home =`, `bin/python3.X` a symlink to the interpreter), so the prefix
  gets a working Python without copying one. Like a real conda Python it sees
  no other site-packages (`include-system-site-packages = false`): the
  machine's pip is not there, pip must come from the channel or ensurepip;
- `pip` (noarch: python) is pip itself, made from the wheel that the
  standard library's `ensurepip` bundles (conda-forge's pip package holds the
  same files). `build_channel(..., with_pip=False)` leaves it out, as a
  channel without pip;
- `no_ensurepip_python()` is a stand-in for a Python built without ensurepip
  (as Debian's is): its `sitecustomize` blocks the module.

Indexing runs rattler in a child process that leaves with `os._exit`: a
process that ran rattler's coroutines may crash while it shuts down (see
runner/install/conda_worker.py), and pytest's own process must not.
"""

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runner.install.conda import current_subdir

PY_VERSION = "{}.{}.{}".format(*sys.version_info[:3])
PY_SHORT = "{}.{}".format(*sys.version_info[:2])


@dataclass
class Package:
    """One package to build: its index.json fields and its files."""

    name: str
    version: str
    subdir: str = "noarch"
    noarch: str | None = None
    depends: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    build: str = "0"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"


def system_interpreter() -> Path:
    """The real interpreter behind the tests' Python (not a venv's or a shim)."""
    return (Path(sys.base_prefix) / "bin" / f"python{PY_SHORT}").resolve()


def python_package(subdir: str, files: dict[str, bytes] | None = None) -> Package:
    """The stand-in `python` (see the module docstring), with `files` added."""
    interpreter = system_interpreter()
    pyvenv = (
        f"home = {interpreter.parent}\n"
        "include-system-site-packages = false\n"
        f"version = {PY_VERSION}\n"
    )
    return Package(
        "python", PY_VERSION, subdir=subdir, build="0_runner_test",
        files={"pyvenv.cfg": pyvenv.encode(), **(files or {})},
        links={
            f"bin/python{PY_SHORT}": str(interpreter),
            "bin/python3": f"python{PY_SHORT}",
            "bin/python": f"python{PY_SHORT}",
        },
    )


def no_ensurepip_python(subdir: str) -> Package:
    """A `python` whose `python -m ensurepip` fails, as on a Python built without it."""
    block = b"import sys\nsys.modules['ensurepip'] = None\n"
    return python_package(subdir, {f"lib/python{PY_SHORT}/site-packages/sitecustomize.py": block})


def pip_package() -> Package:
    """conda's `pip` package, made from the pip wheel that ensurepip bundles."""
    import ensurepip
    import zipfile

    bundled = Path(ensurepip.__file__).parent / "_bundled"
    [wheel] = bundled.glob("pip-*.whl")
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as zf:
        files = {f"site-packages/{name}": zf.read(name) for name in zf.namelist()
                 if not name.endswith("/")}
    return Package("pip", version, noarch="python", depends=["python"], files=files)


def standard_packages(subdir: str, with_pip: bool = True) -> list[Package]:
    """The channel's packages (see the module docstring)."""
    return [
        python_package(subdir),
        *([pip_package()] if with_pip else []),
        Package(
            "hello-tool", "1.0", noarch="generic",
            files={"bin/hello-tool": b"#!/bin/sh\necho hello from conda\n"},
            modes={"bin/hello-tool": 0o755},
        ),
        Package(
            "condamod", "1.0", noarch="python", depends=["python"],
            files={"site-packages/condamod/__init__.py": b'MESSAGE = "condamod 1.0 from conda"\n'},
        ),
        # Needs a Python no channel has: the solver must explain why it fails.
        Package("oldlib", "1.0", noarch="generic", depends=["python <3"]),
    ]


def build_package(pkg: Package, folder: Path) -> Path:
    """Write `pkg` as a `.tar.bz2` conda package into `folder`; return its path."""
    index = {
        "name": pkg.name, "version": pkg.version, "build": pkg.build, "build_number": 0,
        "depends": pkg.depends, "subdir": pkg.subdir, "timestamp": int(time.time() * 1000),
        "license": "MIT",
    }
    if pkg.noarch:
        index["noarch"] = pkg.noarch
    else:
        index.update(arch="x86_64", platform="linux")
    paths = [
        {"_path": p, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(),
         "size_in_bytes": len(data)}
        for p, data in pkg.files.items()
    ] + [{"_path": p, "path_type": "softlink"} for p in pkg.links]
    info = {
        "info/index.json": json.dumps(index).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}).encode(),
        "info/files": "".join(f"{p}\n" for p in [*pkg.files, *pkg.links]).encode(),
        "info/about.json": json.dumps({"summary": f"test package {pkg.name}"}).encode(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / pkg.filename
    with tarfile.open(target, "w:bz2", compresslevel=1) as tar:
        for name, data in {**pkg.files, **info}.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mode = pkg.modes.get(name, 0o644)
            tar.addfile(member, io.BytesIO(data))
        for name, target_path in pkg.links.items():
            member = tarfile.TarInfo(name)
            member.type = tarfile.SYMTYPE
            member.linkname = target_path
            tar.addfile(member)
    return target


def index_channel(channel: Path) -> None:
    """Write repodata.json for every subdir, as any channel on disk has."""
    (channel / "noarch").mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, __file__, "index", channel], check=True, timeout=60)


def _index_here(channel: Path) -> None:
    from rattler.index import index_fs

    asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))


def build_channel(channel: Path, extra: list[Package] = (), with_pip: bool = True) -> Path:
    """A complete channel in `channel` with the standard packages (and `extra`)."""
    subdir = current_subdir()  # the runner's own answer, without importing rattler
    for pkg in [*standard_packages(subdir, with_pip), *extra]:
        build_package(pkg, channel / pkg.subdir)
    index_channel(channel)
    return channel


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def conda_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The standard channel, built once per test session."""
    return build_channel(tmp_path_factory.mktemp("conda") / "channel")


if __name__ == "__main__" and sys.argv[1:2] == ["index"]:
    try:
        _index_here(Path(sys.argv[2]))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)
