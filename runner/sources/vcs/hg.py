"""Mercurial through the `hg` client (from `pip install mercurial`).

`hg identify -r REV URL` names the changeset on the remote (it keys the
cache), then `hg clone -r NODE` brings that changeset and its ancestors only.
hg would read a URL `#fragment` as a revision; the parser has taken it off.
"""

from pathlib import Path

from runner.errors import ResolveError
from runner.sources.vcs.base import Backend


class HgBackend(Backend):
    name = "hg"
    binaries = ("hg",)
    install_hint = "pip install mercurial"
    credentials_hint = "put them in an [auth] section of ~/.hgrc"

    def environ(self) -> dict[str, str]:
        """HGPLAIN: the output we parse is not changed by the user's aliases or locale."""
        return {**super().environ(), "HGPLAIN": "1"}

    def resolve(self) -> str:
        """The changeset `@rev` names; without one, what `hg clone` checks out.

        That is the tip of the `default` branch, else (every commit on a named
        branch) the `@` bookmark or the tip: tried only when `default` is
        unknown, so the usual case costs one query.
        """
        for rev in [self.url.rev] if self.url.rev else ["default", "@", "tip"]:
            ran = self.query([self.binary, "identify", "--noninteractive", "--debug", "--id",
                              f"--rev={rev}", "--", self.url.url])
            if ran.ok or "unknown revision" not in " ".join(ran.tail.lines()):
                break
        if not ran.ok:
            raise self.failed(ran.returncode, ran.tail)
        node = ran.stdout.split()[0]
        if node.strip("0") == "":  # hg's null revision: the tip of an empty repository
            raise ResolveError(f"{self.url.display} has no commits (is it empty?): push a "
                               "commit, or name a revision with @")
        return node

    def fetch(self, dest: Path, revision: str | None) -> str:
        node = revision or self.resolve()
        finished = self.run([self.binary, "clone", "--noninteractive", f"--rev={node}",
                             f"--updaterev={node}", "--", self.url.url, dest], cwd=dest.parent)
        if not finished.ok:
            raise self.failed(finished.returncode, finished.tail)
        return node

    def reachable(self) -> bool:
        return self.query([self.binary, "identify", "--noninteractive", "--",
                           self.url.url]).ok

    def describe(self, revision: str) -> str:
        return f"changeset {revision}"
