"""pip's VCS URL grammar, table-driven: what each part of a URL becomes."""

import pytest

from runner import log
from runner.errors import ResolveError
from runner.sources.vcs.url import is_vcs_spec, parse

# spec -> (vcs, scheme, url, rev, subdirectory, username, password)
GOOD = {
    "git+https://github.com/org/repo.git":
        ("git", "https", "https://github.com/org/repo.git", None, None, None, None),
    "git+https://github.com/org/repo.git@v1.2":
        ("git", "https", "https://github.com/org/repo.git", "v1.2", None, None, None),
    "git+https://user:tok-S3cr3t-9f4b2e@github.com/org/repo.git":
        ("git", "https", "https://github.com/org/repo.git", None, None, "user",
         "tok-S3cr3t-9f4b2e"),
    "git+https://user:pw@host/repo.git@main#subdirectory=svc&egg=pkg":
        ("git", "https", "https://host/repo.git", "main", "svc", "user", "pw"),
    "git+https://ghp_token123@github.com/org/repo.git":
        ("git", "https", "https://github.com/org/repo.git", None, None, "ghp_token123", None),
    "git+https://u:p%40ss%3Aw@host/r.git":
        ("git", "https", "https://host/r.git", None, None, "u", "p@ss:w"),
    "git+HTTPS://host:8443/r.git@1a2b3c4":
        ("git", "https", "https://host:8443/r.git", "1a2b3c4", None, None, None),
    "git+http://127.0.0.1:8080/r.git@refs/pull/7/head":
        ("git", "http", "http://127.0.0.1:8080/r.git", "refs/pull/7/head", None, None, None),
    "git+ssh://git@github.com/org/repo.git@main":
        ("git", "ssh", "ssh://git@github.com/org/repo.git", "main", None, None, None),
    "git+git@github.com:org/repo.git@main":
        ("git", "ssh", "git@github.com:org/repo.git", "main", None, None, None),
    "git+git@github.com:org/repo.git#subdirectory=a/b":
        ("git", "ssh", "git@github.com:org/repo.git", None, "a/b", None, None),
    "git+git://host/repo.git@v2":
        ("git", "git", "git://host/repo.git", "v2", None, None, None),
    "git+file:///srv/repo@feature%2Fx":
        ("git", "file", "file:///srv/repo", "feature/x", None, None, None),
    "git+file:///srv/my@repo@v1":
        ("git", "file", "file:///srv/my@repo", "v1", None, None, None),
    "git+https://host/repo.git#egg=pkg&subdirectory=my%20svc":
        ("git", "https", "https://host/repo.git", None, "my svc", None, None),
    "git+https://host/repo.git#subdirectory=./svc/":
        ("git", "https", "https://host/repo.git", None, "svc", None, None),
    "git+https://host/repo.git?ref=x@v1":
        ("git", "https", "https://host/repo.git?ref=x@v1", None, None, None, None),
    "hg+https://hg.example.com/repo@default#egg=x":
        ("hg", "https", "https://hg.example.com/repo", "default", None, None, None),
    "hg+static-http://host/r@v1":
        ("hg", "static-http", "static-http://host/r", "v1", None, None, None),
    "hg+file:///srv/hg#subdirectory=svc":
        ("hg", "file", "file:///srv/hg", None, "svc", None, None),
    "svn+svn://svn.example.com/repo/trunk@2019":
        ("svn", "svn", "svn://svn.example.com/repo/trunk", "2019", None, None, None),
    "svn+file:///srv/svn/repo/tags/v1":
        ("svn", "file", "file:///srv/svn/repo/tags/v1", None, None, None, None),
    "svn+ssh://me@host/repo/trunk@{2024-01-31}":
        ("svn", "ssh", "svn+ssh://me@host/repo/trunk", "{2024-01-31}", None, None, None),
    "bzr+lp:myproject@42":
        ("bzr", "lp", "lp:myproject", "42", None, None, None),
    "bzr+file:///b/trunk@revid:a%40b-2020":
        ("bzr", "file", "file:///b/trunk", "revid:a@b-2020", None, None, None),
    "bzr+sftp://user@host/b/trunk@tag:v1":
        ("bzr", "sftp", "sftp://user@host/b/trunk", "tag:v1", None, None, None),
    "bzr+ssh://host/b/trunk":
        ("bzr", "ssh", "bzr+ssh://host/b/trunk", None, None, None, None),
    "hg+ssh://me@host/r":
        ("hg", "ssh", "ssh://me@host/r", None, None, None, None),
    "bzr+ftp://host/b":
        ("bzr", "ftp", "ftp://host/b", None, None, None, None),
}

BAD = {
    "git+ftp://host/repo.git": "unsupported scheme git+ftp:// in git+ftp://host/repo.git: use "
    "one of git+https://, git+http://, git+ssh://, git+git://, git+file://",
    "hg+git://host/r": "unsupported scheme hg+git://",
    "svn+lp:project": "unsupported scheme svn+lp://",
    "git+/srv/repo": "unsupported scheme git+(none)://",
    "git+https://host/r.git@": "empty revision after @ in git+https://host/r.git@",
    "git+https://host/r.git#subdirectory=../x": "subdirectory '../x' in",
    "git+https://host/r.git#subdirectory=/etc": "subdirectory '/etc' in",
    "git+https://host/r.git#subdirectory=a/../../b": "is not a path inside the repository",
    "git+https://host/r.git#subdirectory=": "subdirectory '' in",
    "git+ssh://git:pw-secret-1@host/r.git": "a password in an ssh URL cannot be used",
}


@pytest.mark.parametrize("spec", GOOD)
def test_parse(spec: str) -> None:
    u = parse(spec)
    assert (u.vcs, u.scheme, u.url, u.rev, u.subdirectory, u.username, u.password) == GOOD[spec]
    assert is_vcs_spec(spec)


@pytest.mark.parametrize("spec", BAD)
def test_parse_refuses(spec: str) -> None:
    with pytest.raises(ResolveError) as err:
        parse(spec)
    assert BAD[spec] in str(err.value)


@pytest.mark.parametrize(("spec", "expected"), [
    ("git+https://host/r.git", True),
    ("bzr+lp:x", True),
    ("git+", False),
    ("https://host/r.git", False),
    ("cvs+https://host/r", False),
    ("./git+stuff", False),
    ("gitlab+https://host/r", False),
    ("models/svc.py", False),
])
def test_is_vcs_spec(spec: str, expected: bool) -> None:
    assert is_vcs_spec(spec) is expected


@pytest.mark.parametrize(("spec", "secret"), [
    ("git+https://user:pw-Parse-7731@host/r.git", "pw-Parse-7731"),
    ("git+https://tok-Alone-5521@host/r.git", "tok-Alone-5521"),
    ("git+ssh://git:pw-Ssh-8812@host/r.git", "pw-Ssh-8812"),
])
def test_credentials_are_secrets_once_parsed(spec: str, secret: str) -> None:
    """Even a URL that is then refused has its password registered for redaction."""
    try:
        u = parse(spec)
    except ResolveError:
        u = None
    assert log.redact(f"git said: {secret} rejected") == "git said: *** rejected"
    if u is not None:
        assert secret not in repr(u) and secret not in u.display
