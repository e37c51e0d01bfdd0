"""A small ML Lab-compatible file server for the tests: the two routes of the contract.

`GET /api/projects/{project}/files/info?fileKey=KEY` answers
`{"data": {"key", "name", "size", "hash", "version", ...}}` and
`GET /api/projects/{project}/files/download?fileKey=KEY` streams the bytes;
both want `Authorization: Bearer TOKEN`. A key may end in a version suffix
(`models/svc.zip.v3`); without one the latest version is served. Errors use ML
Lab's unified format (`{"errors": {"code", "type", "message"}}`).

Test hooks make it misbehave the ways a real server or network can: answer
500 a number of times, close the connection halfway through a body, give a
wrong hash or a multipart-upload hash.

It runs in a thread of the test process (werkzeug's `make_server` on
127.0.0.1, port chosen by the kernel), so the runner under test reaches it
over real HTTP.
"""

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from flask import Flask, Response, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

_VERSION = re.compile(r"^(?P<key>.+)\.v(?P<version>\d+)$")


@dataclass
class Hooks:
    """Ways to misbehave; each test sets what it needs."""

    #: Answer this many of the next requests with 500.
    fail_times: int = 0
    #: Close the connection after half of every download body.
    truncate: bool = False
    #: Report a hash that is not the file's MD5.
    wrong_hash: bool = False
    #: Report a hash as ML Lab does for a multipart upload (`md5hex-N`).
    multipart_hash: bool = False
    #: Report a size one byte off.
    wrong_size: bool = False
    #: Answer every info request with this (content type, body), as a proxy's
    #: login page or a server that is not ML Lab would.
    info_answer: tuple[str, str] | None = None


@dataclass
class LabServer:
    """Files by (project, key), versions in upload order; tokens with the projects they read."""

    tokens: dict[str, set[str]]
    projects: set[str]
    files: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)
    hooks: Hooks = field(default_factory=Hooks)
    #: (route, fileKey, Authorization header) of every request, for assertions.
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app(), threaded=True,
                                   request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def upload(self, project: str, key: str, data: bytes) -> int:
        """Store a new version of `key`; return its version number (1, 2, ...)."""
        versions = self.files.setdefault((project, key), [])
        versions.append(data)
        return len(versions)

    def downloads(self) -> int:
        return sum(1 for route, _, _ in self.requests if route == "download")

    def start(self) -> "LabServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()

    def _app(self) -> Flask:
        app = Flask("labserver")

        @app.errorhandler(_Refused)
        def refused(exc: _Refused) -> tuple[Response, int]:
            return jsonify(errors={"code": exc.code, "type": exc.kind,
                                   "message": exc.message}), exc.code

        @app.get("/api/projects/<project>/files/info")
        def info(project: str) -> Response:
            key, version, data = self._lookup("info", project)
            if self.hooks.info_answer:
                return Response(self.hooks.info_answer[1], mimetype=self.hooks.info_answer[0])
            md5 = hashlib.md5(data).hexdigest()
            if self.hooks.wrong_hash:
                md5 = hashlib.md5(data + b"tampered").hexdigest()
            if self.hooks.multipart_hash:
                md5 = hashlib.md5(md5.encode()).hexdigest() + "-2"
            return jsonify(data={
                "key": f"{key}.v{version}", "name": key.rsplit("/", 1)[-1],
                "size": len(data) + self.hooks.wrong_size,
                "hash": md5, "version": version, "dataType": "file",
            })

        @app.get("/api/projects/<project>/files/download")
        def download(project: str) -> Response:
            _, _, data = self._lookup("download", project)
            headers = {"Content-Length": str(len(data))}
            body = data
            if self.hooks.truncate:
                body = data[: len(data) // 2]
                headers["Connection"] = "close"  # so the client sees the early end
            return Response(_chunks(body), headers=headers, mimetype="application/octet-stream")

        return app

    def _lookup(self, route: str, project: str) -> tuple[str, int, bytes]:
        """The (key, version, bytes) a request names; `_Refused` as ML Lab would refuse it."""
        key = request.args.get("fileKey", "")
        auth = request.headers.get("Authorization")
        with self._lock:
            self.requests.append((route, key, auth))
            if self.hooks.fail_times > 0:
                self.hooks.fail_times -= 1
                raise _Refused(500, "Internal Server Error", "simulated failure")
        token = auth[len("Bearer "):] if auth and auth.startswith("Bearer ") else None
        if token is None:
            raise _Refused(401, "Unauthorized", "No API token provided")
        if token not in self.tokens:
            raise _Refused(401, "Unauthorized", "Invalid API token")
        if project not in self.projects:
            raise _Refused(404, "Not Found", f"Project {project} does not exist")
        allowed = self.tokens[token]
        if "*" not in allowed and project not in allowed:
            raise _Refused(403, "Forbidden", f"No permission for project {project}")
        match = _VERSION.match(key)
        if match and (project, match["key"]) in self.files:
            versions = self.files[(project, match["key"])]
            number = int(match["version"])
            if 1 <= number <= len(versions):
                return match["key"], number, versions[number - 1]
        elif (project, key) in self.files:
            versions = self.files[(project, key)]
            return key, len(versions), versions[-1]
        raise _Refused(404, "Not Found", f"File {key} does not exist in project {project}")


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


class _QuietHandler(WSGIRequestHandler):
    """No access log: the tests assert on `LabServer.requests` instead."""

    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


class _Refused(Exception):
    """An error answer in ML Lab's unified format."""

    def __init__(self, code: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.code, self.kind, self.message = code, kind, message
