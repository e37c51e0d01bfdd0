"""Code from version control: pip-style `git+`, `hg+`, `svn+` and `bzr+` URLs.

The URL is parsed once (`url.py`), then one backend per VCS fetches the
revision it names. The checkout goes to a temporary folder of the run or,
with `--cache-dir`, to a cache entry keyed by the URL (without credentials)
and the revision, looked up before anything is fetched, so the next start
of the same revision fetches nothing.
"""

from pathlib import Path

from runner import log
from runner.cache import Cache
from runner.config import Config
from runner.errors import ResolveError
from runner.scratch import Scratch
from runner.sources.base import CodeSource
from runner.sources.vcs.base import Backend
from runner.sources.vcs.bzr import BzrBackend
from runner.sources.vcs.git import GitBackend
from runner.sources.vcs.hg import HgBackend
from runner.sources.vcs.svn import SvnBackend
from runner.sources.vcs.url import VcsUrl, is_vcs_spec, parse

BACKENDS: dict[str, type[Backend]] = {
    b.name: b for b in (GitBackend, HgBackend, SvnBackend, BzrBackend)
}
#: The checkout's folder inside a temporary folder or cache entry.
CHECKOUT = "checkout"


class VcsSource(CodeSource):
    """A pip VCS URL; the revision it names, checked out."""

    name = "vcs"

    @classmethod
    def detect(cls, spec: str, config: Config) -> bool:
        return is_vcs_spec(spec)

    def __init__(self, spec: str, config: Config) -> None:
        super().__init__(spec, config)
        self.url: VcsUrl = parse(spec)  # registers its credentials as secrets
        self.backend = BACKENDS[self.url.vcs](self.url, config)
        self.name = self.url.vcs

    def fetch(self, scratch: Scratch) -> Path:
        backend = self.backend
        backend.check()
        cache = Cache(self.config.cache_dir)
        revision = None
        if cache.enabled:  # the cache key needs the revision before anything is fetched
            log.info(f"looking up {backend.wanted} of {self.url.display}")
            revision = backend.resolve()
        if revision:
            key = (self.url.vcs, self.url.url, revision)
            entry = cache.fill("vcs", key, lambda d: self._fetch(d / CHECKOUT, revision))
            checkout = entry / CHECKOUT
        else:
            checkout = scratch.mkdtemp(f"{self.url.vcs}-") / CHECKOUT
            revision = self._fetch(checkout, revision)
        log.info(f"{self.url.display}: {backend.wanted} is {backend.describe(revision)}")
        return self._code_root(checkout)

    def _fetch(self, dest: Path, revision: str | None) -> str:
        log.info(f"fetching {self.url.display} into {dest}")
        return self.backend.fetch(dest, revision)

    def _code_root(self, checkout: Path) -> Path:
        """The checkout, or its `#subdirectory=`, which must exist and stay inside it."""
        sub = self.url.subdirectory
        if sub is None:
            return checkout
        root = checkout / sub
        if not root.resolve().is_relative_to(checkout.resolve()):
            raise ResolveError(f"subdirectory {sub!r} of {self.url.display} is a link out of "
                               "the repository: give a folder inside it")
        if not root.exists():
            raise ResolveError(f"subdirectory {sub!r} does not exist in {self.url.display} at "
                               f"{self.backend.wanted}: give a path relative to the "
                               "repository root")
        return root
