"""git through GitPython: the least history that gives the wanted commit.

A branch, a tag or the default branch is one `git clone --depth 1`; a full
40-hex commit (or a `refs/...` name) is fetched at depth 1 by itself; only a
short sha needs the whole history. A 2,000-commit repository with a large
blob deleted long ago then costs one commit's files. With a cache, an
`ls-remote` first names the commit that keys the entry.

Credentials (from the URL or `GIT_TOKEN`) reach git as an `http.extraHeader`
in `GIT_CONFIG_*` environment variables, scoped to the repository's host:
never an argument, never `.git/config` (whose remote URL has none), never a
log line. git runs as every child does (`proc`), not through GitPython's
`execute`, so that a remote that goes silent ends after the network timeout
(git's `--progress` keeps a healthy transfer talking) and git and everything
it starts end with the runner.
"""

import base64
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from runner import log
from runner.config import Config
from runner.errors import ResolveError
from runner.output import Tail
from runner.proc import Finished
from runner.sources.vcs.base import Backend
from runner.sources.vcs.url import VcsUrl

FULL_SHA = re.compile(r"[0-9a-fA-F]{40}")
SHORT_SHA = re.compile(r"[0-9a-fA-F]{4,39}")
_AUTH_FAILURES = ("authentication failed", "could not read username", "could not read password",
                  "terminal prompts disabled", "401", "403")


class GitBackend(Backend):
    name = "git"
    binaries = ("git",)
    install_hint = "apt-get install git"

    def __init__(self, url: VcsUrl, config: Config) -> None:
        super().__init__(url, config)
        self.token = os.environ.get("GIT_TOKEN") or None
        log.add_secret(self.token)
        self._header = self._auth_header()

    def _auth_header(self) -> str | None:
        """`Authorization: Basic ...` from the URL's credentials, else from GIT_TOKEN."""
        if self.url.scheme not in ("http", "https"):
            return None
        if self.url.has_credentials:
            pair = f"{self.url.username or ''}:{self.url.password or ''}"
        elif self.token:
            pair = f"x-access-token:{self.token}"
        else:
            return None
        encoded = base64.b64encode(pair.encode()).decode()
        log.add_secret(encoded)
        return f"Authorization: Basic {encoded}"

    def environ(self) -> dict[str, str]:
        """No prompts; git settings passed as GIT_CONFIG_* (after any the user set)."""
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        if not (env.get("GIT_SSH_COMMAND") or env.get("GIT_SSH")):
            env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
        settings = []
        if self._header:
            origin = self.url.url.split("://", 1)[0] + "://" + _host(self.url.url) + "/"
            settings.append((f"http.{origin}.extraHeader", self._header))
        if self.url.scheme == "file":  # submodules next to a local repository
            settings.append(("protocol.file.allow", "always"))
        count = env.get("GIT_CONFIG_COUNT", "")
        first = int(count) if count.isdigit() else 0
        for i, (key, value) in enumerate(settings, first):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        env["GIT_CONFIG_COUNT"] = str(first + len(settings))
        return env

    def git(self, args: Sequence[str | os.PathLike[str]], cwd: Path,
            local: bool = False) -> Finished:
        """Run git, contained as every child is (`proc.spawn`), reading its output ourselves.

        Only commands that talk to the remote get the network timeout.
        """
        return self.query([self.binary, *args], cwd, local)

    def resolve(self) -> str | None:
        """The commit `@rev` names, from `ls-remote`; None for a short sha."""
        rev = self.url.rev
        if rev and FULL_SHA.fullmatch(rev):
            return rev.lower()
        patterns = [rev, f"{rev}^{{}}"] if rev else ["HEAD"]  # a tag, and the commit it names
        ran = self.git(["ls-remote", "--", self.url.url, *patterns], Path.cwd())
        if not ran.ok:
            raise self.failed(ran.returncode, ran.tail)
        refs = dict(reversed(line.split("\t", 1)) for line in ran.stdout.splitlines() if line)
        names = (f"refs/heads/{rev}", f"refs/tags/{rev}^{{}}", f"refs/tags/{rev}", rev)
        for name in names if rev else ("HEAD",):
            if name in refs:
                return refs[name]
        if rev and SHORT_SHA.fullmatch(rev):
            return None
        if not rev:
            raise self._empty()
        raise self._no_such(rev)

    def fetch(self, dest: Path, revision: str | None) -> str:
        """One depth-1 clone for a branch, tag or the default branch; else a fetch.

        `revision` (from `resolve`, when caching) is what the cache entry is
        keyed by: if the branch moved since, that commit is fetched instead.
        """
        rev = self.url.rev
        if rev and (FULL_SHA.fullmatch(rev) or rev.startswith("refs/")):
            head = self._fetch_one(dest, rev)
        else:
            head = self._clone(dest, rev)
        if revision and head != revision:
            self._checked(self._fetch(dest, "--depth", "1", revision))
            head = self._checkout(dest, revision)
        if (dest / ".gitmodules").is_file():
            self._submodules(dest)
        return head

    def _clone(self, dest: Path, rev: str | None) -> str:
        # `@HEAD` is the default branch (as pip checks it out); `--branch=HEAD` finds none.
        branch = [f"--branch={rev}"] if rev and rev != "HEAD" else []
        ran = self.git(["clone", "--progress", "--depth", "1", *branch, "--", self.url.url, dest],
                       dest.parent)
        if rev and not ran.ok and "not found in upstream" in " ".join(ran.tail.lines()):
            if not SHORT_SHA.fullmatch(rev):
                raise self._no_such(rev)
            shutil.rmtree(dest, ignore_errors=True)
            return self._whole_history(dest, rev)
        self._checked(ran)
        return self._head(dest)

    def _fetch_one(self, dest: Path, rev: str) -> str:
        """A full sha (or a ref such as refs/pull/1/head) at depth 1."""
        self._init(dest)
        if self._fetch(dest, "--depth", "1", rev).ok:
            return self._checkout(dest, "FETCH_HEAD")
        return self._whole_history(dest, rev)

    def _whole_history(self, dest: Path, rev: str) -> str:
        """What a short sha needs (or a server that will not fetch a sha by itself)."""
        log.info(f"fetching the whole history of {self.url.display} to find {rev}")
        if not dest.exists():
            self._init(dest)
        self._checked(self._fetch(dest, "--tags", "+refs/heads/*:refs/remotes/origin/*"))
        found = self.git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], dest, True)
        if not found.ok:
            raise self._no_such(rev)
        return self._checkout(dest, found.stdout.strip())

    def _init(self, dest: Path) -> None:
        import git

        dest.mkdir(parents=True)
        git.Repo.init(dest).create_remote("origin", self.url.url)

    def _checkout(self, dest: Path, target: str) -> str:
        self._checked(self.git(["checkout", "-q", "--detach", target], dest, local=True))
        return self._head(dest)

    def _head(self, dest: Path) -> str:
        import git

        try:  # read from the ref files: no `git cat-file` process for one sha
            return git.SymbolicReference.dereference_recursive(git.Repo(dest), "HEAD")
        except ValueError:  # cloned, but no commit to check out
            raise self._empty() from None

    def _fetch(self, dest: Path, *args: str) -> Finished:
        """`git fetch` from the remote `origin`: options, then one refspec."""
        *options, refspec = args
        return self.git(["fetch", "--progress", *options, "--", "origin", refspec], dest)

    def _no_such(self, rev: str) -> ResolveError:
        return ResolveError(f"revision {rev!r} not found in {self.url.display}: give a branch, "
                            "tag or commit sha that exists there")

    def _empty(self) -> ResolveError:
        return ResolveError(f"{self.url.display} has no default branch (is it empty?): "
                            "push a commit, or name a branch or tag with @")

    def _submodules(self, dest: Path) -> None:
        log.info("initialising submodules")
        shallow = self.git(["submodule", "update", "--init", "--recursive", "--depth", "1",
                            "--progress"], dest)
        if shallow.ok:
            return
        full = self.git(["submodule", "update", "--init", "--recursive", "--progress"], dest)
        if full.returncode is None:
            raise self.timed_out()
        if not full.ok:  # the repository itself was read: its own errors would mislead
            raise ResolveError(
                f"a submodule of {self.url.display} could not be fetched: check its URL in "
                ".gitmodules and your access to it (git said: "
                f"{log.redact(full.tail.quote(2))})")

    def _checked(self, ran: Finished) -> None:
        if not ran.ok:
            raise self.failed(ran.returncode, ran.tail)

    def failed(self, returncode: int | None, tail: Tail) -> ResolveError:
        """git's own failures, told apart by what it printed."""
        text = " ".join(tail.lines()).lower()
        if returncode is not None and any(mark in text for mark in _AUTH_FAILURES):
            if self._header:
                return ResolveError(f"{self.url.display} refused the credentials given: check "
                                    "the token and its access to the repository")
            return ResolveError(f"{self.url.display} needs credentials: set GIT_TOKEN, or put "
                                "USER:TOKEN@ before the host in the URL")
        if returncode is not None and ("not found" in text or "does not appear" in text
                                       or "not a git repository" in text):
            return ResolveError(f"repository {self.url.display} not found: check the URL "
                                "(for a private repository set GIT_TOKEN)")
        return super().failed(returncode, tail)

    def describe(self, revision: str) -> str:
        return f"commit {revision}"


def _host(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]
