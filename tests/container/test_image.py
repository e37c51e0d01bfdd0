"""The workspace image, built with podman and run as users run it.

Services here are plain stdlib code, so the tests do not need PyPI at run
time; only the custom-image test installs requirements (at its build).
"""

import json
import os
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from helpers import ROOT, TEST_SECRETS, assert_no_secrets, wait_for
from podman_tools import PREFIX, Container, podman

# The first test may build the image from nothing (about a minute or two).
pytestmark = pytest.mark.timeout(1800)

SERVICE = '''\
import http.server, json, os, signal, sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        data = json.dumps({"reply": REPLY, "uid": os.getuid(), "python": sys.prefix}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def stop(signum, frame):
    print("svc: got SIGTERM, exiting", flush=True)
    sys.exit(0)


REPLY = %r
signal.signal(signal.SIGTERM, stop)
print("svc: serving", flush=True)
# 0.0.0.0: a published port does not reach a container's loopback address.
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


#: Prints the environment of the workspace's terminal (the bash that JupyterLab started).
TERMINAL_ENV = """
from pathlib import Path
for proc in Path("/proc").glob("[0-9]*"):
    if (proc / "cmdline").read_bytes() == b"/bin/bash\\0":
        print((proc / "environ").read_bytes().decode().replace("\\0", "\\n"))
"""


def write_service(folder: Path, reply: str = "ok") -> Path:
    folder.mkdir(parents=True)
    (folder / "__main__.py").write_text(SERVICE % reply)
    return folder


def answer(container: Container, path: str = "/", port: int = 8091) -> dict:
    status, body = container.wait_http(path, port)
    assert status == 200, body
    return json.loads(body)


def healthy(container: Container) -> bool:
    """`podman healthcheck run`: the image's HEALTHCHECK, run now (no systemd timers here)."""
    result = podman("healthcheck", "run", container.name, check=False)
    return result.returncode == 0 and container.state()["Health"]["Status"] == "healthy"


def test_serves_a_mounted_folder_as_the_non_root_user(start, tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", reply="mounted")
    container = start(env={"EXECUTE_CODE": "/workspace/svc"}, volumes={svc: "/workspace/svc"})
    reply = answer(container)
    assert reply["reply"] == "mounted"
    assert reply["uid"] == 1000  # the service runs as the image's user...
    assert reply["python"] == "/opt/service"  # ...on the service venv, not the runner's
    assert healthy(container)
    user = container.exec("id", "-un").stdout.strip()
    owners = container.exec("stat", "-c", "%U", "/workspace", "/opt/service").stdout.split()
    assert (user, owners) == ("workspace", ["workspace", "workspace"])


def test_serves_a_git_url_of_a_mounted_repository(start, tmp_path: Path) -> None:
    repo = write_service(tmp_path / "repo", reply="from-git")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "svc"]):
        subprocess.run([*git, *args], check=True)
    # The repository belongs to root, the container's user is not root: git's
    # safe.directory check must not refuse it.
    container = start(env={"EXECUTE_CODE": "git+file:///repos/svc@main"},
                      volumes={repo: "/repos/svc"})
    assert answer(container)["reply"] == "from-git"
    assert healthy(container)


CLIENT_ENV = {"HGPLAIN": "1", "HGRCPATH": "", "BRZ_EMAIL": "t <t@example.com>",
              "BRZ_LOG": "/dev/null"}


def make_repo(vcs: str, root: Path) -> tuple[Path, str]:
    """A one-commit repository of `vcs` serving "from-VCS"; (what to mount, its URL path)."""

    def sh(*argv: str | Path, cwd: Path | None = None) -> None:
        subprocess.run(argv, cwd=cwd, env={**os.environ, **CLIENT_ENV}, check=True,
                       capture_output=True)

    if vcs == "svn":
        repo, wc = root / "svnrepo", root / "svnwc"
        svn = ("svn", "--config-dir", root / "svnconfig", "--non-interactive", "-q")
        sh("svnadmin", "create", repo)
        sh(*svn, "checkout", repo.as_uri(), wc)
        write_service(wc / "trunk", reply="from-svn")
        sh(*svn, "add", wc / "trunk")
        sh(*svn, "commit", "-m", "svc", wc)
        return repo, "/trunk"
    repo = write_service(root / vcs, reply=f"from-{vcs}")
    if vcs == "hg":
        sh("hg", "init", repo)
        sh("hg", "commit", "-q", "-A", "-m", "svc", "--config", "ui.username=t", cwd=repo)
    else:
        sh("brz", "init", "-q", repo)
        sh("brz", "add", "-q", cwd=repo)
        sh("brz", "commit", "-q", "-m", "svc", cwd=repo)
    return repo, ""


@pytest.mark.parametrize("vcs", ["hg", "svn", "bzr"])
def test_serves_the_other_clients_urls(start, tmp_path: Path, vcs: str) -> None:
    # The image's Mercurial, Subversion and Breezy, called by the runner with the
    # service venv first on PATH.
    repo, path = make_repo(vcs, tmp_path)
    container = start(env={"EXECUTE_CODE": f"{vcs}+file:///repos/{vcs}{path}"},
                      volumes={repo: f"/repos/{vcs}"})
    assert answer(container)["reply"] == f"from-{vcs}"


def test_unhealthy_when_the_service_does_not_answer(start, tmp_path: Path) -> None:
    svc = tmp_path / "svc"
    svc.mkdir()
    # Stays up (the runner keeps it), but never opens its port.
    (svc / "__main__.py").write_text("import threading\nprint('svc: up', flush=True)\n"
                                     "threading.Event().wait()\n")
    container = start(env={"EXECUTE_CODE": "/workspace/svc"}, volumes={svc: "/workspace/svc"})
    wait_for(lambda: "svc: up" in container.logs(), 30, "the service to start")
    result = podman("healthcheck", "run", container.name, check=False)
    assert result.returncode != 0, result.stdout


def test_stop_delivers_sigterm_and_logs_reach_podman(start, tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc")
    container = start(env={"EXECUTE_CODE": "/workspace/svc"}, volumes={svc: "/workspace/svc"})
    answer(container)
    started = time.monotonic()
    podman("stop", "--time=10", container.name)
    elapsed = time.monotonic() - started
    state = container.state()
    assert (state["Running"], state["ExitCode"]) == (False, 0)
    assert elapsed < 5, f"podman stop took {elapsed:.1f} s"
    logs = container.logs()
    assert "svc: serving" in logs and "svc: got SIGTERM, exiting" in logs, logs


def test_tools_on_path_python_execute_code_and_vcs_clients(image: str) -> None:
    # A program as the command runs as it is (no shell), like `docker run IMAGE bash`.
    probe = "import importlib.util, sys; print(sys.prefix, importlib.util.find_spec('runner'))"
    result = podman("run", "--rm", image, "python", "-c", probe)
    assert result.stdout.split() == ["/opt/service", "None"]
    assert "usage: execute-code" in podman("run", "--rm", image, "execute-code", "--help").stdout
    for client in (["git", "--version"], ["hg", "--version", "-q"], ["svn", "--version", "-q"],
                   ["brz", "version"], ["bzr", "version"]):
        assert podman("run", "--rm", "--entrypoint", client[0], image, *client[1:]).returncode == 0


def test_workspace_needs_its_token_and_serves_code_from_a_terminal(start, tmp_path: Path) -> None:
    token = TEST_SECRETS[0]
    svc = write_service(tmp_path / "svc", reply="from-workspace")
    container = start(ports=(8080, 8091), env={"WORKSPACE_TOKEN": token},
                      volumes={svc: "/workspace/svc"})
    status, body = container.wait_http(f"/api/status?token={token}", port=8080)
    assert status == 200, body
    assert container.get("/api/status", port=8080)[0] == 403
    assert container.get("/api/status?token=wrong-token", port=8080)[0] == 403
    assert container.get(f"/lab?token={token}", port=8080)[0] == 200
    # JupyterLab has terminals, which do not inherit the token, and notebooks run
    # on the service's Python.
    assert _post(container.url(f"/api/terminals?token={token}", 8080)) == 200
    terminal_env = container.exec("python", "-c", TERMINAL_ENV).stdout
    assert "PATH=/opt/service/bin:" in terminal_env
    assert "TOKEN" not in terminal_env and token not in terminal_env
    specs = json.loads(container.get(f"/api/kernelspecs?token={token}", port=8080)[1])
    assert specs["kernelspecs"][specs["default"]]["spec"]["argv"][0] == "/opt/service/bin/python"
    assert healthy(container)  # no service yet: the workspace itself counts

    # What a user types in the workspace's terminal.
    container.exec("python", "/resources/scripts/execute_code.py", "/workspace/svc", detach=True)
    reply = answer(container)
    assert (reply["reply"], reply["uid"]) == ("from-workspace", 1000)
    assert_no_secrets(container.logs())

    podman("stop", "--time=10", container.name)
    assert container.state()["ExitCode"] == 0


def test_workspace_prints_a_generated_token_once(start) -> None:
    container = start(ports=(8080,))
    container.wait_http("/api", port=8080)
    logs = container.logs()
    tokens = re.findall(r"/lab\?token=([\w-]{20,})", logs)
    assert len(tokens) == 1, logs
    assert logs.count(tokens[0]) == 1
    assert container.get(f"/api/status?token={tokens[0]}", port=8080)[0] == 200
    assert container.get("/api/status", port=8080)[0] == 403


def test_custom_image_installs_at_build_and_serves_code_only(start, image: str) -> None:
    custom = f"localhost/{PREFIX}/custom-{uuid.uuid4().hex[:8]}:latest"
    try:
        # The build's own output is not judged: podman may reuse a cached layer of an
        # earlier build of the same content, which prints no install at all.
        podman("build", "--format", "docker", f"--build-arg=WORKSPACE_IMAGE={image}",
               "-t", custom, str(ROOT / "examples" / "custom-image"), timeout=600)
        container = start(image_name=custom)
        status, body = container.wait_http("/health")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        request = urllib.request.Request(container.url("/predict"), method="POST",
                                         data=b'{"values": [1, 2, 3]}',
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read()) == {"prediction": 2.0}
        assert healthy(container)
        # What the image holds: the pinned requirements, in the service's Python.
        versions = container.exec("python", "-c", "import importlib.metadata as m; "
                                  "print(m.version('flask'), m.version('waitress'))")
        assert versions.stdout.split() == ["3.1.3", "3.0.2"], versions
        logs = container.logs()
        assert "ml-service: starting" in logs
        assert "installing from" not in logs, logs  # --code-only: nothing installed at start
        podman("stop", "--time=10", container.name)
        assert container.state()["ExitCode"] == 0
    finally:
        podman("rmi", "--force", custom, check=False)  # and its container


def _post(url: str) -> int:
    request = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status

