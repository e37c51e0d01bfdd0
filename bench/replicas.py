"""Replicas behind nginx, tasks in Redis: nothing lost when one dies or all restart in turn.

    python bench/replicas.py

On 127.0.0.1, with the real parts a cluster would have: REPLICAS runner
processes (`python -m runner examples/async-service --code-only --port P`,
each serving the toolkit with `REDIS_URL`), Debian's nginx in front with the
compose stack's own `deploy/compose/nginx/nginx.conf` (only its addresses and
paths changed: tests/nginx_loopback.py), Debian's `redis-server`, and `wrk` for a steady load of
synchronous GETs (`/echo/...`). Prints:
  - throughput through nginx with 1, 2 and 3 replicas (1 replica is the baseline);
  - kill -9 of one replica's service while wrk runs and TASKS tasks run: failed
    GETs (goal 0), tasks completed (goal all), each task's status read through
    every replica, and how long each task cut short by the kill waited before it
    ran again (by the `updated` times of the task records);
  - a rolling restart (SIGTERM to each replica in turn, the next one only once
    the restarted one is ready) under wrk and a stream of task POSTs: failed
    requests of any kind (goal 0) and tasks completed.
Only processes started here are signalled, by PID; every one is stopped on the way out.
"""

import contextlib
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    PYTHON,
    ROOT,
    Started,
    children,
    free_port,
    load_note,
    wait_until,
)

sys.path.insert(0, str(ROOT / "tests"))
from nginx_loopback import NGINX, Nginx  # tests/nginx_loopback.py: compose's nginx.conf on loopback
from nginx_loopback import nginx as loopback_nginx

SERVICE = ROOT / "examples" / "async-service"
REPLICAS = 3
TASKS = 50
#: Each task: 4 steps of 0.5 s, reporting its progress after each.
TASK_ENV = {"STEPS": "4", "STEP_SECONDS": "0.5"}
#: A replica silent this long has its tasks run by another (the toolkit's default: 60 s).
HEARTBEAT_ENV = {"REDIS_HEARTBEAT_TIMEOUT": "10"}
#: The replicas' drain: nginx learns of a stop from the refused connection.
DRAIN_ENV = {"DRAIN_DELAY": "0", "DRAIN_TIMEOUT": "25"}
WRK = ["wrk", "-t2", "-c16", "--timeout", "10s"]
THROUGHPUT_SECONDS = 5
START_TIMEOUT = 60
TASK_TIMEOUT = 240  # a killed worker's task waits for the queue's heartbeat to lapse


# --- the parts: Redis, replicas, nginx -------------------------------------------------------

@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[int]:
    """Debian's redis-server on a free port, no persistence; its port."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _redis_ping(port), 10, f"redis-server on :{port}")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _redis_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


class Replica:
    """One runner process serving the example, restartable on the same port."""

    def __init__(self, redis_url: str, folder: Path) -> None:
        self.port = free_port()
        self.env = {**TASK_ENV, **DRAIN_ENV, **HEARTBEAT_ENV, "REDIS_URL": redis_url,
                    "XDG_CACHE_HOME": str(folder),
                    "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "toolkit")])}
        self.process: Started | None = None

    def start(self) -> None:
        argv = [PYTHON, "-m", "runner", str(SERVICE), "--code-only", "--port", str(self.port)]
        self.process = Started(argv, self.port, self.env)

    def wait_ready(self) -> None:
        assert self.process
        self.process.wait_200("/ready", START_TIMEOUT)

    def service_pid(self) -> int:
        """The service process under the runner (what a crash would end)."""
        assert self.process
        pids = children(self.process.proc.pid)
        if len(pids) != 1:
            raise self.process.fail(f"expected one service process, found {pids}")
        return pids[0]

    def stop(self) -> int:
        """SIGTERM to the runner (what Kubernetes sends), waiting for the drain; its exit status."""
        assert self.process
        status = self.process.stop(timeout=60)
        self.process = None
        return status


@contextlib.contextmanager
def replicas(count: int, redis_url: str, folder: Path) -> Iterator[list[Replica]]:
    started = [Replica(redis_url, folder) for _ in range(count)]
    try:
        for replica in started:
            replica.start()
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            if replica.process:
                replica.stop()


#: nginx's access log here: what failed, and which replicas it was tried on.
LOG_FORMAT = "$status $request_method $uri tried $upstream_addr got $upstream_status"


@contextlib.contextmanager
def cluster(count: int, redis_url: str, folder: Path) -> Iterator[tuple[list[Replica], Nginx]]:
    """`count` replicas, and the compose stack's nginx.conf in front of them (writing in a
    folder of its own): (the replicas, nginx)."""
    with replicas(count, redis_url, folder) as started, \
            loopback_nginx(Path(tempfile.mkdtemp(dir=folder)), [r.port for r in started],
                           LOG_FORMAT) as proxy:
        yield started, proxy


def failures(proxy: Nginx) -> list[str]:
    """nginx's access-log lines of answers that were not 2xx (499, a client that
    went away, is wrk stopping with requests in flight)."""
    lines = proxy.access_log.read_text().splitlines()
    return [line for line in lines if not line.startswith(("2", "499 "))]


# --- clients: HTTP, wrk, tasks ---------------------------------------------------------------

def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int | None, bytes]:
    """(status, body); status None when the request failed at the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return None, str(exc).encode()
    finally:
        conn.close()


@dataclass
class Load:
    """What wrk measured."""

    requests: int
    failed: int
    per_second: float


class Wrk:
    """wrk's steady GET load, from start until `stop()` (SIGINT: wrk prints its totals)."""

    def __init__(self, port: int, seconds: float = 3600) -> None:
        url = f"http://127.0.0.1:{port}/echo/replica-bench"
        self.proc = subprocess.Popen([*WRK, f"-d{int(seconds)}s", url],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> Load:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        return parse_wrk(out)


def parse_wrk(out: str) -> Load:
    done = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not done or not rate:
        raise RuntimeError(f"wrk printed no totals:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    failed = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(map(int, errors.groups())) if errors else 0)
    return Load(int(done.group(1)), failed, float(rate.group(1)))


@dataclass
class Submitted:
    """Tasks submitted through nginx, and the POSTs that failed on the way."""

    ids: list[str] = field(default_factory=list)
    failed_posts: int = 0


def submit(port: int, into: Submitted) -> None:
    """POST one task; a failed POST is counted, then sent again with the same
    Idempotency-Key (what a client does), so a task is made once."""
    key = uuid.uuid4().hex
    body = json.dumps({"size": 1}).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    deadline = time.monotonic() + 60
    while True:
        status, answer = request(port, "POST", "/", body, headers)
        if status == 202:
            into.ids.append(json.loads(answer)["task_id"])
            return
        into.failed_posts += 1
        if time.monotonic() > deadline:
            raise RuntimeError(f"POST / kept failing: {status} {answer[:300]!r}")
        time.sleep(0.1)


def task_record(port: int, task_id: str) -> dict | None:
    status, body = request(port, "GET", f"/tasks/{task_id}")
    return json.loads(body) if status == 200 else None


def wait_completed(port: int, ids: list[str]) -> float:
    """Seconds until every task is `completed`; fails on a `failed` one or the deadline."""
    start = time.monotonic()
    pending = set(ids)
    while pending:
        for task_id in list(pending):
            record = task_record(port, task_id) or {}
            if record.get("status") == "failed":
                raise RuntimeError(f"task {task_id} failed: {record}")
            if record.get("status") == "completed":
                pending.discard(task_id)
        if time.monotonic() - start > TASK_TIMEOUT:
            raise RuntimeError(f"{len(pending)} of {len(ids)} tasks not completed after "
                               f"{TASK_TIMEOUT} s")
        time.sleep(0.2)
    return time.monotonic() - start


def readable_everywhere(ids: list[str], ports: list[int]) -> bool:
    """Every task's status is `completed` when asked of each replica directly."""
    return all((task_record(port, task_id) or {}).get("status") == "completed"
               for task_id in ids for port in ports)


class RerunWatch:
    """When each task running at the kill made progress again, by the records' own
    `updated` times: a task on a healthy replica within a step (0.5 s), a task on
    the killed replica only when the queue gives it to a worker again."""

    def __init__(self, port: int, ids: list[str], killed_at: datetime.datetime) -> None:
        self.port = port
        self.killed_at = killed_at
        self.pending = set(ids)
        self.waited: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + TASK_TIMEOUT
        while self.pending and time.monotonic() < deadline:
            for task_id in list(self.pending):
                record = task_record(self.port, task_id)
                if record is None:
                    continue
                updated = datetime.datetime.fromisoformat(record["updated"])
                if updated > self.killed_at:
                    self.waited[task_id] = (updated - self.killed_at).total_seconds()
                    self.pending.discard(task_id)
                elif record["status"] in ("completed", "failed"):
                    self.pending.discard(task_id)  # it ended before the kill
            time.sleep(0.05)

    def paused(self) -> list[float]:
        """The waits of the tasks the kill held up (longer than two steps), longest first."""
        self._thread.join(TASK_TIMEOUT)
        if self.pending:
            raise RuntimeError(f"tasks that never moved on after the kill: {self.pending}")
        step = float(TASK_ENV["STEP_SECONDS"])
        return sorted((w for w in self.waited.values() if w > 2 * step), reverse=True)


def running_tasks(port: int, ids: list[str]) -> list[str]:
    return [i for i in ids if (task_record(port, i) or {}).get("status") == "running"]


# --- the trials --------------------------------------------------------------------------------

def throughput(folder: Path, redis_port: int) -> dict[int, float]:
    rates = {}
    for count in (1, 2, 3):
        with cluster(count, f"redis://127.0.0.1:{redis_port}/1", folder) as (_, proxy):
            load = Wrk(proxy.port, THROUGHPUT_SECONDS)
            load.proc.wait(THROUGHPUT_SECONDS + 30)
            result = load.stop()
            if result.failed:
                raise RuntimeError(f"{result.failed} failed GETs at {count} replicas")
            rates[count] = result.per_second
    return rates


@dataclass
class KillResult:
    load: Load
    submitted: Submitted
    completed_after: float
    everywhere: bool
    paused: list[float]
    nginx_failures: list[str]


def kill_one(folder: Path, redis_port: int) -> KillResult:
    with cluster(REPLICAS, f"redis://127.0.0.1:{redis_port}/2", folder) as (started, proxy):
        port = proxy.port
        load = Wrk(port)
        submitted = Submitted()
        for _ in range(TASKS):
            submit(port, submitted)
        wait_until(lambda: len(running_tasks(port, submitted.ids)) >= REPLICAS, 30,
                   "tasks running on every replica")
        victim = started[0]
        running = running_tasks(port, submitted.ids)
        killed_at = datetime.datetime.now(datetime.UTC)
        os.kill(victim.service_pid(), signal.SIGKILL)
        watch = RerunWatch(port, running, killed_at)
        victim.wait_ready()  # the runner restarts it; wrk keeps going meanwhile
        time.sleep(3)  # the load goes on past the restart: nginx sends to it again
        result = load.stop()
        completed_after = wait_completed(port, submitted.ids)
        paused = watch.paused()
        everywhere = readable_everywhere(submitted.ids, [r.port for r in started])
        failed = failures(proxy)
    return KillResult(result, submitted, completed_after, everywhere, paused, failed)


@dataclass
class RollingResult:
    load: Load
    submitted: Submitted
    exits: list[int]
    completed_after: float
    nginx_failures: list[str]


def rolling_restart(folder: Path, redis_port: int) -> RollingResult:
    with cluster(REPLICAS, f"redis://127.0.0.1:{redis_port}/3", folder) as (started, proxy):
        port = proxy.port
        load = Wrk(port)
        submitted = Submitted()
        done = threading.Event()

        def post_steadily() -> None:
            while not done.is_set():
                submit(port, submitted)
                time.sleep(0.2)

        poster = threading.Thread(target=post_steadily, daemon=True)
        poster.start()
        exits = []
        try:
            time.sleep(1)
            for replica in started:
                exits.append(replica.stop())
                replica.start()
                replica.wait_ready()
            time.sleep(1)
        finally:
            done.set()
            poster.join(60)
        result = load.stop()
        completed_after = wait_completed(port, submitted.ids)
        failed = failures(proxy)
    return RollingResult(result, submitted, exits, completed_after, failed)


def require_tools() -> None:
    """Debian's wrk, nginx and redis-server, or one `error:` line saying what to install."""
    missing = [tool for tool, found in [("wrk", shutil.which("wrk")), ("nginx", Path(NGINX)),
                                        ("redis-server", shutil.which("redis-server"))]
               if not found or not Path(found).exists()]
    if missing:
        raise SystemExit(f"error: {', '.join(missing)} missing: "
                         f"apt-get install -y --no-install-recommends {' '.join(missing)}")


def main() -> None:
    require_tools()
    print(f"{REPLICAS} replicas of examples/async-service behind nginx, tasks in Redis "
          f"{load_note()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        folder = Path(tmp)
        with redis_server(folder) as redis_port:
            rates = throughput(folder, redis_port)
            base = rates[1]
            print(f"throughput, {' '.join(WRK)} -d{THROUGHPUT_SECONDS}s GET /echo through nginx:")
            for count, rate in rates.items():
                print(f"  {count} replica(s): {rate:,.0f} req/s: {rate / base:.2f}x of 1")

            kill = kill_one(folder, redis_port)
            print(f"kill -9 of one replica's service under load: {kill.load.failed} of "
                  f"{kill.load.requests:,} GETs failed (goal 0); "
                  f"{TASKS} tasks: {len(kill.submitted.ids)} submitted "
                  f"({kill.submitted.failed_posts} POSTs re-sent with their Idempotency-Key), "
                  f"all completed {kill.completed_after:.1f} s after the load stopped, "
                  f"status completed through each replica: {kill.everywhere}")
            waits = ", ".join(f"{w:.1f}" for w in kill.paused) or "none"
            print(f"  tasks cut short by the kill: {len(kill.paused)}, each ran again after "
                  f"{waits} s (REDIS_HEARTBEAT_TIMEOUT="
                  f"{HEARTBEAT_ENV['REDIS_HEARTBEAT_TIMEOUT']} s)")
            show_failures(kill.nginx_failures)

            rolling = rolling_restart(folder, redis_port)
            print(f"rolling restart (SIGTERM, restart, ready, next): "
                  f"{rolling.load.failed} of {rolling.load.requests:,} GETs failed, "
                  f"{rolling.submitted.failed_posts} of "
                  f"{len(rolling.submitted.ids) + rolling.submitted.failed_posts} POSTs failed "
                  f"(goal 0 and 0); {len(rolling.submitted.ids)} tasks all completed; "
                  f"runner exit statuses {rolling.exits}")
            show_failures(rolling.nginx_failures)


def show_failures(lines: list[str]) -> None:
    """What nginx answered other than 2xx, and which replicas it tried (a few lines)."""
    for line in lines[:5]:
        print(f"    nginx: {line}")
    if len(lines) > 5:
        print(f"    nginx: ... {len(lines) - 5} more")


if __name__ == "__main__":
    main()
