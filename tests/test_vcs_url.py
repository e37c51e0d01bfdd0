"""pip's VCS URL grammar, table-driven: what each part of a URL becomes.

Where the grammar has corner cases, the answer is pip's own, measured with pip
23.2.1's `Link` and `Git.get_url_rev_and_auth` (and read in pip 25's
`models/link.py`, which has the same fragment rules); each such case below
says what pip answers.
"""

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
    # pip takes the fragment's value as written: `%20` is not decoded (a folder "my%20svc").
    "git+https://host/repo.git#egg=pkg&subdirectory=my%20svc":
        ("git", "https", "https://host/repo.git", None, "my%20svc", None, None),
    # pip: the first `subdirectory=` wins (`re.search(r"[#&]subdirectory=([^&]*)")`).
    "git+https://host/repo.git#subdirectory=a&subdirectory=b":
        ("git", "https", "https://host/repo.git", None, "a", None, None),
    # pip: an empty `subdirectory=` is "" and installs the repository root.
    "git+https://host/repo.git#subdirectory=":
        ("git", "https", "https://host/repo.git", None, None, None, None),
    # pip: schemes are case-insensitive (urlsplit lowers them; GIT+HTTPS is git+https).
    "GIT+HTTPS://host/repo.git@v1":
        ("git", "https", "https://host/repo.git", "v1", None, None, None),
    "Hg+File:///srv/hg@tip":
        ("hg", "file", "file:///srv/hg", "tip", None, None, None),
    # pip: scp-style with an absolute path (`git+ssh://` put in front, then taken off).
    "git+git@host:/srv/repos/x.git@v1":
        ("git", "ssh", "git@host:/srv/repos/x.git", "v1", None, None, None),
    # A user name alone is kept as the login (and is not a secret, see below).
    "bzr+ftp://user@host/b":
        ("bzr", "ftp", "ftp://host/b", None, None, "user", None),
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
    # pip hands `deploy:SEKRET@host:path` to git as it is; a password cannot work over ssh.
    "git+deploy:pw-Scp-4471@example.com:org/repo.git": "a password in an ssh URL cannot be used",
    # pip reads `oauth2:abc` as the host and `/pw...` as the path; the `/` must be %2F.
    "git+https://oauth2:abc/pw-Slash-5512@host/r.git":
        "@host/r.git has an unencoded /: write each / in it as %2F",
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


@pytest.mark.parametrize(("spec", "display"), [
    ("svn+ssh://me@host/repo/trunk@7", "svn+ssh://me@host/repo/trunk"),
    ("bzr+ssh://host/b/trunk", "bzr+ssh://host/b/trunk"),
    ("hg+ssh://me@host/r", "hg+ssh://me@host/r"),
    ("git+ssh://git@host/r.git@main", "git+ssh://git@host/r.git"),
    ("svn+https://host/repo/trunk", "svn+https://host/repo/trunk"),
])
def test_logs_and_errors_name_the_url_as_written(spec: str, display: str) -> None:
    """Every log and error line names the repository so: `svn+svn+ssh://...` it was."""
    assert parse(spec).display == display


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
    ("git+ssh://git:pw-Ssh-8812@host/r.git", "pw-Ssh-8812"),
    ("git+deploy:pw-Scp-8813@example.com:org/repo.git", "pw-Scp-8813"),
    ("git+https://oauth2:abc/pw-Slash-8814@host/r.git", "abc/pw-Slash-8814"),
    ("git+https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@host/r.git",
     "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
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


@pytest.mark.parametrize("spec", [
    "git+https://runner@bitbucket.org/org/r.git",
    "bzr+ftp://deployer@host/b",
])
def test_a_user_name_alone_is_not_a_secret(spec: str) -> None:
    """Only passwords and tokens are hidden: a plain login name stays readable in logs."""
    user = spec.split("://", 1)[1].split("@", 1)[0]
    parse(spec)
    assert log.redact(f"checked out as {user} in /home/{user}") == (
        f"checked out as {user} in /home/{user}")


def test_a_non_pep508_egg_fragment_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    """pip 23.2-25.1 warn (deprecated: "non-PEP 508 name") and go on; so does the runner."""
    u = parse("git+https://host/r.git#egg=my pkg&subdirectory=svc")
    assert u.subdirectory == "svc"
    assert "warning: #egg=my pkg in git+https://host/r.git#egg=my pkg&subdirectory=svc is " \
        "not a project name" in capsys.readouterr().err
