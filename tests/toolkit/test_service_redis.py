"""Tasks through a real redis-server (REDIS_URL): replicas share the queue and the records."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import TOOLKIT
from helpers import free_port
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
