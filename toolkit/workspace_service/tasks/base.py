"""The task store interface, and running one task, shared by every kind of store.

A task is at least once, never lost: its record is written before the client
gets its 202, a task found `running` after a crash runs again, and a record
once `completed` or `failed` is never changed by a second run. Every task ends
`completed` (the function returned) or `failed` (it raised): BentoML and AI4E
leave a task that raised "in progress" forever.
"""

import hashlib
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..limits import is_json
from ..server import Drainable

log = logging.getLogger("workspace_service.tasks")
QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED)


class TaskStoreError(Exception):
    """The store cannot be used (an unwritable TASKS_DB, a Redis that does not answer)."""


class KeyReused(Exception):
    """An Idempotency-Key sent again with another body: which request is meant cannot
    be known (draft-ietf-httpapi-idempotency-key-header: 422)."""


def fingerprint(body: bytes) -> str:
    """What tells one request body from another, kept beside an idempotency key."""
    return hashlib.sha256(body).hexdigest()


class TaskStoreUnavailable(Exception):
    """The store stopped answering while serving (Redis went away): the request is
    answered 503, to retry; the next request tries the store again."""


@dataclass
class TaskRecord:
    """What `GET /tasks/<id>` tells about one task."""

    task_id: str
    endpoint: str
    status: str
    message: str
    progress: float | None
    result: Any
    error: str | None
    created: float  # Unix time
    updated: float

    def to_json(self) -> dict[str, Any]:
        """The status document (times in ISO 8601, UTC)."""
        return {"task_id": self.task_id, "status": self.status, "message": self.message,
                "progress": self.progress, "result": self.result, "error": self.error,
                "created": _iso(self.created), "updated": _iso(self.updated)}


@dataclass
class TaskInput:
    """A claimed task's input, as the client sent it."""

    task_id: str
    endpoint: str
    body: bytes
    content_type: str


class Task:
    """What a task function is given: `task.id`, `task.input`, `task.update(...)`."""

    def __init__(self, store: "TaskBackend", claimed: TaskInput) -> None:
        self.id = claimed.task_id
        self.endpoint = claimed.endpoint
        self.content_type = claimed.content_type
        self.body = claimed.body
        #: The parsed JSON body for a JSON content type, else the raw bytes.
        self.input: Any = json.loads(claimed.body) if is_json(claimed.content_type) else \
            claimed.body
        self._store = store

    def update(self, message: str, progress: float | None = None) -> None:
        """Report how far the task got; `progress` from 0 to 1."""
        self._store.update(self.id, message, progress)


TaskFunction = Callable[[Task], Any]


class TaskBackend(Drainable, ABC):
    """Task records (create, read, update) plus the workers that run them."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.functions: dict[str, tuple[TaskFunction, int]] = {}
        self._running: set[str] = set()  # ids of the tasks this process runs now
        self._running_lock = threading.Lock()

    def register(self, endpoint: str, function: TaskFunction, max_concurrent: int) -> None:
        """Run `function` for tasks posted to `endpoint`, at most `max_concurrent` at once."""
        self.functions[endpoint] = (function, max_concurrent)

    @abstractmethod
    def open(self) -> None:
        """Connect, or fail with `TaskStoreError`; called before the port opens."""

    @abstractmethod
    def start(self) -> None:
        """Begin running queued tasks (after the service's startup finished)."""

    @abstractmethod
    def create(self, endpoint: str, body: bytes, content_type: str,
               idempotency_key: str | None) -> TaskRecord:
        """Record a queued task and queue it; with a key already used here, the earlier
        task, or `KeyReused` when that task's body was another."""

    @abstractmethod
    def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, or None when unknown or expired."""

    @abstractmethod
    def update(self, task_id: str, message: str, progress: float | None) -> None:
        """Set a running task's message and progress."""

    @abstractmethod
    def claim(self, task_id: str) -> TaskInput | None:
        """Mark a queued task running and return its input; None when it is not queued
        (already finished by another run, or expired)."""

    @abstractmethod
    def finish(self, task_id: str, status: str, result: Any, error: str | None) -> None:
        """Record the end of a run (`completed` with `result` or `failed` with `error`)."""

    @abstractmethod
    def amend(self, task_id: str, message: str, error: str | None) -> None:
        """Set a finished task's message, and with `error` make it failed; nothing for a
        queued, running or expired one. For AI4E code, which has the last word on its
        task also after its function returned (CameraTraps ends tasks from a thread)."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """How many tasks are in each status (for metrics and autoscalers)."""

    def run(self, task_id: str) -> None:
        """One delivery of a queued task, in a worker thread: claim it (none when another
        run already finished it), run it to its end, and count it as running meanwhile."""
        claimed = self.claim(task_id)
        if claimed is None:
            return
        with self._running_lock:
            self._running.add(task_id)
        try:
            self.execute(claimed)
        finally:
            with self._running_lock:
                self._running.discard(task_id)

    def busy(self) -> int:
        with self._running_lock:
            return len(self._running)

    def running(self) -> list[str]:
        """The ids of the tasks this process is running now (left to the next run by
        `abandon`)."""
        with self._running_lock:
            return list(self._running)

    def execute(self, claimed: TaskInput) -> None:
        """Run one claimed task to its end: completed with its result, or failed."""
        function, _ = self.functions[claimed.endpoint]
        started = time.monotonic()
        try:
            result = function(Task(self, claimed))
            json.dumps(result, allow_nan=False)  # a result JSON cannot carry fails the task
        except (Exception, SystemExit) as exc:  # sys.exit() in a task ends the task only
            log.exception("task %s (%s) failed", claimed.task_id, claimed.endpoint)
            self.finish(claimed.task_id, FAILED, None, f"{type(exc).__name__}: {exc}")
            return
        log.info("task %s (%s) completed in %.1f s", claimed.task_id, claimed.endpoint,
                 time.monotonic() - started)
        self.finish(claimed.task_id, COMPLETED, result, None)


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")
