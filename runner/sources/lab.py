"""Code uploaded to ML Lab as data: a single script or packaged code, named by its key.

ML Lab's file API (see the contract): `files/info` gives the name, version and
hash of a key (`models/svc.zip`, or `models/svc.zip.v3` for one version),
`files/download` streams the bytes; both take the token as `Bearer`.
"""

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from runner import log
from runner.config import Config
from runner.errors import ResolveError
from runner.scratch import Scratch
from runner.sources.base import CodeSource
from runner.sources.vcs.url import is_vcs_spec

if TYPE_CHECKING:
    from runner import download

_VERSION_SUFFIX = re.compile(r"\.v\d+$")
_MD5 = re.compile(r"[0-9a-f]{32}")
_MULTIPART_MD5 = re.compile(r"[0-9a-f]{32}-\d+")


class LabSource(CodeSource):
    """A data key of the ML Lab project in `LAB_PROJECT` at `LAB_ENDPOINT`."""

    name = "lab"

    @classmethod
    def detect(cls, spec: str, config: Config) -> bool:
        return (
            bool(config.lab_endpoint)
            and "://" not in spec
            and not is_vcs_spec(spec)
            and not Path(spec).exists()
        )

    def __init__(self, spec: str, config: Config) -> None:
        super().__init__(spec, config)
        log.add_secret(config.lab_token)
        self.endpoint = (config.lab_endpoint or "").rstrip("/")
        self.project = config.lab_project or ""
        self.what = f"ML Lab file {spec!r} of project {self.project!r}"

    def fetch(self, scratch: Scratch) -> Path:
        from runner import code_cache, download

        if not self.project:
            raise ResolveError(
                f"{self.spec} is not a local path, and LAB_PROJECT is not set to look it up as "
                "an ML Lab data key: set LAB_PROJECT to the project that holds it"
            )
        info = self._info()
        key = str(info.get("key") or self.spec)
        name = _VERSION_SUFFIX.sub("", str(info.get("name") or key.rsplit("/", 1)[-1]))
        expected = str(info.get("hash") or "").strip('"').lower()
        cache_key = self._cache_key(key, info.get("version"), expected)
        found = code_cache.cached(name, self.what, self.config, cache_key)
        if found:
            return found
        dest = scratch.mkdtemp("download-") / "file"
        got = download.download(self._request("download", key), dest, self.config)
        self._verify(got, expected, info.get("size"))
        return code_cache.place(dest, name, self.what, self.config, scratch, cache_key)

    def _request(self, route: str, key: str) -> "download.Request":
        from runner import download

        return download.Request(
            url=f"{self.endpoint}/api/projects/{quote(self.project, safe='')}/files/{route}",
            params={"fileKey": key},
            token=self.config.lab_token,
            what=self.what,
            refusal=self._refusal,
        )

    def _info(self) -> dict[str, object]:
        from runner import download

        body = download.get_json(self._request("info", self.spec), self.config)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise ResolveError(
                f"{self.what}: the file info from {self.endpoint} has no `data`: "
                "check that LAB_ENDPOINT is the address of ML Lab"
            )
        return data

    def _cache_key(self, key: str, version: object, expected: str) -> tuple[str, ...] | None:
        """Key + version + hash name one stored file; without both, nothing is cached."""
        if not self.config.cache_dir:
            return None
        if version is None and not expected:
            log.info(f"not caching {self.what}: ML Lab gives neither its version nor its hash")
            return None
        return ("lab", self.endpoint, self.project, key, str(version), expected)

    def _verify(self, got: "download.Downloaded", expected: str, size: object) -> None:
        """Check the download against ML Lab's size and hash (its storage ETag)."""
        if isinstance(size, int) and size != got.size:
            raise ResolveError(
                f"{self.what} is damaged: got {got.size} bytes but ML Lab says {size}: "
                "run again; if it keeps failing, upload the file again"
            )
        if _MD5.fullmatch(expected):
            if got.md5 != expected:
                raise ResolveError(
                    f"{self.what} is damaged: its MD5 is {got.md5} but ML Lab's hash is "
                    f"{expected}: run again; if it keeps failing, upload the file again"
                )
            log.info(f"MD5 of {self.what} matches ML Lab's hash")
        elif _MULTIPART_MD5.fullmatch(expected):
            log.info(f"ML Lab's hash {expected} is of a multipart upload and cannot be checked "
                     "against the file's MD5: going on without a hash check")
        else:
            log.warn(f"ML Lab gives no MD5 for {self.what} (hash {expected or 'missing'}): "
                     "going on without a hash check")

    def _refusal(self, status: int, said: str) -> str:
        why = f"HTTP {status}" + (f": {said}" if said else "")
        if status == 401 and not self.config.lab_token:
            return (f"ML Lab at {self.endpoint} wants an API token ({why}): "
                    "set LAB_API_TOKEN to your ML Lab API token")
        if status == 401:
            return (f"ML Lab at {self.endpoint} refused LAB_API_TOKEN ({why}): the token is "
                    "wrong or expired; set LAB_API_TOKEN to a valid ML Lab API token")
        if status == 403:
            return (f"LAB_API_TOKEN has no access to project {self.project!r} on ML Lab ({why}): "
                    "use a token of that project, or check LAB_PROJECT")
        if status == 404:
            return (f"{self.spec} is not a local path, and ML Lab has no file with that key in "
                    f"project {self.project!r} ({why}): check the key, LAB_PROJECT and "
                    "LAB_ENDPOINT")
        return f"ML Lab refused {self.what} ({why}): check the key and LAB_PROJECT"
