"""Code at an http(s) URL: a single `.py` script or an archive of packaged code."""

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from runner import log
from runner.config import Config
from runner.credentials import check_userinfo, register_credentials
from runner.scratch import Scratch
from runner.sources.base import CodeSource

if TYPE_CHECKING:
    from collections.abc import Mapping


class HttpSource(CodeSource):
    """An http:// or https:// URL; what it is comes from its name, else its content."""

    name = "http"

    @classmethod
    def detect(cls, spec: str, config: Config) -> bool:
        return spec.lower().startswith(("http://", "https://"))

    def __init__(self, spec: str, config: Config) -> None:
        super().__init__(spec, config)
        check_userinfo(spec, spec)
        register_credentials(spec)  # a server may echo the password (in a 401 body)
        self.what = log.redact(spec)

    def fetch(self, scratch: Scratch) -> Path:
        from runner import code_cache, download

        req = download.Request(url=self.spec, what=self.what, refusal=self._refusal)
        if self.config.cache_dir:
            headers = download.head(req, self.config)
            if headers:
                found = code_cache.cached(self._file_name(headers), self.what, self.config,
                                       self._cache_key(headers))
                if found:
                    return found
        dest = scratch.mkdtemp("download-") / "file"
        got = download.download(req, dest, self.config)
        cache_key = self._cache_key(got.headers) if self.config.cache_dir else None
        if self.config.cache_dir and not cache_key:
            log.info(f"not caching {self.what}: the server sends no ETag or Last-Modified")
        return code_cache.place(dest, self._file_name(got.headers), self.what, self.config,
                             scratch, cache_key)

    def _file_name(self, headers: "Mapping[str, str]") -> str:
        """The URL path's last part, or the server's Content-Disposition file name."""
        from email.message import Message  # not at start-up: it pulls in socket, datetime

        name = PurePosixPath(unquote(urlsplit(self.spec).path)).name
        disposition = headers.get("Content-Disposition")
        if disposition:
            message = Message()
            message["Content-Disposition"] = disposition
            name = message.get_filename() or name
        return name

    def _cache_key(self, headers: "Mapping[str, str]") -> tuple[str, ...] | None:
        """URL + ETag (or Last-Modified) names one version of the file."""
        validator = headers.get("ETag") or headers.get("Last-Modified")
        return ("http", self.spec, validator) if validator else None

    def _refusal(self, status: int, said: str) -> str:
        why = f"HTTP {status}" + (f": {said}" if said else "")
        if status in (401, 403) and urlsplit(self.spec).username is not None:
            return (f"{self.what} refused the download ({why}): check the user and password "
                    "in the URL")
        if status in (401, 403):
            return (f"{self.what} refused the download ({why}): the URL needs a login; put it "
                    "in the URL (https://user:token@host/...) or use a public or signed link")
        if status in (404, 410):
            return f"{self.what} was not found ({why}): check the URL"
        return f"{self.what} refused the download ({why}): check the URL"
