"""URL credentials: registered as secrets before any tool or message can show them.

Shared by every source that takes a URL (VCS, http) and by the install steps
that pass URLs on to pip, so it imports nothing of them: a `--code-only`
start that loads the requirements step must not import the VCS backends.
"""

import urllib.parse

from runner import log
from runner.errors import ResolveError

#: Query parameters that carry a credential (S3 and GCS presigned links, Azure SAS, tokens).
QUERY_SECRETS = frozenset({
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
    "x-goog-credential", "signature", "sig", "token", "access_token", "auth", "api_key",
    "apikey", "key", "password", "secret",
})


def check_userinfo(url: str, spec: str, instead: str = "") -> None:
    """Refuse `scheme://user:pa/ss@host/...`: a password with an unencoded `/`.

    URL parsers (pip's too) end the host at the first `/`, so such a URL would
    put `user:pa` in the host and the rest of the password in the path, where
    it reaches a client's argument list and every message. The password is
    registered as a secret before the error names the URL; `instead` is
    another way to give it, for the error.
    """
    password = _slashed_password(split_url(url, spec))
    if password is None:
        return
    log.add_secret(password)
    log.add_secret(urllib.parse.unquote(password))
    raise ResolveError(f"the password in {log.redact(spec)} has an unencoded /: write each / "
                       f"in it as %2F{instead}")


def split_url(url: str, spec: str) -> urllib.parse.SplitResult:
    """`urlsplit`, with a malformed host (`https://[::1/x`) an `error:` line, not a traceback."""
    try:
        return urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise ResolveError(f"{log.redact(spec)} is not a valid URL ({exc}): "
                           "check the address") from None


def _slashed_password(parts: urllib.parse.SplitResult) -> str | None:
    """The password of `user:pa/ss@host`: a "port" that is no number, an `@` later on."""
    if "@" in parts.netloc or ":" not in parts.netloc or "@" not in parts.path:
        return None
    port = parts.netloc.rsplit(":", 1)[1]
    if not port or port.isdigit():
        return None
    return port + parts.path.split("@", 1)[0]


def register_credentials(url: str) -> None:
    """Register the password (or a lone token) of a URL as a secret; change nothing.

    For URLs the runner does not parse itself (an http download, a line of a
    requirements file that pip fetches), so that what their tools print is
    redacted too. A password with an unencoded `/` is registered whole.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # a malformed host: its tool says so; log still hides `user:pass@`
        return
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        user, colon, password = userinfo.partition(":")
        register(urllib.parse.unquote(user), urllib.parse.unquote(password) if colon else None)
    else:
        log.add_secret(_slashed_password(parts))
    register_query(parts.query)


def register_query(query: str) -> None:
    """Register the credentials of a signed link: `X-Amz-Signature=`, `sig=`, `token=`, ...

    A value is a secret when its parameter's name says so, or when it has a
    token's shape (a value of 20+ letters and digits, as `looks_like_token`).
    Registered as written and decoded: a log shows the URL as written, a
    server may echo either.
    """
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if value and (name.lower() in QUERY_SECRETS or log.looks_like_token(value)):
            log.add_secret(value)
            log.add_secret(urllib.parse.unquote_plus(value))


def register(user: str, password: str | None) -> None:
    """A password is a secret; a user name alone only when it looks like a token."""
    if password is not None:
        log.add_secret(password)
        log.add_secret(urllib.parse.quote(password, safe=""))
    elif log.looks_like_token(user):
        log.add_secret(user)
