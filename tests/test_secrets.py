"""Secrets in URLs never reach the runner's output: the real runner, real servers on 127.0.0.1.

`RunnerProcess.finish()` fails a test when any of the test secrets appears in
the runner's stdout or stderr, so each test here only provokes the case.
"""

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TEST_SECRETS, run_runner, write_service

SECRET = TEST_SECRETS[0]


@pytest.mark.parametrize(("spec", "error"), [
    (f"git+deploy:{SECRET}@example.com:org/repo.git",
     "error: a password in an ssh URL cannot be used: remove it and use an ssh key "
     "(ssh-agent) instead"),
    (f"git+https://oauth2:abc/{SECRET}@127.0.0.1:9/org/repo.git",
     "error: the password in git+https://oauth2:***@127.0.0.1:9/org/repo.git has an "
     "unencoded /: write each / in it as %2F (or pass a git token in GIT_TOKEN instead of "
     "the URL)"),
    (f"http://user:abc/{SECRET}@127.0.0.1:9/svc.py",
     "error: the password in http://user:***@127.0.0.1:9/svc.py has an unencoded /: write "
     "each / in it as %2F"),
])
def test_malformed_credentials_are_refused_unprinted(spec: str, error: str) -> None:
    """Refused before any client runs, so the password is in no argument list either."""
    runner = run_runner([spec])
    assert runner.proc.returncode == 3
    assert runner.error_line() == error


def test_a_password_with_an_unencoded_at_sign_is_hidden_whole() -> None:
    """`user:ab@SECRET@host`: every URL parser takes the last `@`; the log's URL pattern took
    the first and showed the rest of the password."""
    runner = run_runner([f"http://user:ab@{SECRET}@127.0.0.1:9/svc.py", "--network-timeout",
                         "1"])
    assert runner.proc.returncode == 3
    assert runner.error_line().startswith("error: http://user:***@127.0.0.1:9/svc.py: ")


class EchoingServer:
    """Answers every request 401 with a body that repeats the password it was sent."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "Basic ")
                said = base64.b64decode(auth.split(" ", 1)[1]).decode()
                body = f"wrong password {said.partition(':')[2]} for {self.path}".encode()
                self.send_response(401)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def echoing_server() -> Iterator[EchoingServer]:
    server = EchoingServer()
    try:
        yield server
    finally:
        server.stop()


def test_an_http_password_echoed_by_the_server_is_redacted(echoing_server: EchoingServer) -> None:
    runner = run_runner([f"http://bob:{SECRET}@127.0.0.1:{echoing_server.port}/svc.py"])
    assert runner.proc.returncode == 3
    assert "wrong password ***" in runner.error_line()


@pytest.mark.parametrize("query", [
    f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={SECRET}",  # an S3 presigned link
    f"sv=2022-11-02&sig={SECRET}%3D",  # an Azure SAS: base64, percent-encoded
    f"token={SECRET}",
    "v=1&id=" + "a1b2c3d4" * 4 + SECRET,  # no telling name, but a token's shape
])
def test_a_signed_link_keeps_its_signature_out_of_the_log(
    echoing_server: EchoingServer, query: str
) -> None:
    """The 401 error line itself says to use "a public or signed link": the signature is a
    credential as much as a password, and the server here repeats the URL in its answer."""
    runner = run_runner([f"http://127.0.0.1:{echoing_server.port}/svc.py?{query}"])
    assert runner.proc.returncode == 3
    assert "refused the download (HTTP 401" in runner.error_line()
    assert "***" in runner.error_line()


def test_a_token_in_a_vcs_url_query_is_hidden(tmp_path: Path) -> None:
    runner = run_runner([f"git+http://127.0.0.1:9/org/repo.git?token={SECRET}"],
                        env={"GIT_TOKEN": "", "TMPDIR": str(tmp_path)})
    assert runner.proc.returncode == 3
    assert "git+http://127.0.0.1:9/org/repo.git?token=***" in runner.error_line()


@pytest.mark.parametrize("token", [SECRET, f"abc/{SECRET}"])
def test_pip_printing_a_requirement_url_token_is_redacted(tmp_path: Path, token: str) -> None:
    """pip prints the requirement line as written ("Collecting pkg@ git+http://..."); the
    runner registers the URL's password before pip runs, so every copy is hidden."""
    svc = write_service(tmp_path / "svc")
    (svc / "base.txt").write_text(f"pkg @ git+http://x-access-token:{token}@127.0.0.1:9/r.git\n")
    (svc / "requirements.txt").write_text("-r base.txt\n")
    runner = run_runner([svc, "--requirements-only"], env={"PIP_NO_INDEX": "1"})
    assert runner.proc.returncode == 4
    assert "Collecting pkg@ git+http://" in runner.stderr  # pip did print the URL


def test_a_user_name_alone_is_printed_as_it_is(tmp_path: Path) -> None:
    """Not a secret: with `runner@`, every log line used to read `[*** 12:00:00.000]`."""
    runner = run_runner(["git+https://runner@127.0.0.1:9/org/repo.git"],
                        env={"GIT_TOKEN": "", "TMPDIR": str(tmp_path)})
    assert runner.proc.returncode == 3
    assert runner.stderr.startswith("[runner "), runner.stderr
    assert "[***" not in runner.stderr


def test_tool_output_shows_a_user_name_but_hides_passwords_and_lone_tokens(
        tmp_path: Path) -> None:
    """What setup.sh prints goes through the same redaction as every runner line."""
    token = "ghp_" + SECRET.replace("-", "")
    svc = write_service(tmp_path / "svc")
    (svc / "setup.sh").write_text(f"echo at https://runner@host/x\n"
                                  f"echo at https://bob:{SECRET}@host/x\n"
                                  f"echo at https://{token}@host/x\n")
    runner = run_runner([svc, "--requirements-only"], env={"TMPDIR": str(tmp_path)})
    assert runner.proc.returncode == 0, runner.stderr
    shown = [line for line in runner.stderr.splitlines() if "at https://" in line]
    assert [line.split("at ", 1)[1] for line in shown] == [
        "https://runner@host/x", "https://bob:***@host/x", "https://***@host/x"]
    assert token not in runner.stdout + runner.stderr
