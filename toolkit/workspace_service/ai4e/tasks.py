"""AI for Earth's task manager (`api_task_manager`) on the toolkit's task store.

AI4E kept task statuses in memory or in a JSON file of the container, lost
on restart, answered an unknown id with 200 "Not found." and never marked a
task that raised as failed. Here the calls keep their names and meaning
(`AddTask`, `UpdateTaskStatus`, `CompleteTask`, `FailTask`, `GetTaskStatus`)
but write the toolkit's records: in SQLite or Redis, every task ends
`completed` or `failed`, and a status document carries AI4E's keys (`TaskId`,
`Status`, `Timestamp`, `Endpoint`) beside the toolkit's. A status that is not
text (CameraTraps sets dicts) is kept as JSON and read back as that object.

A task of `api_async_func` is queued with its whole request (path, query
string, body, content type), so that it can run again after a restart: the
request processing function's values, made in the request, are kept in memory
for the task's run here; a run without them (after a restart, on another
replica) makes them again in a request context rebuilt from what was queued.
"""

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import flask

from ..tasks.base import COMPLETED, FAILED, QUEUED, Task, TaskRecord

if TYPE_CHECKING:
    from ..service import Service

#: The content type of a queued AI4E request (JSON: the task store parses it back).
REQUEST_TYPE = "application/vnd.workspace-service.ai4e-request+json"
#: The task route of tasks made by a direct `AddTask` call: their caller runs them, no
#: worker does (so one cut short by a restart is left queued: only its caller knew how).
ADDED = "/ai4e/added-task"
TIMESTAMP = "%Y-%m-%d %H:%M:%S"  # AI4E's, in UTC
#: Starts a task message that holds a status object as JSON: AI4E kept a status as it was
#: given, so a dict set by UpdateTaskStatus reaches the client as an object under `Status`.
JSON_STATUS = "\x1ejson:"


#: Seconds a request's processed values wait for their task's run here; a task that waits
#: longer (or runs on another replica, whose values are never taken) makes them again.
PREPARED_MAX_AGE = 600.0


class PreparedValues:
    """The request processing function's values of queued tasks, until their run takes them.

    A submit keeps them while holding the lock around `create`, so that the worker
    (which takes under the same lock) never runs before they are kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, dict[str, Any]]] = {}

    @contextmanager
    def keeping(self) -> Iterator[Callable[[str, dict[str, Any]], None]]:
        """Hold the lock; the callable keeps one task's values (and drops stale ones)."""
        def keep(task_id: str, values: dict[str, Any]) -> None:
            now = time.monotonic()
            for stale in [k for k, (at, _) in self._values.items()
                          if now - at > PREPARED_MAX_AGE]:
                del self._values[stale]
            self._values.setdefault(task_id, (now, values))

        with self._lock:
            yield keep

    def take(self, task_id: str) -> dict[str, Any] | None:
        """The task's values, once; None when none are kept here."""
        with self._lock:
            kept = self._values.pop(task_id, None)
        return None if kept is None else kept[1]


def queued_request(request: flask.Request) -> bytes:
    """The request as a task input: what rebuilding it in the task needs."""
    return json.dumps({
        "path": request.path,
        "query_string": request.query_string.decode("latin-1"),
        "method": request.method,
        "content_type": request.content_type or "",
        "body": base64.b64encode(request.get_data(cache=True)).decode(),
    }).encode()


def rebuilt_request(app: flask.Flask, task: Task) -> Any:
    """A request context like the one the task was posted in (push it with `with`)."""
    sent = task.input
    return app.test_request_context(
        sent["path"], method=sent["method"], query_string=sent["query_string"],
        data=base64.b64decode(sent["body"]), content_type=sent["content_type"] or None)


def status_text(status: Any) -> str:
    """A status as text: text as it is, any other value as JSON."""
    return status if isinstance(status, str) else json.dumps(status, default=str)


def encoded_status(status: Any) -> str:
    """A status as a task message: text as it is, any other value marked JSON."""
    return status if isinstance(status, str) else JSON_STATUS + status_text(status)


def decoded_status(message: str) -> tuple[Any, str]:
    """(the status as it was set, its text) of a task message."""
    if message.startswith(JSON_STATUS):
        text = message.removeprefix(JSON_STATUS)
        return json.loads(text), text
    return message, message


def toolkit_document(record: TaskRecord) -> dict[str, Any]:
    """The toolkit's status document, a status object's message as its JSON text."""
    return {**record.to_json(), "message": decoded_status(record.message)[1]}


def status_document(record: TaskRecord, base_path: str) -> dict[str, Any]:
    """The toolkit's status document plus AI4E's four keys.

    AI4E's `Status` was the last status the service set (text or an object); it
    is the message here, the error for a task that raised, "created" for a
    queued one (AI4E's word).
    """
    status, text = decoded_status(record.message)
    if record.status == FAILED and record.error != text:  # raised, not FailTask
        status = record.error or FAILED
    elif record.status == QUEUED and not record.message:
        status = "created"
    elif not record.message:
        status = record.status
    endpoint = "" if record.endpoint == ADDED else base_path + record.endpoint
    return {"TaskId": record.task_id, "Status": status, "Endpoint": endpoint,
            "Timestamp": datetime.fromtimestamp(record.updated, UTC).strftime(TIMESTAMP),
            **toolkit_document(record)}


class TaskManager:
    """AI4E's `api_task_manager`: its method names and arguments, the toolkit's store."""

    def __init__(self, service: "Service") -> None:
        self._service = service
        service.tasks  # noqa: B018 - made now: the store is opened at start, not per request

    def GetTaskId(self) -> str:
        """A fresh id, unused (AI4E's AddTask took one from here; code may too)."""
        return uuid.uuid4().hex

    def AddTask(self, request: flask.Request) -> dict[str, Any]:
        """A new task, running, for code that runs it itself (then Update/Complete/FailTask).

        Endpoints made with `api_async_func` have their tasks added for them.
        """
        tasks = self._service.tasks
        record = tasks.create(ADDED, b"", "", None)
        tasks.claim(record.task_id)  # running, as AI4E's code expects; no worker runs it
        return self.GetTaskStatus(record.task_id)

    def UpdateTaskStatus(self, taskId: str, status: Any) -> None:
        """Set a task's message (AI4E's status: text, or an object kept as JSON), also
        after its function returned: a thread it started may report on it (CameraTraps)."""
        message = encoded_status(status)
        self._service.tasks.update(taskId, message, None)  # running
        self._service.tasks.amend(taskId, message, None)  # finished

    def CompleteTask(self, taskId: str, status: Any) -> None:
        """The task is done: `completed`, with `status` as its last message."""
        self.UpdateTaskStatus(taskId, status)
        self._service.tasks.finish(taskId, COMPLETED, None, None)

    def FailTask(self, taskId: str, status: Any) -> None:
        """The task failed: `failed`, with `status` as its message and error (its text),
        also when its function returned (and so completed it) before."""
        self._service.tasks.update(taskId, encoded_status(status), None)
        self._service.tasks.finish(taskId, FAILED, None, status_text(status))
        self._service.tasks.amend(taskId, encoded_status(status), status_text(status))

    def GetTaskStatus(self, taskId: str) -> dict[str, Any]:
        """The status document; for an unknown or expired id AI4E's "Not found." document,
        which AI4E code reads (`GetTaskStatus(id)['Status']`). The HTTP route says 404."""
        record = self._service.tasks.get(str(taskId))
        if record is None:
            return {"TaskId": taskId, "Status": "Not found.", "Endpoint": "",
                    "Timestamp": datetime.now(UTC).strftime(TIMESTAMP)}
        return status_document(record, self._service.settings.base_path)
