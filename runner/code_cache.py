"""Where unpacked downloads live: a cache entry later runs reuse, else a scratch folder.

Unpacking (`archive`) knows nothing of caching; this module decides where
the unpacked code goes and finds it again by the download's cache key (lab
key + hash, URL + ETag).
"""

from pathlib import Path

from runner import archive, log
from runner.cache import Cache
from runner.config import Config
from runner.scratch import Scratch


def place(
    file: Path, name: str, what: str, config: Config, scratch: Scratch,
    cache_key: tuple[str, ...] | None,
) -> Path:
    """Unpack a download into the cache entry for `cache_key`, else into a scratch folder.

    The downloaded file is removed as soon as it is unpacked: large archives
    should not take their disk space twice for the whole run.
    """
    cache = Cache(config.cache_dir)
    try:
        if cache.enabled and cache_key:
            entry = cache.fill("code", cache_key,
                               lambda staging: archive.unpack(file, name, staging, config, what))
            return archive.code_path(entry, name, what)
        return archive.unpack(file, name, scratch.mkdtemp("code-"), config, what)
    finally:
        file.unlink(missing_ok=True)


def cached(name: str, what: str, config: Config, cache_key: tuple[str, ...] | None) -> Path | None:
    """The code path of an earlier run's unpacked download, if the cache has it."""
    if not cache_key:
        return None
    entry = Cache(config.cache_dir).lookup("code", *cache_key)
    if entry is None:
        return None
    log.info(f"using cached {what} from {entry}")
    return archive.code_path(entry, name, what)

