"""The embedded task store: a SQLite file, and the service's own worker threads.

The file outlives the process (TASKS_DB, by default on the image's /data
volume): a task queued or running when the process died (a crash, SIGKILL,
the runner's restart) is queued again at the next start and runs then.
"""

import json
import queue
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from .base import (
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    STATUSES,
    KeyReused,
    TaskBackend,
    TaskInput,
    TaskRecord,
    TaskStoreError,
    fingerprint,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    progress REAL,
    result TEXT,
    error TEXT,
    body BLOB,
    content_type TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT,
    request_hash TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    expires REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_idempotency
    ON tasks (endpoint, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (status, created);
CREATE INDEX IF NOT EXISTS tasks_expires ON tasks (expires) WHERE expires IS NOT NULL;
"""
def _add_request_hash(db: sqlite3.Connection) -> None:
    """A file made before request bodies were told apart gets their column."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    if "request_hash" not in columns:
        db.execute("ALTER TABLE tasks ADD COLUMN request_hash TEXT")


_RECORD = "task_id, endpoint, status, message, progress, result, error, created, updated"
_STOP = object()  # tells a worker thread to end


class SQLiteBackend(TaskBackend):
    """Tasks in one SQLite file; each task route has `max_concurrent` worker threads."""

    def __init__(self, path: Path, ttl: float) -> None:
        super().__init__(ttl)
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._queues: dict[str, queue.Queue] = {}
        self._stopping = threading.Event()

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            _add_request_hash(db)
        except (OSError, sqlite3.Error) as exc:
            raise TaskStoreError(f"TASKS_DB {self.path}: cannot open it ({exc})") from None
        self._db = db

    def _sql(self, statement: str, *args: Any) -> sqlite3.Cursor:
        assert self._db is not None, "open() first"
        with self._lock:
            return self._db.execute(statement, args)

    def start(self) -> None:
        # A task still `running` belongs to a process that died: run it again.
        self._sql("UPDATE tasks SET status = ? WHERE status = ?", QUEUED, RUNNING)
        for endpoint, (_, max_concurrent) in self.functions.items():
            self._queues[endpoint] = queue.Queue()
            for n in range(max_concurrent):
                threading.Thread(target=self._work, args=(endpoint,), daemon=True,
                                 name=f"task-{endpoint}-{n}").start()
        rows = self._sql("SELECT task_id, endpoint FROM tasks WHERE status = ? ORDER BY created",
                         QUEUED).fetchall()
        for task_id, endpoint in rows:
            if endpoint in self._queues:
                self._queues[endpoint].put(task_id)

    def _work(self, endpoint: str) -> None:
        tasks = self._queues[endpoint]
        while (task_id := tasks.get()) is not _STOP and not self._stopping.is_set():
            self.run(task_id)

    def create(self, endpoint: str, body: bytes, content_type: str,
               idempotency_key: str | None) -> TaskRecord:
        now = time.time()
        self._sql("DELETE FROM tasks WHERE expires < ?", now)
        task_id = uuid.uuid4().hex
        digest = fingerprint(body)
        try:
            self._sql("INSERT INTO tasks (task_id, endpoint, status, body, content_type, "
                      "idempotency_key, request_hash, created, updated) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", task_id, endpoint, QUEUED, body,
                      content_type, idempotency_key, digest, now, now)
        except sqlite3.IntegrityError:  # the key was used: the same task again
            task_id, sent = self._sql("SELECT task_id, request_hash FROM tasks WHERE "
                                      "endpoint = ? AND idempotency_key = ?", endpoint,
                                      idempotency_key).fetchone()
            if sent not in (None, digest):  # None: recorded before bodies were told apart
                raise KeyReused(idempotency_key) from None
        else:
            if endpoint in self._queues and not self._stopping.is_set():
                self._queues[endpoint].put(task_id)
        record = self.get(task_id)
        assert record is not None
        return record

    def get(self, task_id: str) -> TaskRecord | None:
        row = self._sql(f"SELECT {_RECORD} FROM tasks WHERE task_id = ? AND "
                        "(expires IS NULL OR expires >= ?)", task_id, time.time()).fetchone()
        if row is None:
            return None
        record = TaskRecord(*row)
        record.result = json.loads(record.result) if record.result is not None else None
        return record

    def update(self, task_id: str, message: str, progress: float | None) -> None:
        self._sql("UPDATE tasks SET message = ?, progress = COALESCE(?, progress), updated = ? "
                  "WHERE task_id = ? AND status = ?", message, progress, time.time(), task_id,
                  RUNNING)

    def claim(self, task_id: str) -> TaskInput | None:
        cursor = self._sql("UPDATE tasks SET status = ?, updated = ? WHERE task_id = ? AND "
                           "status = ? RETURNING endpoint, body, content_type",
                           RUNNING, time.time(), task_id, QUEUED)
        row = cursor.fetchone()
        return TaskInput(task_id, row[0], row[1] or b"", row[2]) if row else None

    def finish(self, task_id: str, status: str, result: Any, error: str | None) -> None:
        now = time.time()
        self._sql("UPDATE tasks SET status = ?, result = ?, error = ?, body = NULL, "
                  "progress = CASE WHEN ? THEN 1.0 ELSE progress END, updated = ?, expires = ? "
                  "WHERE task_id = ? AND status = ?", status,
                  None if result is None else json.dumps(result), error, status == COMPLETED,
                  now, now + self.ttl, task_id, RUNNING)

    def amend(self, task_id: str, message: str, error: str | None) -> None:
        now = time.time()
        self._sql("UPDATE tasks SET message = ?, status = COALESCE(?, status), "
                  "error = COALESCE(?, error), updated = ? WHERE task_id = ? AND status IN "
                  "(?, ?) AND expires >= ?", message, None if error is None else FAILED, error,
                  now, task_id, COMPLETED, FAILED, now)

    def counts(self) -> dict[str, int]:
        rows = self._sql("SELECT status, COUNT(*) FROM tasks WHERE expires IS NULL OR "
                         "expires >= ? GROUP BY status", time.time()).fetchall()
        return {status: 0 for status in STATUSES} | dict(rows)

    # The drain (server.Drainable)
    def stop_taking(self) -> None:
        self._stopping.set()
        for endpoint, tasks in self._queues.items():
            for _ in range(self.functions[endpoint][1]):  # one per worker thread
                tasks.put(_STOP)

    def abandon(self) -> None:
        for task_id in self.running():
            self._sql("UPDATE tasks SET status = ?, updated = ? WHERE task_id = ? AND status = ?",
                      QUEUED, time.time(), task_id, RUNNING)
