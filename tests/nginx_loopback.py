"""deploy/compose's nginx.conf run by Debian's nginx on 127.0.0.1, for the tests and
bench/replicas.py.

Only what loopback needs is changed: the listen address, the files nginx
writes (pid, logs, temp folders: all in one folder), and the replicas. In
compose `$replicas` is the service's name, which the network's DNS server
answers with every replica's address; DNS answers carry no ports, and the
replicas here are ports of 127.0.0.1, so `$replicas` names an upstream group of
them instead, one that, like the answer each request gets from the resolver,
keeps no mark of a failed replica (max_fails=0).
"""

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "compose" / "nginx" / "nginx.conf"
#: Debian's nginx (in /usr/sbin, which a non-root PATH may lack).
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx(NamedTuple):
    port: int
    access_log: Path


def loopback_conf(folder: Path, listen: int, upstreams: list[int],
                  log_format: str | None = None) -> str:
    """The compose nginx.conf for `upstreams` on 127.0.0.1; `log_format`, if given,
    is the access log's format."""
    group = "".join(f"        server 127.0.0.1:{port} max_fails=0;\n" for port in upstreams)
    paths = "".join(f"    {name}_temp_path {folder / name};\n"
                    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    access = f"    access_log {folder / 'access.log'}"
    if log_format:
        access = f"    log_format loopback {log_format!r};\n{access} loopback"
    text = NGINX_CONF.read_text()
    for old, new in [
        ("    include /etc/nginx/resolver.conf;\n", f"    upstream replicas {{\n{group}    }}\n"),
        ("set $replicas service:8091;", "set $replicas replicas;"),
        ("listen 8080;", f"listen 127.0.0.1:{listen};"),
        ("/run/nginx.pid", str(folder / "nginx.pid")),
        ("/var/log/nginx/error.log", str(folder / "error.log")),
        ("    access_log /var/log/nginx/access.log;\n", f"{access};\n{paths}"),
    ]:
        if text.count(old) != 1:
            raise RuntimeError(f"{NGINX_CONF}: expected {old!r} once")
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def nginx(folder: Path, upstreams: list[int], log_format: str | None = None) -> Iterator[Nginx]:
    """nginx in front of `upstreams`, writing into `folder` (its own), until the block ends."""
    if not Path(NGINX).exists():
        raise RuntimeError("nginx is missing: run tests/install.sh")
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(loopback_conf(folder, port, upstreams, log_format))
    folder.chmod(0o755)  # nginx's workers (user nobody, when run as root) reach their folders
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(folder), "-g", "daemon off;"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_accepting(proc, port)
        yield Nginx(port, folder / "access.log")
    finally:
        proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _wait_accepting(proc: subprocess.Popen, port: int, timeout: float = 10) -> None:
    """Until nginx accepts connections; no request is sent (nginx would pass it on)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.01)
    out = proc.stdout.read().decode() if proc.poll() is not None else "(still starting)"
    raise RuntimeError(f"nginx did not accept connections on :{port}: {out}")
