"""Reading a `conda-lock.yml` (conda-lock's format, version 1) for one platform.

The lock is read here with PyYAML for what the runner decides itself: which
platforms it has, the key of the environment, the hashes of local packages
(rattler checks downloads but not `file://` packages) and the pip packages.
The worker reads it again with rattler (`rattler.LockFile`) to get
installable records.

An entry may have a sha256, an md5 or both (conda-lock's own test lock has
md5 alone in 144 of 147 entries): the sha256 is checked where there is one,
else the md5; an entry with neither is refused. pip packages need a sha256,
since pip's hash-checking mode takes no md5.

Why not conda-lock's own models (`conda_lock.lockfile.parse_conda_lock_file`):
importing them costs 0.35-0.5 s and 67 MB (60 dependencies, 136 MB installed),
and conda-lock pins `dulwich<0.25`, which breaks breezy (the bzr client) in
the same environment. This reader needs 6 fields; rattler reads the rest.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from runner.errors import InstallError
from runner.install.conda_spec import load_yaml


@dataclass(frozen=True)
class LockedPackage:
    """One package of the lock: conda's or pip's, where to get it and its hash."""

    name: str
    manager: str
    url: str
    sha256: str | None
    md5: str | None = None

    @property
    def digest(self) -> tuple[str, str]:
        """The strongest hash the lock gives: ("sha256", hex), else ("md5", hex)."""
        if self.sha256:
            return "sha256", self.sha256
        return "md5", self.md5 or ""


@dataclass
class LockSpec:
    """The lock's packages for this machine's platform."""

    platform: str
    conda: list[LockedPackage]
    pip: list[LockedPackage]

    def key(self) -> str:
        """A digest of exactly what gets installed."""
        data = {"platform": self.platform,
                "conda": sorted((p.url, *p.digest) for p in self.conda),
                "pip": sorted((p.url, *p.digest) for p in self.pip)}
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()

    def pip_requirements(self) -> str:
        """A requirements file pinning each pip package to its URL and hash.

        With a hash on every line pip checks them all (hash-checking mode).
        """
        return "".join(f"{p.name} @ {p.url} --hash=sha256:{p.sha256}\n" for p in self.pip)


def read_lock_file(file: Path, platform: str) -> LockSpec:
    """Parse `file` for `platform`; a lock without it names the ones it has."""
    data = load_yaml(file)
    if not isinstance(data, dict) or data.get("version") != 1:
        version = data.get("version") if isinstance(data, dict) else None
        raise InstallError(
            f"{file.name}: expected a conda-lock file of version 1, got version {version!r} "
            "(make it with `conda-lock lock --kind lock`)"
        )
    packages = data.get("package")
    if not isinstance(packages, list):
        raise InstallError(f"{file.name}: no `package:` list (make it with `conda-lock lock`)")
    mine = [_package(file, p) for p in packages if isinstance(p, dict) and
            p.get("platform") == platform]
    if not mine:
        raise InstallError(
            f"{file.name} has no packages for this machine's platform {platform} "
            f"(it has: {', '.join(_platforms(data, packages)) or 'none'}); "
            f"lock it for {platform} too: conda-lock lock -p {platform}"
        )
    return LockSpec(
        platform=platform,
        conda=[p for p in mine if p.manager == "conda"],
        pip=[p for p in mine if p.manager == "pip"],
    )


def verify_local_packages(file: Path, lock: LockSpec) -> None:
    """Check the sha256 (else the md5) of every `file://` conda package against the lock."""
    for pkg in lock.conda:
        parts = urlsplit(pkg.url)
        if parts.scheme != "file":
            continue  # rattler checks what it downloads
        path = Path(unquote(parts.path))
        algorithm, expected = pkg.digest
        if path.exists() and not path.is_file():  # /dev/zero: its hash would never end
            raise InstallError(f"{file.name}: package {pkg.name} at {path} is not a file "
                               "(re-create the lock with conda-lock)")
        try:
            actual = _file_digest(path, algorithm)
        except OSError as exc:
            raise InstallError(f"{file.name}: package {pkg.name} cannot be read at {path}: "
                               f"{exc.strerror}") from None
        if actual != expected:
            raise InstallError(
                f"{file.name}: package {pkg.name} at {pkg.url} does not match the lock: "
                f"{algorithm} {actual} instead of {expected} (the file changed since it was "
                "locked: restore it, or re-lock)"
            )


def _package(file: Path, entry: dict[str, object]) -> LockedPackage:
    digest = entry.get("hash")
    hashes = digest if isinstance(digest, dict) else {}
    sha256, md5 = (h.lower() if isinstance(h, str) and h else None
                   for h in (hashes.get("sha256"), hashes.get("md5")))
    name, url, manager = entry.get("name"), entry.get("url"), entry.get("manager", "conda")
    if not (isinstance(name, str) and isinstance(url, str) and (sha256 or md5)):
        label = name if isinstance(name, str) else repr(entry)
        raise InstallError(
            f"{file.name}: package {label} lacks a name, url or hash (sha256 or md5) "
            "(re-create the lock with conda-lock)"
        )
    if manager not in ("conda", "pip"):
        raise InstallError(f"{file.name}: package {name} has unknown manager {manager!r}")
    if manager == "pip" and not sha256:
        raise InstallError(f"{file.name}: pip package {name} has no sha256 hash, which pip's "
                           "hash checking needs (re-create the lock with conda-lock)")
    return LockedPackage(name=name, manager=str(manager), url=url, sha256=sha256, md5=md5)


def _platforms(data: dict[str, object], packages: list[object]) -> list[str]:
    """The platforms the lock has packages for (else those its metadata lists)."""
    metadata = data.get("metadata")
    listed = metadata.get("platforms") if isinstance(metadata, dict) else None
    found = {str(p.get("platform")) for p in packages if isinstance(p, dict) and p.get("platform")}
    return sorted(found or (map(str, listed) if isinstance(listed, list) else []))


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
