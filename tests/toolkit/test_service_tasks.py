"""Long-running tasks in the embedded store (SQLite + worker threads), as clients see them."""

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TOOLKIT
from helpers import http_get, wait_for
from toolkit_services import STANDARD, open_gate


def post_task(svc, body: dict, key: str | None = None) -> tuple[int, http.client.HTTPMessage, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    headers = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
    try:
        conn.request("POST", "/batch", json.dumps(body).encode(), headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, json.loads(resp.read())
    finally:
        conn.close()


def status_of(svc, task_id: str) -> dict:
    answer = svc.get_json(f"/tasks/{task_id}")
    assert answer is not None and answer[0] == 200, answer
    return answer[1]


def wait_status(svc, task_id: str, status: str, timeout: float = 10) -> dict:
    return wait_for(lambda: (doc := status_of(svc, task_id))["status"] == status and doc,
                    timeout, f"task {task_id} to be {status}")


def runs(gates: Path, task_id: str) -> int:
    """How many times the task's function ran to its end."""
    path = gates / f"ran-{task_id}"
    return len(path.read_text()) if path.exists() else 0


@pytest.fixture
def svc(start_service, tmp_path: Path):
    return start_service(STANDARD, GATE_DIR=str(tmp_path))


def test_a_task_is_accepted_then_runs_to_completed(svc, tmp_path: Path) -> None:
    status, headers, doc = post_task(svc, {"numbers": [1, 2, 3], "gate": "go"})
    task_id = doc["task_id"]
    assert status == 202
    assert doc == {"task_id": task_id, "status": "queued", "status_url": f"/tasks/{task_id}"}
    assert headers["Location"] == f"/tasks/{task_id}"
    running = wait_for(lambda: (doc := status_of(svc, task_id))["message"] and doc, 10,
                       "the task to report progress")
    assert (running["status"], running["message"], running["progress"]) == \
        ("running", "started", 0.1)
    open_gate(tmp_path, "go")
    done = wait_status(svc, task_id, "completed")
    assert done.keys() == {"task_id", "status", "message", "progress", "result", "error",
                           "created", "updated"}
    assert (done["result"], done["error"], done["progress"]) == ({"sum": 6}, None, 1.0)
    assert done["created"] <= done["updated"]


def test_a_task_that_raises_is_failed_with_its_error(svc) -> None:
    _, _, doc = post_task(svc, {"fail": True})
    failed = wait_status(svc, doc["task_id"], "failed")
    assert failed["error"] == "RuntimeError: cannot sum these"
    assert failed["result"] is None
    assert "Traceback" in svc.output


def test_the_same_idempotency_key_returns_the_same_task(svc, tmp_path: Path) -> None:
    first = post_task(svc, {"numbers": [1]}, key="order-7")
    second = post_task(svc, {"numbers": [1]}, key="order-7")
    other = post_task(svc, {"numbers": [1]}, key="order-8")
    assert first[0] == second[0] == 202
    assert first[2]["task_id"] == second[2]["task_id"] != other[2]["task_id"]
    wait_status(svc, first[2]["task_id"], "completed")
    assert runs(tmp_path, first[2]["task_id"]) == 1


def test_an_unknown_task_is_404_problem(svc) -> None:
    status, doc = svc.get_json("/tasks/no-such-task")
    assert status == 404
    assert doc["title"] == "Not Found" and "no-such-task" in doc["detail"]


def test_a_finished_task_expires_after_task_ttl(start_service, tmp_path: Path) -> None:
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), TASK_TTL="0.5")
    _, _, doc = post_task(svc, {"numbers": [2]})
    wait_status(svc, doc["task_id"], "completed")
    wait_for(lambda: svc.get_json(f"/tasks/{doc['task_id']}")[0] == 404, 5, "the expiry")


def test_a_task_killed_mid_run_runs_again_after_restart(start_service, tmp_path: Path) -> None:
    first = start_service(STANDARD, GATE_DIR=str(tmp_path))
    _, _, doc = post_task(first, {"numbers": [4, 5], "gate": "after-restart"})
    wait_status(first, doc["task_id"], "running")
    first.signal(signal.SIGKILL)
    first.wait(10)
    open_gate(tmp_path, "after-restart")
    second = start_service(STANDARD, GATE_DIR=str(tmp_path))
    done = wait_status(second, doc["task_id"], "completed")
    assert done["result"] == {"sum": 9}
    assert runs(tmp_path, doc["task_id"]) == 1


def test_sigterm_lets_a_running_task_finish(start_service, tmp_path: Path) -> None:
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), DRAIN_TIMEOUT="20")
    _, _, doc = post_task(svc, {"numbers": [1, 1], "gate": "finish"})
    wait_status(svc, doc["task_id"], "running")
    svc.signal(signal.SIGTERM)
    wait_for(lambda: "draining for at most" in svc.output, 5, "the drain to begin")
    running_during_drain = svc.proc.poll() is None
    open_gate(tmp_path, "finish")
    code = svc.wait(15)
    assert running_during_drain and code == 0
    assert runs(tmp_path, doc["task_id"]) == 1
    again = start_service(STANDARD, GATE_DIR=str(tmp_path))
    assert status_of(again, doc["task_id"])["status"] == "completed"


def test_a_task_unfinished_at_drain_timeout_is_left_queued_for_the_next_start(
        start_service, tmp_path: Path) -> None:
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), DRAIN_TIMEOUT="0.3")
    _, _, doc = post_task(svc, {"numbers": [3], "gate": "later"})
    queued_behind = post_task(svc, {"numbers": [7]})[2]["task_id"]  # max_concurrent=1: waits
    wait_status(svc, doc["task_id"], "running")
    svc.signal(signal.SIGTERM)
    code = svc.wait(10)
    assert code == 0
    assert "1 task(s) left queued, to run again" in svc.output
    again = start_service(STANDARD, wait=False, GATE_DIR=str(tmp_path), STARTUP_GATE="startup")
    again.wait_listening()
    # Not started yet: both are queued, nothing was lost or marked failed.
    assert status_of(again, doc["task_id"])["status"] == "queued"
    assert status_of(again, queued_behind)["status"] == "queued"
    open_gate(tmp_path, "startup")
    open_gate(tmp_path, "later")
    assert wait_status(again, doc["task_id"], "completed")["result"] == {"sum": 3}
    assert wait_status(again, queued_behind, "completed")["result"] == {"sum": 7}


def test_tasks_db_in_an_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    script = tmp_path / "svc.py"
    script.write_text(STANDARD)
    env = {**os.environ, "TASKS_DB": str(locked / "sub" / "tasks.sqlite3"), "PORT": "0",
           "HOST": "127.0.0.1", "PYTHONPATH": str(TOOLKIT)}
    if os.geteuid() == 0:  # root writes anywhere: make the folder a file instead
        locked.rmdir()
        locked.write_text("")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: TASKS_DB {locked / 'sub' / 'tasks.sqlite3'}: cannot open it (")
    assert "Traceback" not in done.stderr


def test_without_tasks_db_tasks_go_to_data_or_the_user_cache(start_service,
                                                              tmp_path: Path) -> None:
    """The default place: /data/tasks.sqlite3 when /data is a writable folder (the image's
    volume), else $XDG_CACHE_HOME/workspace-service/NAME/tasks.sqlite3."""
    data = Path("/data")
    expected = data / "tasks.sqlite3" if data.is_dir() and os.access(data, os.W_OK) else \
        tmp_path / "cache" / "workspace-service" / "standard" / "tasks.sqlite3"
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), TASKS_DB="",
                        XDG_CACHE_HOME=str(tmp_path / "cache"))
    _, _, doc = post_task(svc, {"numbers": [1]})
    wait_status(svc, doc["task_id"], "completed")
    assert expected.is_file()
    with sqlite3.connect(expected) as db:
        assert db.execute("SELECT status FROM tasks WHERE task_id = ?",
                          (doc["task_id"],)).fetchone() == ("completed",)


def test_a_result_json_cannot_carry_fails_the_task(start_service) -> None:
    """NaN (a model's favourite float) was stored, and the status document then said
    `"result": {"score": NaN}`: not JSON (RFC 8259), which strict clients cannot parse."""
    svc = start_service("""
        from workspace_service import Service
        svc = Service("results")

        @svc.task("/batch", content_types=["application/json"])
        def batch(task):
            return {"nan": {"score": float("nan")}, "object": {"when": object()}}[
                task.input["kind"]]

        svc.serve()
    """)
    ids = {kind: post_task(svc, {"kind": kind})[2]["task_id"] for kind in ("nan", "object")}
    failed = {kind: wait_status(svc, task_id, "failed") for kind, task_id in ids.items()}
    raw = http_get(svc.url(f"/tasks/{ids['nan']}"))[1]
    assert failed["nan"]["error"] == "ValueError: Out of range float values are not JSON " \
        "compliant"
    assert failed["object"]["error"] == "TypeError: Object of type object is not JSON " \
        "serializable"
    assert b"NaN" not in raw


def test_an_idempotency_key_sent_again_with_another_body_is_422(svc) -> None:
    """The key said "the same request" while the body said otherwise: the second
    client was given the first one's task, and its own input was dropped unseen."""
    first = post_task(svc, {"numbers": [1]}, key="order-9")
    again = post_task(svc, {"numbers": [1]}, key="order-9")
    other = post_task(svc, {"numbers": [2]}, key="order-9")
    assert first[0] == again[0] == 202 and first[2]["task_id"] == again[2]["task_id"]
    assert other[0] == 422
    assert other[1]["Content-Type"] == "application/problem+json"
    assert other[2]["detail"] == "Idempotency-Key 'order-9' was sent before with another " \
        "body: send a new key for a new request"


def test_a_tasks_db_from_before_request_hashes_is_still_used(start_service,
                                                             tmp_path: Path) -> None:
    """A TASKS_DB file on the /data volume, made by the toolkit before it told request
    bodies apart: it gains the column, and its keys still return their tasks."""
    db_path = tmp_path / "old.sqlite3"
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE tasks (task_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, "
                   "status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', progress REAL, "
                   "result TEXT, error TEXT, body BLOB, content_type TEXT NOT NULL DEFAULT '', "
                   "idempotency_key TEXT, created REAL NOT NULL, updated REAL NOT NULL, "
                   "expires REAL)")
        db.execute("INSERT INTO tasks VALUES ('old-task', '/batch', 'completed', '', 1.0, "
                   "'{\"sum\": 1}', NULL, NULL, 'application/json', 'old-key', 1, 1, NULL)")
    db.close()
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path), TASKS_DB=str(db_path))
    again = post_task(svc, {"numbers": [5]}, key="old-key")
    new = post_task(svc, {"numbers": [5]}, key="new-key")
    assert (again[0], again[2]["task_id"]) == (202, "old-task")
    assert wait_status(svc, new[2]["task_id"], "completed")["result"] == {"sum": 5}


def test_an_empty_idempotency_key_is_no_key(svc) -> None:
    """A client that fills the header from an unset variable sends it empty: that is
    not one key shared by all its requests (they were one task, or refused with 422)."""
    answers = [_post_with_empty_key(svc, {"numbers": [n]}) for n in (1, 1, 2)]
    assert [status for status, _ in answers] == [202, 202, 202]
    assert len({task_id for _, task_id in answers}) == 3


def _post_with_empty_key(svc, body: dict) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        conn.request("POST", "/batch", json.dumps(body).encode(),
                     {"Content-Type": "application/json", "Idempotency-Key": ""})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()).get("task_id")
    finally:
        conn.close()


def test_a_task_that_calls_sys_exit_is_failed_and_the_route_goes_on(start_service) -> None:
    """sys.exit() in a task (a model library parsing sys.argv with argparse does it):
    SystemExit is no Exception, so it ended the route's worker thread unseen; the task
    said `running` and every later task of the route stayed `queued` for ever."""
    svc = start_service("""
        import sys
        from workspace_service import Service
        svc = Service("exits")

        @svc.task("/batch", content_types=["application/json"])
        def batch(task):
            if task.input.get("exit"):
                sys.exit(3)
            return {"ok": True}

        svc.serve()
    """)
    exits = post_task(svc, {"exit": True})[2]["task_id"]
    after = post_task(svc, {})[2]["task_id"]
    assert wait_status(svc, exits, "failed")["error"] == "SystemExit: 3"
    assert wait_status(svc, after, "completed")["result"] == {"ok": True}
