"""The optional cache dir (`--cache-dir` / `RUNNER_CACHE_DIR`) for fetched code.

An entry is a folder named by a hash of its kind and key (URL + resolved
revision, lab key + hash, ...). It is filled in a temporary folder beside it
and renamed into place only when complete, so a run killed mid-fetch never
leaves a half entry that a later run would trust. The filling run holds an
`flock` on its `.partial-*` folder; one nobody holds belongs to a run that was
killed (`kill -9`), and the next fill of that kind removes it.
"""

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from runner import log
from runner.config import Config
from runner.scratch import locked_mkdtemp, remove_unlocked

PARTIAL = ".partial-"


def cache_root(config: Config) -> Path:
    """The runner's lasting home: the cache dir, else a per-user one (`$XDG_CACHE_HOME`).

    Install stamps and conda environments must outlive one run to be reused
    (an image's `--requirements-only` build step and its `--code-only` start
    are two runs), so unlike fetched code they always need one.
    """
    if config.cache_dir is not None:
        return config.cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).absolute() / "workspace-runner"


class Cache:
    """Finished entries under `root`; a `None` root means no caching."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def path(self, kind: str, *key: str) -> Path:
        """Where the entry for `key` lives (whether or not it exists yet)."""
        assert self.root is not None, "cache is not enabled"
        digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:24]
        return self.root / kind / digest

    def lookup(self, kind: str, *key: str) -> Path | None:
        """The finished entry for `key`, or None."""
        if self.root is None:
            return None
        entry = self.path(kind, *key)
        return entry if entry.is_dir() else None

    def fill(self, kind: str, key: tuple[str, ...], make: Callable[[Path], None]) -> Path:
        """Create the entry with `make(folder)` unless it exists; return its path."""
        entry = self.path(kind, *key)
        if entry.is_dir():
            log.info(f"using cached {kind} in {entry}")
            return entry
        entry.parent.mkdir(parents=True, exist_ok=True)
        remove_unlocked(entry.parent, PARTIAL)
        staging, lock = locked_mkdtemp(entry.parent, PARTIAL)
        try:
            make(staging)
            os.rename(staging, entry)
        except OSError:
            if not entry.is_dir():  # not just a concurrent run that won the race
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            os.close(lock)
        return entry

