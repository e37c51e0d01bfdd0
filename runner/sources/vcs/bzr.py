"""Bazaar through Breezy's `brz` client (`pip install breezy`).

Branches are separate URLs (`.../trunk`, `.../dev`); `@rev` is any Breezy
revision spec (`3`, `tag:v1`, `v1`, `revid:...`, whose `@` is written `%40`
in the URL). `brz revision-info` names the revision, `brz export` writes its
files without a branch.
"""

from pathlib import Path

from runner.config import Config
from runner.sources.vcs.base import Backend
from runner.sources.vcs.url import VcsUrl


class BzrBackend(Backend):
    name = "bzr"
    binaries = ("brz", "bzr")
    install_hint = "pip install breezy"
    credentials_hint = "put them in ~/.config/breezy/authentication.conf"
    latest = "the latest revision"

    def __init__(self, url: VcsUrl, config: Config) -> None:
        super().__init__(url, config)
        self.revno: str | None = None

    def resolve(self) -> str:
        argv = [self.binary, "revision-info", f"--directory={self.url.url}"]
        ran = self.query([*argv, f"--revision={self.url.rev}"] if self.url.rev else argv)
        if not ran.ok:
            raise self.failed(ran.returncode, ran.tail)
        self.revno, revid = ran.stdout.split()[:2]
        return revid

    def fetch(self, dest: Path, revision: str | None) -> str:
        revid = revision or self.resolve()
        finished = self.run([self.binary, "export", f"--revision=revid:{revid}", "--", dest,
                             self.url.url], cwd=dest.parent)
        if not finished.ok:
            raise self.failed(finished.returncode, finished.tail)
        return revid

    def reachable(self) -> bool:
        return self.query([self.binary, "revision-info", f"--directory={self.url.url}"]).ok

    def describe(self, revision: str) -> str:
        return f"revision {self.revno} ({revision})" if self.revno else f"revision {revision}"
