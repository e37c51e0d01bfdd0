"""A private git server for tests: `git http-backend` behind Basic auth on 127.0.0.1.

Real git smart HTTP (the CGI that ships with git), so the runner's git talks
to it exactly as to a hosted private repository: 401 without credentials,
the repository with the right ones.
"""

import base64
import os
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType


class GitHttpServer:
    """Serves the bare repositories under `root` at `http://127.0.0.1:PORT/NAME.git`.

    `accounts` maps user names to passwords; any of them is let in.
    """

    def __init__(self, root: Path, accounts: dict[str, str]) -> None:
        self.root = root
        self.accepted = {
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            for user, password in accounts.items()
        }
        #: Every request's path and whether its credentials were right, in order.
        self.requests: list[tuple[str, bool]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                authorized = self.headers.get("Authorization") in server.accepted
                server.requests.append((self.path, authorized))
                if not authorized:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="private"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = server.backend(self, body)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def backend(self, request: BaseHTTPRequestHandler, body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Run `git http-backend` as the CGI it is; return status, headers, body."""
        path, _, query = request.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.command,
            "PATH_INFO": urllib.parse.unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "tester",
            "REMOTE_ADDR": "127.0.0.1",
        }
        for header in ("Git-Protocol", "Content-Encoding"):
            if request.headers.get(header):
                env["HTTP_" + header.upper().replace("-", "_")] = request.headers[header]
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True, check=False).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        return status, headers, payload

    def __enter__(self) -> "GitHttpServer":
        self.thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
