"""pip's VCS URL grammar: `vcs+scheme://[user[:pass]@]host/path[@rev][#subdirectory=dir]`.

Parsed the way pip documents it (and its `get_url_rev_and_auth` does), without
pip itself: the revision is what follows the last `@` in the URL *path*, so
`https://user:token@host/repo.git` holds credentials and `.../repo.git@v1.2` a
revision; `git+git@host:org/repo.git@main` is scp-style ssh. Credentials are
taken out of the URL (and registered as secrets at once) so that the URL a
client sees, or a log prints, never carries them. Only passwords and tokens
are secrets: a login name alone (`https://deploy@host/...`) is not hidden,
unless it looks like a token (`https://ghp_...@github.com/...`).

Where the grammar has corner cases the answer is pip's: schemes are
case-insensitive; the first `#subdirectory=` wins, taken as written (no
percent-decoding) and an empty one means the repository root; an `#egg=`
that is not a project name is warned about (pip 23.2-25.1 deprecate it).
"""

import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from runner import credentials, log
from runner.errors import ResolveError

#: The transports pip allows for each VCS.
SCHEMES: dict[str, tuple[str, ...]] = {
    "git": ("https", "http", "ssh", "git", "file"),
    "hg": ("https", "http", "ssh", "static-http", "file"),
    "svn": ("https", "http", "ssh", "svn", "file"),
    "bzr": ("https", "http", "ssh", "sftp", "ftp", "lp", "file"),
}
#: Transports whose `user@` is a login name (kept in the URL), not an HTTP credential.
LOGIN_SCHEMES = frozenset({"ssh", "sftp"})
#: Clients that spell ssh as their own scheme (`svn+ssh://`), as pip hands it to them.
CLIENT_SSH_SCHEME = frozenset({"svn", "bzr"})
_SCP = re.compile(r"^(?P<user>[^/:@]+)(?P<colon>:(?P<password>[^/@]*))?@(?P<host>[^/:@]+):"
                  r"(?P<path>.+)$")
#: pip's `[#&]subdirectory=([^&]*)` and `[#&]egg=([^&]*)`, searched: the first one wins.
_SUBDIRECTORY = re.compile(r"[#&]subdirectory=([^&]*)")
_EGG = re.compile(r"[#&]egg=([^&]*)")
#: PEP 508 project names, as pip checks `#egg=` (extras written after it are not part of it).
_PROJECT_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


@dataclass(frozen=True)
class VcsUrl:
    """One parsed VCS URL; `url` is what the client fetches: no rev, fragment or password."""

    vcs: str
    scheme: str
    url: str
    rev: str | None = None
    subdirectory: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def has_credentials(self) -> bool:
        return self.username is not None or self.password is not None

    @property
    def display(self) -> str:
        """How logs and errors name the repository (never with credentials).

        `svn+ssh://` and `bzr+ssh://` are their clients' own URLs: prefixed already.
        """
        prefix = f"{self.vcs}+"
        return self.url if self.url.startswith(prefix) else prefix + self.url


def is_vcs_spec(spec: str) -> bool:
    """Whether `spec` is written as a VCS URL at all (cheap, for `detect`)."""
    prefix, plus, rest = spec.partition("+")
    return bool(plus) and prefix.lower() in SCHEMES and bool(rest)


def parse(spec: str) -> VcsUrl:
    """Split a pip VCS URL into its parts; ResolveError (exit 3) when it is malformed."""
    prefix, _, rest = spec.partition("+")
    vcs = prefix.lower()
    if vcs not in SCHEMES:
        raise ResolveError(f"{log.redact(spec)} is not a VCS URL: start it with "
                           "git+, hg+, svn+ or bzr+")
    rest, hash_mark, fragment = rest.partition("#")
    subdirectory = _subdirectory(hash_mark + fragment, spec)
    scp = _SCP.match(rest) if vcs == "git" and "://" not in rest else None
    if scp:
        return _parse_scp(scp, subdirectory, spec)
    parts = credentials.split_url(rest, spec)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES[vcs]:
        allowed = ", ".join(f"{vcs}+{s}://" for s in SCHEMES[vcs])
        raise ResolveError(f"unsupported scheme {vcs}+{scheme or '(none)'}:// in "
                           f"{log.redact(spec)}: use one of {allowed}")
    credentials.check_userinfo(rest, spec, " (or pass a git token in GIT_TOKEN instead of the URL)")
    netloc, username, password = _split_userinfo(parts.netloc, scheme)
    credentials.register_query(parts.query)
    path, rev = _split_rev(parts.path, spec)
    url = urllib.parse.urlunsplit((scheme, netloc, path, parts.query, ""))
    if scheme == "ssh" and vcs in CLIENT_SSH_SCHEME:
        url = f"{vcs}+{url}"
    return VcsUrl(vcs, scheme, url, rev, subdirectory, username, password)


def _parse_scp(match: re.Match[str], subdirectory: str | None, spec: str) -> VcsUrl:
    """`git@host:org/repo.git@main`: ssh whose `user@` is the login, kept in the URL."""
    if match["colon"]:
        _refuse_ssh_password(match["password"], "ssh")
    path, rev = _split_rev(match["path"], spec)
    return VcsUrl("git", "ssh", f"{match['user']}@{match['host']}:{path}", rev, subdirectory)


def _refuse_ssh_password(password: str, scheme: str) -> None:
    log.add_secret(password)
    log.add_secret(urllib.parse.unquote(password))
    raise ResolveError(f"a password in an {scheme} URL cannot be used: "
                       "remove it and use an ssh key (ssh-agent) instead")


def _split_rev(path: str, spec: str) -> tuple[str, str | None]:
    """pip's rule: the revision follows the last `@` of the path, percent-decoded."""
    if "@" not in path:
        return path, None
    path, rev = path.rsplit("@", 1)
    if not rev:
        raise ResolveError(f"empty revision after @ in {log.redact(spec)}: put a branch, "
                           "tag or commit after the @, or leave the @ out")
    return path, urllib.parse.unquote(rev)


def _split_userinfo(netloc: str, scheme: str) -> tuple[str, str | None, str | None]:
    """Take `user:pass@` out of the host part; a login name on ssh stays.

    The password (or a lone user name that looks like a token) is registered
    as a secret before anything can print it; a plain login name is not.
    """
    if "@" not in netloc:
        return netloc, None, None
    userinfo, host = netloc.rsplit("@", 1)
    user, colon, password = userinfo.partition(":")
    user, password = urllib.parse.unquote(user), urllib.parse.unquote(password)
    if scheme in LOGIN_SCHEMES:
        if colon:
            _refuse_ssh_password(password, scheme)
        return netloc, None, None
    credentials.register(user, password if colon else None)
    return host, user or None, password if colon else None


def _subdirectory(fragment: str, spec: str) -> str | None:
    """`#subdirectory=dir` as pip reads it: the first one, as written; empty is the root.

    An `#egg=` that pip would deprecate is warned about (the runner does not
    use it). A value that could leave the checkout (absolute, `..`) is
    refused here, before anything is fetched.
    """
    egg = _EGG.search(fragment)
    if egg and not _PROJECT_NAME.match(egg[1]):
        log.warn(f"#egg={egg[1]} in {log.redact(spec)} is not a project name (pip deprecates "
                 "such fragments): remove it; the runner does not need it")
    match = _SUBDIRECTORY.search(fragment)
    found = match[1] if match else ""
    if not found:
        return None
    relative = PurePosixPath(found)
    if relative.is_absolute() or ".." in relative.parts:
        raise ResolveError(
            f"subdirectory {found!r} in {log.redact(spec)} is not a path inside the "
            "repository: give a relative path such as #subdirectory=services/api"
        )
    return str(relative)
