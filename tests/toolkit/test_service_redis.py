"""Tasks through a real redis-server (REDIS_URL): replicas share the queue and the records."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from conftest import TOOLKIT
from helpers import free_port, http_get, wait_for
from test_service_limits import request
from test_service_tasks import post_task, runs, status_of, wait_status
from toolkit_services import STANDARD, open_gate


@pytest.fixture
def redis_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """An empty Redis for each test, and a short heartbeat so that a dead replica's
    task is given to another within seconds (dramatiq's default is 60 s)."""
    redis.Redis.from_url(redis_url).flushall()
    return {"REDIS_URL": redis_url, "REDIS_HEARTBEAT_TIMEOUT": "1", "GATE_DIR": str(tmp_path)}


def test_any_replica_answers_and_idempotency_holds_across_replicas(start_service,
                                                                   redis_env) -> None:
    a = start_service(STANDARD, name="a.py", **redis_env)
    b = start_service(STANDARD, name="b.py", **redis_env)
    status, _, doc = post_task(a, {"numbers": [1, 2]}, key="k-1")
    again = post_task(b, {"numbers": [1, 2]}, key="k-1")[2]
    assert status == 202 and again["task_id"] == doc["task_id"]
    done = wait_status(b, doc["task_id"], "completed")
    assert done["result"] == {"sum": 3}
    assert status_of(a, doc["task_id"]) == done


def test_an_idempotency_key_sent_again_with_another_body_is_422_on_any_replica(
        start_service, redis_env) -> None:
    a = start_service(STANDARD, name="a.py", **redis_env)
    b = start_service(STANDARD, name="b.py", **redis_env)
    first = post_task(a, {"numbers": [1]}, key="k-2")
    again = post_task(b, {"numbers": [1]}, key="k-2")
    other = post_task(b, {"numbers": [2]}, key="k-2")
    assert first[2]["task_id"] == again[2]["task_id"]
    assert (other[0], other[2]["status"]) == (422, 422)


def test_concurrent_posts_with_one_idempotency_key_make_one_task(start_service,
                                                                  redis_env) -> None:
    """8 clients at once, split over 2 replicas, 30 times: the key was set before the
    record was written, and a replica that read the key in between found no record,
    took it for expired and made a task of its own (a third of the rounds had 2-6)."""
    replicas = [start_service(STANDARD, name=f"r{n}.py", **redis_env) for n in range(2)]
    made = [posted_at_once(replicas, 8, f"key-{n}") for n in range(30)]
    assert [len(ids) for ids in made] == [8] * 30
    assert [len(set(ids)) for ids in made] == [1] * 30


def posted_at_once(replicas: list, clients: int, key: str) -> list[str]:
    """The task ids `clients` POSTs of one body with one key, sent together, were
    answered with."""
    ids: list[str] = []
    together = threading.Barrier(clients)

    def post(n: int) -> None:
        together.wait()
        ids.append(post_task(replicas[n % len(replicas)], {"numbers": [1]}, key=key)[2]["task_id"])
    threads = [threading.Thread(target=post, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return ids


def test_a_failed_task_is_failed_for_every_replica(start_service, redis_env) -> None:
    a = start_service(STANDARD, name="a.py", **redis_env)
    _, _, doc = post_task(a, {"fail": True})
    failed = wait_status(a, doc["task_id"], "failed")
    assert failed["error"] == "RuntimeError: cannot sum these"
    assert a.get_json("/tasks/unknown")[0] == 404


def test_a_replica_killed_mid_task_has_its_task_run_again_elsewhere(start_service, redis_env,
                                                                    tmp_path: Path) -> None:
    replicas = [start_service(STANDARD, name=f"r{n}.py", **redis_env) for n in range(2)]
    _, _, doc = post_task(replicas[0], {"numbers": [5, 5], "gate": "after-kill"})
    task_id = doc["task_id"]
    wait_status(replicas[0], task_id, "running")
    pid = int((tmp_path / f"pid-{task_id}").read_text())
    victim = next(r for r in replicas if r.proc.pid == pid)
    survivor = next(r for r in replicas if r is not victim)
    victim.signal(signal.SIGKILL)
    victim.wait(10)
    open_gate(tmp_path, "after-kill")
    done = wait_status(survivor, task_id, "completed", timeout=60)
    assert done["result"] == {"sum": 10}
    assert int((tmp_path / f"pid-{task_id}").read_text()) == survivor.proc.pid
    assert runs(tmp_path, task_id) == 1


def test_redis_url_pointing_at_nothing_is_a_clear_error_at_start(tmp_path: Path) -> None:
    script = tmp_path / "svc.py"
    script.write_text(STANDARD)
    port = free_port()
    env = {**os.environ, "REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/0", "HOST": "127.0.0.1",
           "PORT": str(free_port()), "PYTHONPATH": str(TOOLKIT)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1
    assert time.monotonic() - started < 10
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: REDIS_URL redis://:***@127.0.0.1:{port}/0: cannot use it (")
    assert "hunter2" not in done.stderr + done.stdout


def test_a_task_unfinished_at_a_replicas_drain_is_run_by_another(start_service, redis_env,
                                                                 tmp_path: Path) -> None:
    replicas = [start_service(STANDARD, name=f"r{n}.py", DRAIN_TIMEOUT="0.3", **redis_env)
                for n in range(2)]
    _, _, doc = post_task(replicas[0], {"numbers": [2, 3], "gate": "after-drain"})
    task_id = doc["task_id"]
    wait_status(replicas[0], task_id, "running")
    pid = int((tmp_path / f"pid-{task_id}").read_text())
    stopping = next(r for r in replicas if r.proc.pid == pid)
    other = next(r for r in replicas if r is not stopping)
    stopping.signal(signal.SIGTERM)
    code = stopping.wait(10)
    left = status_of(other, task_id)["status"]
    open_gate(tmp_path, "after-drain")
    done = wait_status(other, task_id, "completed", timeout=60)
    assert code == 0
    assert "1 task(s) left queued, to run again" in stopping.output
    assert left in ("queued", "running")  # queued, or already taken by the other replica
    assert done["result"] == {"sum": 5}
    assert int((tmp_path / f"pid-{task_id}").read_text()) == other.proc.pid


def test_a_finished_task_expires_from_redis_after_task_ttl(start_service, redis_env,
                                                           redis_url: str) -> None:
    svc = start_service(STANDARD, TASK_TTL="1", **redis_env)
    _, _, doc = post_task(svc, {"numbers": [1]})
    wait_status(svc, doc["task_id"], "completed")
    ttl = redis.Redis.from_url(redis_url).ttl(f"workspace-service:standard:task:{doc['task_id']}")
    wait_for(lambda: svc.get_json(f"/tasks/{doc['task_id']}")[0] == 404, 5, "the expiry")
    assert 0 < ttl <= 1


def test_a_redis_gone_away_is_503_problem_and_tasks_work_again_when_it_is_back(
        start_service, redis_server, tmp_path: Path) -> None:
    """redis-server stopped while the service runs: task routes say 503 + Retry-After (it
    was a 500 and a traceback per request), the rest of the service and the scrape work,
    and once Redis is back tasks are taken and run again."""
    svc = start_service(STANDARD, REDIS_URL=redis_server.url, GATE_DIR=str(tmp_path))
    redis_server.stop()
    before = len(svc.output)
    refused = (request(svc, "POST", "/batch", b"{}", {"Content-Type": "application/json"}),
               request(svc, "GET", "/tasks/abc"))
    scrape, echo = http_get(svc.url("/metrics")), http_get(svc.url("/echo/x"))
    redis_server.start()
    status, _, doc = post_task(svc, {"numbers": [2, 3]})
    done = wait_status(svc, doc["task_id"], "completed", timeout=20)
    for answer_status, headers, body in refused:
        assert (answer_status, headers["Retry-After"]) == (503, "1")
        assert headers["Content-Type"] == "application/problem+json"
        assert json.loads(body)["detail"] == "the task store does not answer; retry shortly"
    assert scrape[0] == 200 and b"http_requests_total" in scrape[1]
    assert echo == (200, b'{"text":"x"}\n')
    assert "Traceback" not in svc.output[before:]
    assert "task store unavailable: ConnectionError: Error 111 connecting" in svc.output
    assert status == 202 and done["result"] == {"sum": 5}


def test_a_task_that_ends_while_redis_is_away_is_recorded_once_it_is_back(
        start_service, redis_server, tmp_path: Path) -> None:
    """The task finished while redis-server was stopped: its end could not be written,
    dramatiq dead-lettered the message and the record said `running` for a day."""
    svc = start_service(STANDARD, REDIS_URL=redis_server.url, GATE_DIR=str(tmp_path))
    _, _, doc = post_task(svc, {"numbers": [4, 4], "gate": "while-away"})
    wait_status(svc, doc["task_id"], "running")
    redis_server.stop()
    open_gate(tmp_path, "while-away")
    wait_for(lambda: "cannot record the end of task" in svc.output, 5, "the task to end")
    redis_server.start()
    done = wait_status(svc, doc["task_id"], "completed", timeout=10)
    assert done["result"] == {"sum": 8}
    assert runs(tmp_path, doc["task_id"]) == 1


def test_a_drain_that_times_out_while_redis_is_away_exits_cleanly(
        start_service, redis_server, tmp_path: Path) -> None:
    """The running task cannot be put back to `queued` (Redis is away): the drain says
    so and exits 0; the message, never acknowledged, is delivered again anyway."""
    svc = start_service(STANDARD, REDIS_URL=redis_server.url, GATE_DIR=str(tmp_path),
                        DRAIN_TIMEOUT="0.3")
    _, _, doc = post_task(svc, {"numbers": [1], "gate": "never"})
    wait_status(svc, doc["task_id"], "running")
    redis_server.stop()
    svc.signal(signal.SIGTERM)
    code = svc.wait(10)
    assert code == 0
    assert "Traceback" not in svc.output
    assert f"cannot put task {doc['task_id']} back to queued" in svc.output
