"""What every VCS backend shares, as pip's `vcs/versioncontrol.py` does for pip.

A backend answers two questions for one parsed URL: which revision `@rev`
names on the remote (`resolve`, cheap: it keys the cache before anything is
downloaded) and how to put that revision into a folder (`fetch`, which
returns the revision it checked out). Clients run as every child of the
runner does (`proc`: no shell, contained, TMPDIR in the run's scratch) and
are given up when they stay silent for the network timeout.
"""

import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from runner import log
from runner.config import Config
from runner.errors import ResolveError
from runner.output import Tail
from runner.proc import Finished, capture, run_tool
from runner.sources.vcs.url import VcsUrl


class Backend(ABC):
    """One VCS: its client, how to name a revision, how to fetch it."""

    #: The VCS as written before `+` in the URL.
    name: ClassVar[str]
    #: Client commands to look for on PATH, preferred first.
    binaries: ClassVar[tuple[str, ...]]
    #: How to install the client, for the error when it is missing.
    install_hint: ClassVar[str]
    #: Where the client keeps credentials, for URLs that carry them (None: the URL may).
    credentials_hint: ClassVar[str | None] = None
    #: What a URL without `@rev` gets.
    latest: ClassVar[str] = "the default branch"

    def __init__(self, url: VcsUrl, config: Config) -> None:
        self.url = url
        self.timeout = config.network_timeout
        self._binary: str | None = None

    @property
    def binary(self) -> str:
        """The client's full path; ResolveError naming the package when it is not installed."""
        if self._binary is None:
            found = next(filter(None, map(shutil.which, self.binaries)), None)
            if found is None:
                raise ResolveError(
                    f"{self.binaries[0]} is not installed, and {self.url.display} needs it: "
                    f"install it with `{self.install_hint}`"
                )
            self._binary = found
        return self._binary

    def check(self) -> None:
        """Refuse what this backend cannot do before any network traffic."""
        _ = self.binary
        self._refuse_options()
        if self.url.has_credentials and self.credentials_hint:
            raise ResolveError(
                f"credentials in {self.name}+ URLs are not supported (they would show in "
                f"the {self.binaries[0]} command line): remove them from the URL and "
                f"{self.credentials_hint}"
            )

    def _refuse_options(self) -> None:
        """A rev or URL starting with `-` would be read as a client option: refuse it.

        `--` is not enough: hg reads `--config` and `--debugger` anywhere in its
        arguments (`@--config=extensions.x=evil.py` would run evil.py), so the
        value never reaches a client. Revs are also passed as `--rev=VALUE`.
        """
        client = os.path.basename(self.binary)
        if self.url.rev and self.url.rev.startswith("-"):
            raise ResolveError(
                f"revision {self.url.rev!r} of {self.url.display} starts with '-': {client} "
                "would read it as an option; name a branch, tag or revision that does not "
                "start with '-'"
            )
        if self.url.url.startswith("-"):
            raise ResolveError(
                f"the URL {self.url.url} starts with '-': {client} would read it as an "
                "option; give a URL that starts with a scheme such as https://"
            )

    @abstractmethod
    def resolve(self) -> str | None:
        """The id of the revision `url.rev` names now, or None if only a fetch can tell.

        Called to key the cache; without a cache, `fetch` finds the revision itself.
        """

    @abstractmethod
    def fetch(self, dest: Path, revision: str | None) -> str:
        """Put `revision` (from `resolve`) into `dest` (not yet existing); return its id."""

    def describe(self, revision: str) -> str:
        """The resolved revision for the log line."""
        return f"revision {revision}"

    @property
    def wanted(self) -> str:
        """The revision as the user asked for it, for messages."""
        return f"revision {self.url.rev!r}" if self.url.rev else self.latest

    def environ(self) -> dict[str, str]:
        """The client's environment: ours plus what the backend adds."""
        return dict(os.environ)

    def query(self, argv: Sequence[str | os.PathLike[str]], cwd: Path | None = None,
              local: bool = False) -> Finished:
        """Run a client command and read its answer (not shown to the user).

        Only commands that talk to the remote get the network timeout; `local`
        work (a checkout) takes as long as it takes.
        """
        return capture(argv, cwd=cwd or Path.cwd(), env=self.environ(),
                       timeout=None if local else self.timeout)

    def run(self, argv: Sequence[str | os.PathLike[str]], cwd: Path) -> Finished:
        """Run a long client command (a checkout) with its output shown."""
        return run_tool(argv, cwd=cwd, env=self.environ(), timeout=self.timeout)

    def timed_out(self) -> ResolveError:
        return ResolveError(
            f"{self.url.display} did not answer for {self.timeout:g} s: check the URL and "
            "the network, or allow longer with --network-timeout (RUNNER_NETWORK_TIMEOUT)"
        )

    def failed(self, returncode: int | None, tail: Tail) -> ResolveError:
        """The error for a failed client run: the timeout, a missing revision or repository."""
        if returncode is None:
            return self.timed_out()
        if self.url.rev and self.reachable():
            return ResolveError(
                f"revision {self.url.rev!r} not found in {self.url.display}: give a branch, "
                f"tag or revision that exists there ({self.name} said: {log.redact(tail.quote(2))})"
            )
        return ResolveError(
            f"cannot read repository {self.url.display}: check the URL and your access to it "
            f"({self.name} said: {log.redact(tail.quote(2))})"
        )

    def reachable(self) -> bool:
        """Whether the repository itself can be read (to tell a bad revision from a bad URL)."""
        return False

