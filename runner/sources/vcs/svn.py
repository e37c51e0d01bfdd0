"""Subversion through the `svn` client (Debian's `subversion`).

Tags and branches are paths in the URL; a revision is a peg (`URL@N`), which
still finds a path deleted since. `svn export` gives the files without a
working copy. The revision that keys the cache is the path's last-changed
revision, so commits elsewhere in the repository do not invalidate it.
"""

from pathlib import Path

from runner.sources.vcs.base import Backend


class SvnBackend(Backend):
    name = "svn"
    binaries = ("svn",)
    install_hint = "apt-get install subversion"
    credentials_hint = "let svn remember them (svn info --username USER URL, once)"
    latest = "the latest revision"

    def _peg(self, rev: str | None) -> str:
        return f"{self.url.url}@{rev or 'HEAD'}"

    def resolve(self) -> str:
        ran = self.query([self.binary, "info", "--non-interactive", "--show-item",
                          "last-changed-revision", "--", self._peg(self.url.rev)])
        if not ran.ok:
            raise self.failed(ran.returncode, ran.tail)
        return ran.stdout.strip()

    def fetch(self, dest: Path, revision: str | None) -> str:
        number = revision or self.resolve()
        finished = self.run([self.binary, "export", "--non-interactive", "--",
                             self._peg(number), dest], cwd=dest.parent)
        if not finished.ok:
            raise self.failed(finished.returncode, finished.tail)
        return number

    def reachable(self) -> bool:
        return self.query([self.binary, "info", "--non-interactive", "--",
                           self._peg(None)]).ok
