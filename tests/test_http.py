"""Code from http(s) URLs: the real runner against a real file server on 127.0.0.1.

The server is a small Flask app (files with ETag/Last-Modified as any static
server sends them, a Basic-auth folder, a slow route for progress lines, a
route that names its file only in Content-Disposition), run in a thread.
"""

import contextlib
import io
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from archives import service, tar_bytes, zip_bytes
from flask import Flask, Response, abort, request, send_from_directory
from helpers import TEST_SECRETS, RunnerProcess, run_runner, serve_once, wait_for
from werkzeug.serving import WSGIRequestHandler, make_server

from runner import download, log, progress
from runner.config import Config

PASSWORD = TEST_SECRETS[0]


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


class FileServer:
    """Serves `root` under /files/, /private/ (Basic auth), /slow/ and /download.

    With `tls` (a (cert, key) pair) it speaks https.
    """

    def __init__(self, root: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.root = root
        self.seen: list[tuple[str, str]] = []
        self.scheme = "https" if tls else "http"
        self._server = make_server("127.0.0.1", 0, self._app(), threaded=True,
                                   request_handler=_Quiet, ssl_context=tls)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_port}"

    def gets(self) -> int:
        return sum(1 for method, _ in self.seen if method == "GET")

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()

    def _app(self) -> Flask:
        app = Flask("fileserver")

        @app.before_request
        def record() -> None:
            self.seen.append((request.method, request.path))

        @app.get("/files/<path:name>")
        def files(name: str) -> Response:
            return send_from_directory(self.root, name)

        @app.get("/private/<path:name>")
        def private(name: str) -> Response:
            auth = request.authorization
            if not auth or auth.password != PASSWORD:
                return Response("login required", 401, {"WWW-Authenticate": "Basic"},
                                mimetype="text/plain")
            return send_from_directory(self.root, name)

        @app.get("/download")
        def named() -> Response:
            data = (self.root / request.args["id"]).read_bytes()
            return Response(data, headers={
                "Content-Disposition": f'attachment; filename="{request.args["id"]}"'})

        @app.get("/disposed")
        def disposed() -> Response:
            """The script, under whatever file name `?as=` says (percent-encoded, RFC 5987)."""
            return Response((self.root / "svc.py").read_bytes(), headers={
                "Content-Disposition": f"attachment; filename*=UTF-8''{request.args['as']}"})

        @app.get("/careless/<kind>/svc.py")
        def careless(kind: str) -> Response:
            """Answers a client cannot use: a redirect to nowhere, a body that says it is
            gzip and is not."""
            if kind == "no-location":
                return Response("", 302)
            return Response(b"print('not gzip')\n", headers={"Content-Encoding": "gzip"})

        @app.get("/slow/<name>")
        def slow(name: str) -> Response:
            if not (self.root / name).is_file():
                abort(404)
            data = (self.root / name).read_bytes()
            seconds = float(request.args.get("seconds", "1"))
            pieces = 20

            def trickle() -> Iterator[bytes]:
                step = len(data) // pieces + 1
                for start in range(0, len(data), step):
                    yield data[start:start + step]
                    time.sleep(seconds / pieces)  # a slow link, on purpose

            return Response(trickle(), headers={"Content-Length": str(len(data))})

        @app.get("/echo/<path:name>")
        def echo(name: str) -> Response:
            """A careless server: its 401 says the password it was sent."""
            auth = request.authorization
            said = auth.password if auth else "nothing"
            return Response(f"wrong password {said}", 401, mimetype="text/plain")

        @app.get("/endless.tgz")
        def endless() -> Response:
            """A body that never ends, with no Content-Length (chunked)."""

            def forever() -> Iterator[bytes]:
                block = b"\0" * 65536
                while True:
                    yield block

            return Response(forever())

        @app.get("/huge.tgz")
        def huge() -> Response:
            """Declares 5 GiB; sends a little (a client must refuse before reading)."""
            return Response(iter([b"x" * 1000]), headers={"Content-Length": str(5 * 1024**3)})

        return app


@pytest.fixture
def files(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "served"
    root.mkdir()
    (root / "svc.py").write_bytes(service("script over http"))
    (root / "svc.tar.gz").write_bytes(tar_bytes({"svc/__main__.py": service("tar over http")}))
    (root / "svc.zip").write_bytes(zip_bytes({"__main__.py": service("zip over http")}))
    (root / "readme.txt").write_text("not code\n")
    (root / "big.bin").write_bytes(os.urandom(400_000))
    server = FileServer(root)
    yield server
    server.stop()


def test_script_url_is_served(files: FileServer, tmp: Path) -> None:
    reply, _ = serve_once([f"{files.url}/files/svc.py"], env={"TMPDIR": str(tmp)}, timeout=30)
    assert reply == "script over http"
    assert list(tmp.iterdir()) == []


def test_zip_named_only_by_content_disposition(files: FileServer, tmp: Path) -> None:
    url = f"{files.url}/download?id=svc.zip"
    reply, _ = serve_once([url], env={"TMPDIR": str(tmp)}, timeout=30)
    assert reply == "zip over http"


@pytest.mark.parametrize("name", ["svc%2500.py", "a" * 300 + ".py", ".py"],
                         ids=["nul", "too-long", "no-stem"])
def test_a_script_under_a_file_name_the_system_refuses_still_runs(
    files: FileServer, tmp: Path, name: str
) -> None:
    """The server names the file; a name no file can have was a traceback (ValueError,
    'File name too long') or 'not a Python script': the script is saved as main.py."""
    url = f"{files.url}/disposed?as={name}"
    reply, _ = serve_once([url], env={"TMPDIR": str(tmp)}, timeout=30)
    assert reply == "script over http"
    assert list(tmp.iterdir()) == []


def test_tar_gz_url_cached_by_etag(files: FileServer, tmp: Path, tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp), "RUNNER_CACHE_DIR": str(tmp_path / "cache")}
    url = f"{files.url}/files/svc.tar.gz"
    assert serve_once([url], env=env, timeout=30)[0] == "tar over http"
    assert files.gets() == 1
    reply, again = serve_once([url], env=env, timeout=30)
    assert reply == "tar over http"
    assert files.gets() == 1, "the second run downloaded again instead of using the cache"
    assert ("HEAD", "/files/svc.tar.gz") in files.seen
    assert "using cached" in again.stderr
    assert list(tmp.iterdir()) == []


def test_credentials_in_url_work_and_never_show(files: FileServer, tmp: Path) -> None:
    url = files.url.replace("http://", f"http://me:{PASSWORD}@") + "/private/svc.py"
    reply, runner = serve_once([url], env={"TMPDIR": str(tmp)}, timeout=30)
    assert reply == "script over http"
    assert "http://me:***@127.0.0.1" in runner.stderr  # and finish() found no secret


@pytest.mark.parametrize(("path", "password", "parts"), [
    ("/files/missing.zip", None, ["/files/missing.zip was not found (HTTP 404", "check the URL"]),
    ("/private/svc.py", TEST_SECRETS[1],
     ["http://me:***@127.0.0.1", "/private/svc.py refused the download (HTTP 401: login required)",
      "check the user and password in the URL"]),
    ("/files/readme.txt", None,
     ["/files/readme.txt is neither a Python script nor a known archive"]),
    ("/careless/no-location/svc.py", None,  # was saved, an empty body, and run
     ["/careless/no-location/svc.py answered HTTP 302 without a usable redirect: check the URL"]),
    ("/careless/gzip/svc.py", None,  # said "cannot write the download: free some disk space"
     ["/careless/gzip/svc.py: the server sent a body that does not decode as its "
      "Content-Encoding (gzip) says: check the server"]),
])
def test_bad_url_exits_3(
    files: FileServer, tmp: Path, path: str, password: str | None, parts: list[str]
) -> None:
    base = files.url.replace("http://", f"http://me:{password}@") if password else files.url
    runner = run_runner([base + path], env={"TMPDIR": str(tmp)}, timeout=60)
    assert runner.proc.returncode == 3
    line = runner.error_line()
    for part in parts:
        assert part in line, f"{part!r} not in {line!r}"
    assert list(tmp.iterdir()) == []


@contextlib.contextmanager
def raw_server(answer: bytes) -> Iterator[int]:
    """A server on 127.0.0.1 that answers every request with `answer` as it is: a header
    no HTTP library would write (Flask's refuses a malformed Location). Yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        # shutdown() first: close() alone leaves the thread's accept() waiting, and the
        # port listening, answering some later test's connection with `answer`
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=10)


@pytest.mark.parametrize("cache", [False, True], ids=["get", "head-for-the-cache"])
def test_a_redirect_to_a_malformed_address_exits_3(
    tmp: Path, tmp_path: Path, cache: bool
) -> None:
    """Was a ValueError traceback: requests parses the Location with urllib."""
    answer = b"HTTP/1.1 302 Found\r\nLocation: http://[::1/svc.py\r\nContent-Length: 0\r\n\r\n"
    env = {"TMPDIR": str(tmp), **({"RUNNER_CACHE_DIR": str(tmp_path / "c")} if cache else {})}
    with raw_server(answer) as port:
        runner = run_runner([f"http://127.0.0.1:{port}/svc.py"], env=env, timeout=60)
    assert runner.proc.returncode == 3
    assert runner.error_line() == (
        f"error: http://127.0.0.1:{port}/svc.py: the server redirected to a malformed "
        "address (Invalid IPv6 URL): check the URL")
    assert list(tmp.iterdir()) == []


def test_stopped_mid_download_leaves_nothing(files: FileServer, tmp: Path) -> None:
    runner = RunnerProcess([f"{files.url}/slow/big.bin?seconds=30"], env={"TMPDIR": str(tmp)})
    try:
        wait_for(lambda: ("GET", "/slow/big.bin") in files.seen, 20, "the download to start")
        wait_for(lambda: list(tmp.iterdir()), 10, "the runner's temp folder")
        runner.signal(signal.SIGTERM)
        assert runner.finish(timeout=20) == 128 + signal.SIGTERM
    finally:
        runner.kill()
    assert "stopped by SIGTERM before the service started" in runner.stderr
    assert list(tmp.iterdir()) == []


def test_silent_server_times_out_after_tries(files: FileServer, tmp: Path) -> None:
    env = {"TMPDIR": str(tmp), "RUNNER_NETWORK_TIMEOUT": "0.5"}
    runner = run_runner([f"{files.url}/slow/big.bin?seconds=40"], env=env, timeout=60)
    assert runner.proc.returncode == 3
    assert runner.error_line() == (
        f"error: {files.url}/slow/big.bin?seconds=40: no data for 0.5 s (3 tries): check the "
        "network and that the server is up, then run again"
    )
    assert files.seen.count(("GET", "/slow/big.bin")) == 3
    assert list(tmp.iterdir()) == []


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl tool)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_https_with_unknown_certificate_then_trusted(
    files: FileServer, tls: tuple[Path, Path], tmp: Path
) -> None:
    secure = FileServer(files.root, tls)
    try:
        url = f"{secure.url}/files/svc.py"
        refused = run_runner([url], env={"TMPDIR": str(tmp)}, timeout=60)
        assert refused.proc.returncode == 3
        assert refused.error_line() == (
            f"error: {url}: TLS/SSL failed (the server's certificate could not be verified): "
            "check the address, or the CA certificates (REQUESTS_CA_BUNDLE) for a private "
            "certificate authority"
        )
        env = {"TMPDIR": str(tmp), "REQUESTS_CA_BUNDLE": str(tls[0])}
        reply, _ = serve_once([url], env=env, timeout=30)
        assert reply == "script over http"
    finally:
        secure.stop()
    assert list(tmp.iterdir()) == []


def _request(files: FileServer, path: str) -> download.Request:
    return download.Request(url=files.url + path, what="big.bin",
                            refusal=lambda status, said: f"refused {status}")


def test_progress_lines_in_a_log(
    files: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a terminal: a plain line every LOG_EVERY seconds, with percent and rate."""
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    seconds = progress.LOG_EVERY * 1.3
    got = download.download(_request(files, f"/slow/big.bin?seconds={seconds}"),
                            tmp_path / "f", Config())
    assert got.size == 400_000
    lines = err.getvalue().splitlines()
    shown = [line for line in lines if "downloading big.bin: " in line]
    assert len(shown) == 1, lines
    assert "% (" in shown[0] and "of 400.0 kB) at " in shown[0]
    assert shown[0].endswith("/s")
    assert "\r" not in err.getvalue()
    assert "downloaded big.bin: 400.0 kB in" in lines[-1]


def test_progress_redrawn_on_a_terminal(
    files: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as term:
        monkeypatch.setattr(sys, "stderr", term)
        download.download(_request(files, "/slow/big.bin?seconds=0.8"), tmp_path / "f",
                          Config())
    text = _read_all(master)
    assert text.count(f"\r\033[K[{log.PREFIX}] downloading big.bin: ") >= 2, text
    assert "% (" in text and "/s" in text


def test_an_endless_body_is_cut_at_the_download_limit(files: FileServer, tmp: Path) -> None:
    url = f"{files.url}/endless.tgz"
    started = time.monotonic()
    runner = run_runner([url], env={"TMPDIR": str(tmp), "RUNNER_MAX_DOWNLOAD_BYTES": "1048576"},
                        timeout=60)
    took = time.monotonic() - started
    assert runner.proc.returncode == 3
    assert runner.error_line() == (
        f"error: {url} is over the download limit of 1048576 bytes (the server sent more); "
        "nothing was kept: if that is expected, raise RUNNER_MAX_DOWNLOAD_BYTES"
    )
    assert list(tmp.iterdir()) == []
    assert took < 20, f"{took:.1f} s"


def test_a_declared_size_over_the_default_limit_is_refused_before_reading(
    files: FileServer, tmp: Path
) -> None:
    url = f"{files.url}/huge.tgz"
    runner = run_runner([url], env={"TMPDIR": str(tmp)}, timeout=60)
    assert runner.proc.returncode == 3
    assert runner.error_line() == (
        f"error: {url} is over the download limit of {2 * 1024**3} bytes (the server says it "
        "is 5.4 GB); nothing was kept: if that is expected, raise RUNNER_MAX_DOWNLOAD_BYTES"
    )
    assert list(tmp.iterdir()) == []


def test_no_color_on_a_terminal_gets_plain_progress_lines(
    files: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_COLOR (no-color.org) turns the redrawn line into plain log lines."""
    monkeypatch.setenv("NO_COLOR", "1")
    master, slave = pty.openpty()
    seconds = progress.LOG_EVERY * 1.3
    with os.fdopen(slave, "w") as term:
        monkeypatch.setattr(sys, "stderr", term)
        download.download(_request(files, f"/slow/big.bin?seconds={seconds}"),
                          tmp_path / "f", Config())
    text = _read_all(master)
    assert "\r\033[K" not in text and "\033[" not in text, text  # the pty adds \r to \n
    assert text.count("downloading big.bin: ") == 1, text


def _read_all(master: int) -> str:
    """What was written to a pty whose other end is closed."""
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return shown.decode()


def test_a_password_a_server_echoes_is_hidden(files: FileServer, tmp: Path) -> None:
    url = files.url.replace("http://", f"http://me:{PASSWORD}@") + "/echo/svc.py"
    runner = run_runner([url], env={"TMPDIR": str(tmp)}, timeout=60)  # `finish`: none shown
    assert runner.proc.returncode == 3
    assert "refused the download (HTTP 401: wrong password ***)" in runner.error_line()
