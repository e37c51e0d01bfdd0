"""Streaming HTTP downloads shared by the lab and http(s) sources.

A download goes to disk in chunks (code archives can be large; never whole in
memory), with progress a user can follow, retries for what is worth retrying
(5xx, 429, connection errors, a body cut short) and a clear `ResolveError`
for what is not (401/403/404). `requests` is imported here, inside the
functions, so that the runner's start-up does not pay for it.
"""

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import log
from runner.config import Config
from runner.errors import ResolveError
from runner.progress import Progress, human

if TYPE_CHECKING:
    import requests

TRIES = 3
#: Seconds to wait before the 2nd and 3rd try: long enough for a restarting
#: server or a flaky link, short enough that a dead one fails fast.
BACKOFF = (1.0, 2.0)
CHUNK = 256 * 1024
#: The most bytes of a small JSON document read (ML Lab's file info is under 1 KB).
JSON_LIMIT = 2**20

#: Turns a refused request (status, the server's own short message) into the
#: text of the `error:` line; each source knows what the user should do.
Refusal = Callable[[int, str], str]


@dataclass(frozen=True)
class Request:
    """One remote file: where it is, how to ask for it, how to name it to the user."""

    url: str
    what: str
    refusal: Refusal
    params: Mapping[str, str] | None = None
    token: str | None = None


@dataclass(frozen=True)
class Downloaded:
    """A complete download on disk; `headers` look up case-insensitively."""

    size: int
    md5: str
    headers: Mapping[str, str]


class _Retry(Exception):
    """A failure another try may fix; the message says what happened."""


def get_json(req: Request, config: Config) -> Any:
    """GET a small JSON document (e.g. ML Lab's file info), with the same retries; at
    most JSON_LIMIT bytes of it are read (a server that is not ML Lab may send anything)."""

    def read(resp: "requests.Response") -> Any:
        body = bytearray()
        for chunk in resp.iter_content(CHUNK):
            body += chunk
            if len(body) > JSON_LIMIT:
                raise ResolveError(
                    f"{req.what}: the server's answer is over {JSON_LIMIT // 2**20} MB, not a "
                    "small JSON document: check the endpoint URL"
                )
        try:
            return json.loads(body)
        except ValueError:
            raise ResolveError(
                f"{req.what}: the server did not answer with JSON (HTTP {resp.status_code}, "
                f"{resp.headers.get('Content-Type', 'no content type')}): check the endpoint URL"
            ) from None

    return _with_retries(req, config, read, method="GET")


def head(req: Request, config: Config) -> Mapping[str, str] | None:
    """The headers a GET would get, or None when the server will not say (no retries).

    Used to find a cached copy by ETag/Last-Modified before downloading.
    """
    import requests

    try:
        with _session(req) as session:
            resp = session.head(req.url, params=req.params, allow_redirects=True,
                                timeout=_timeout(config))
    except (requests.RequestException, ValueError):  # ValueError: a malformed redirect
        return None
    return resp.headers if resp.ok else None  # case-insensitive, as HTTP/2 lowercases


def download(req: Request, dest: Path, config: Config) -> Downloaded:
    """Stream the file to `dest`; check it is complete; return its size and MD5."""

    def save(resp: "requests.Response") -> Downloaded:
        return _save(resp, dest, req.what, config)

    return _with_retries(req, config, save, method="GET")


def _with_retries(
    req: Request, config: Config, consume: Callable[["requests.Response"], Any], method: str
) -> Any:
    import requests

    log.add_secret(req.token)
    log.add_secret(_password(req.url))  # a server may echo it (a 401 body)
    last = ""
    for attempt in range(1, TRIES + 1):
        try:
            with _session(req) as session, _send(session, method, req, config) as resp:
                _check_status(resp, req)
                return consume(resp)
        except _Retry as exc:
            last = str(exc)
        except requests.Timeout:
            last = f"no answer for {config.network_timeout:g} s"
        except requests.exceptions.SSLError as exc:
            raise ResolveError(
                f"{req.what}: TLS/SSL failed ({_ssl_reason(exc)}): check the address, or the "
                "CA certificates (REQUESTS_CA_BUNDLE) for a private certificate authority"
            ) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            last = _connection_reason(exc, config)
        except requests.RequestException as exc:
            raise ResolveError(f"{req.what}: {_short(exc)}: check the address") from None
        if attempt < TRIES:
            delay = BACKOFF[attempt - 1]
            log.warn(f"{req.what}: {last}; trying again in {delay:g} s "
                     f"(try {attempt + 1} of {TRIES})")
            time.sleep(delay)
    raise ResolveError(
        f"{req.what}: {last} ({TRIES} tries): check the network and that the server is up, "
        "then run again"
    )


def _send(
    session: "requests.Session", method: str, req: Request, config: Config
) -> "requests.Response":
    """The request, redirects followed; a redirect to a malformed address is the server's
    error (requests parses the Location with urllib, which raises ValueError)."""
    try:
        return session.request(method, req.url, params=req.params, stream=True,
                               timeout=_timeout(config))
    except ValueError as exc:
        raise ResolveError(f"{req.what}: the server redirected to a malformed address "
                           f"({exc}): check the URL") from None


def _password(url: str) -> str | None:
    """The password in a URL's userinfo, as requests sends it (decoded)."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:  # e.g. a bad port: requests will say so
        return None
    return unquote(password) if password else None


def _session(req: Request) -> "requests.Session":
    import requests

    session = requests.Session()
    # Identity: byte counts then match Content-Length, and the file on disk is
    # exactly the stored file (whose MD5 ML Lab gives).
    session.headers["Accept-Encoding"] = "identity"
    if req.token:
        session.headers["Authorization"] = f"Bearer {req.token}"
    return session


def _timeout(config: Config) -> tuple[float, float]:
    """(connect, read) timeouts; the read timeout is per chunk: silence, not total time."""
    return (config.network_timeout, config.network_timeout)


def _check_status(resp: "requests.Response", req: Request) -> None:
    status = resp.status_code
    if 300 <= status < 400:  # what requests could not follow: no Location
        raise ResolveError(f"{req.what} answered HTTP {status} without a usable redirect: "
                           "check the URL")
    if status >= 500 or status == 429:
        raise _Retry(f"server error {status} {resp.reason}".rstrip())
    if status >= 400:
        raise ResolveError(req.refusal(status, _server_message(resp)))


def _server_message(resp: "requests.Response") -> str:
    """The server's own short explanation of a refusal, if it gives one."""
    import requests

    try:
        body = next(resp.iter_content(4096), b"").decode(errors="replace")
    except requests.RequestException:  # the explanation is optional
        return ""
    kind = resp.headers.get("Content-Type", "")
    if "json" in kind:
        try:
            data = json.loads(body)
        except ValueError:
            return ""
        errors = data.get("errors") if isinstance(data, dict) else None
        found = errors if isinstance(errors, dict) else data
        body = str(found.get("message") or "") if isinstance(found, dict) else ""
    elif "html" in kind:
        return ""
    return " ".join(body.split())[:200]


def _connection_reason(exc: Exception, config: Config) -> str:
    text = str(exc)
    if "timed out" in text:  # a read timeout in the middle of a body comes this way
        return f"no data for {config.network_timeout:g} s"
    if "IncompleteRead" in text or "Connection broken" in text:
        return "the connection broke during the download"
    if "refused" in text.lower():
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return "could not connect"


def _ssl_reason(exc: Exception) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "the server's certificate could not be verified"
    if "hostname" in text.lower() and "match" in text.lower():
        return "the certificate is for another host name"
    return "handshake failed"


def _short(exc: Exception) -> str:
    return type(exc).__name__ + (f" ({exc})" if str(exc) else "")


def _save(resp: "requests.Response", dest: Path, what: str, config: Config) -> Downloaded:
    import requests

    declared = resp.headers.get("Content-Length")
    total = int(declared) if declared and declared.isdigit() else None
    limit = config.max_download_bytes
    if total is not None and total > limit:
        raise _too_large(what, limit, f"the server says it is {human(total)}")
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    progress = Progress(what, total)
    try:
        with dest.open("wb") as out:
            for chunk in resp.iter_content(CHUNK):
                size += len(chunk)
                if size > limit:  # no Content-Length, or one that lies
                    raise _too_large(what, limit, "the server sent more")
                out.write(chunk)
                digest.update(chunk)
                progress.update(size)
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        if "timed out" in str(exc):
            raise _Retry(_connection_reason(exc, config)) from None
        raise _Retry(_cut_short(size, total)) from None
    except requests.exceptions.ContentDecodingError:  # an OSError too: not the disk's fault
        encoding = resp.headers.get("Content-Encoding", "")
        raise ResolveError(f"{what}: the server sent a body that does not decode as its "
                           f"Content-Encoding ({encoding}) says: check the server") from None
    except OSError as exc:
        raise ResolveError(f"{what}: cannot write the download to {dest.parent}: "
                           f"{exc.strerror or exc}: free some disk space") from None
    except ResolveError:
        dest.unlink(missing_ok=True)
        raise
    if total is not None and size != total and "Content-Encoding" not in resp.headers:
        raise _Retry(_cut_short(size, total))
    progress.done(size)
    return Downloaded(size, digest.hexdigest(), resp.headers)


def _too_large(what: str, limit: int, why: str) -> ResolveError:
    return ResolveError(
        f"{what} is over the download limit of {limit} bytes ({why}); nothing was kept: "
        "if that is expected, raise RUNNER_MAX_DOWNLOAD_BYTES"
    )


def _cut_short(size: int, total: int | None) -> str:
    if total is None:
        return f"the connection broke after {human(size)} of the download"
    return f"the download was cut short: the connection closed before all {human(total)} came"
