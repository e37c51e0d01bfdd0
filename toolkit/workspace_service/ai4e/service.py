"""AI for Earth's `APIService` (also `AI4EService`, `AI4EWrapper`) on the toolkit's `Service`.

A service written for AI4E's framework (seed 000) runs unchanged:

    app = Flask(__name__)
    ai4e_service = APIService(app, log)

    @ai4e_service.api_async_func(api_path='/example', methods=['POST'],
                                 request_processing_function=process_request_data,
                                 maximum_concurrent_requests=3,
                                 content_types=['application/json'],
                                 content_max_length=1000, trace_name='post:example')
    def default_post(*args, **kwargs): ...     # kwargs: taskId, the processing function's keys

    @ai4e_service.api_sync_func(api_path='/echo/<string:text>', methods=['GET'])
    def echo(*args, **kwargs): return 'Echo: ' + kwargs['text']

    if __name__ == '__main__':
        app.run()        # serves through the toolkit: $HOST:$PORT, probes, the drain

AI4E's routes stay: every one under `API_PREFIX`, a health check at
`GET {prefix}/`, the task status at `GET {prefix}/task/<id>`, the async reply
`TaskId: <id>`. AI4E's faults do not: a wrong content type is 415 (AI4E: 401),
a missing Content-Length with a JSON body 411 (AI4E crashed), limits hold on
parameterised routes too (AI4E compared the literal path) and are counted
under a lock, an unknown task is 404 (AI4E: 200 "Not found."), a task that
raises is failed (AI4E left it running), tasks outlive a restart, and a stop
drains instead of refusing at once. `trace_name` and any other keyword
argument AI4E accepted are ignored, as AI4E ignored unknown ones.
"""

import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import flask
import werkzeug

from .. import server
from ..lifecycle import DRAINING, FAILED
from ..problems import Problem
from ..service import TASK_STATUS_RULE, Service
from ..tasks.base import QUEUED, Task
from .tasks import (
    REQUEST_TYPE,
    PreparedValues,
    TaskManager,
    queued_request,
    rebuilt_request,
    status_document,
    toolkit_document,
)

log = logging.getLogger("workspace_service.ai4e")
ProcessingFunction = Callable[[flask.Request], dict[str, Any]]
ENDPOINT = "ai4e:"  # starts the Flask endpoint names of the decorators' routes


class APIService:
    """AI4E's service wrapper around a Flask app: sync and async endpoint decorators."""

    def __init__(self, flask_app: flask.Flask, logger: object = None) -> None:
        self.app = flask_app
        self.log = logger
        self.service = Service(_name(flask_app), app=flask_app)
        self.api_prefix = self.service.settings.base_path
        self.api_task_manager = TaskManager(self.service)
        self._prepared = PreparedValues()
        #: AI4E's running requests per path, which code reads and sets (CameraTraps sets its
        #: own route's to 0); counted by the thread helpers below. The decorators' limits
        #: are the toolkit's, counted under a lock of their own.
        self.func_request_counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._show_status_objects(flask_app)
        _unprefix_plain_routes(flask_app, self.api_prefix)
        flask_app.add_url_rule("/", "ai4e_health_check", self.health_check, methods=["GET"])
        flask_app.add_url_rule("/task/<task_id>", "ai4e_task_status", self.task_status,
                               methods=["GET"])
        flask_app.run = self.run  # AI4E's `app.run()` (its uwsgi stand-in) serves through us

    @property
    def is_terminating(self) -> bool:
        """AI4E's flag: a stop has begun (the toolkit refuses new work then)."""
        return self.service.lifecycle.status == DRAINING

    def health_check(self) -> tuple[str, int]:
        """AI4E's `GET {prefix}/`: 200 "Health check OK" while alive (starting and draining
        too); 500 once startup failed (AI4E's was 200 whatever happened)."""
        if self.service.lifecycle.status == FAILED:
            raise Problem(500, "the service's startup failed; it is exiting")
        return "Health check OK", 200

    def task_status(self, task_id: str) -> dict[str, Any]:
        """AI4E's `GET {prefix}/task/<id>`: AI4E's keys beside the toolkit's; 404 when unknown."""
        record = self.service.tasks.get(task_id)
        if record is None:
            raise Problem(404, f"no task {task_id} (unknown, or expired)")
        return status_document(record, self.api_prefix)

    def _show_status_objects(self, flask_app: flask.Flask) -> None:
        """The toolkit's `GET /tasks/<id>` (where `Location` points) shows a status object
        as its JSON text, as AI4E's route does, not as the message that keeps it."""
        rule = next(r for r in flask_app.url_map.iter_rules() if r.rule == TASK_STATUS_RULE)
        flask_app.view_functions[rule.endpoint] = self._toolkit_task_status

    def _toolkit_task_status(self, task_id: str) -> dict[str, Any]:
        record = self.service.tasks.get(task_id)
        if record is None:
            raise Problem(404, f"no task {task_id} (unknown, or expired)")
        return toolkit_document(record)

    def api_sync_func(self, api_path: str, methods: Sequence[str],
                      request_processing_function: ProcessingFunction | None = None,
                      maximum_concurrent_requests: int | None = None,
                      content_types: Sequence[str] | None = None,
                      content_max_length: int | None = None, trace_name: str | None = None,
                      *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        """An endpoint answering with `func(**kwargs)`: the URL's values, then the
        processing function's keys."""
        def decorate(func: Callable) -> Callable:
            @functools.wraps(func)
            def view(**url_values: Any) -> Any:
                values = _processed(request_processing_function)
                return func(**{"api_path": api_path, **url_values, **values})

            self._endpoint(api_path, methods, maximum_concurrent_requests, content_types,
                           content_max_length)(view)
            return func
        return decorate

    def api_async_func(self, api_path: str, methods: Sequence[str],
                       request_processing_function: ProcessingFunction | None = None,
                       maximum_concurrent_requests: int | None = None,
                       content_types: Sequence[str] | None = None,
                       content_max_length: int | None = None, trace_name: str | None = None,
                       *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        """A long-running endpoint: the request is queued as a task and answered
        `TaskId: <id>` at once; `func(taskId=..., **kwargs)` runs in a task worker.

        `maximum_concurrent_requests` tasks of this route run at once; more wait
        queued (AI4E refused them with 503). The request processing function runs
        in the request, as in AI4E (its `abort(400)` is the caller's answer and no
        task is made); its values are kept for the task's run in this process, and
        made again from the queued request by a run after a restart.
        """
        def decorate(func: Callable) -> Callable:
            def run(task: Task) -> Any:
                with rebuilt_request(self.app, task):
                    values = self._prepared.take(task.id)
                    if values is None:  # queued by another run, or waited too long
                        values = _processed(request_processing_function)
                    url_values = flask.request.view_args or {}
                    return _storable(func(**{"api_path": api_path, **url_values, **values,
                                             "taskId": task.id}))

            functools.update_wrapper(run, func)
            self.service.tasks.register(api_path, run, maximum_concurrent_requests or 1)

            @functools.wraps(func)
            def submit(**url_values: Any) -> flask.Response:
                request = flask.request
                queued = queued_request(request)  # first: a form parsed later keeps its body
                values = _processed(request_processing_function)  # its abort() answers here
                with self._prepared.keeping() as keep:
                    record = self.service.tasks.create(api_path, queued, REQUEST_TYPE,
                                                       request.headers.get("Idempotency-Key"))
                    if record.status == QUEUED:
                        keep(record.task_id, values)
                answer = flask.make_response(f"TaskId: {record.task_id}")
                answer.mimetype = "text/plain"
                answer.headers["Location"] = f"{request.script_root}/tasks/{record.task_id}"
                return answer

            self._endpoint(api_path, methods, None, content_types, content_max_length)(submit)
            return func
        return decorate

    def _endpoint(self, api_path: str, methods: Sequence[str], max_concurrent: int | None,
                  content_types: Sequence[str] | None,
                  max_content_length: int | None) -> Callable[[Callable], Callable]:
        """The toolkit's endpoint with AI4E's limits; any JSON is accepted (AI4E checked none)."""
        return self.service.endpoint(api_path, methods=list(methods), max_concurrent=max_concurrent,
                                     content_types=content_types,
                                     max_content_length=max_content_length, json_object=False,
                                     endpoint=f"{ENDPOINT}{','.join(methods)}:{api_path}")

    def wrap_sync_endpoint(self, trace_name: str | None = None, *args: Any,
                           **kwargs: Any) -> Any:
        """AI4E's: `kwargs['func'](*args, **kwargs)`, counted (`trace_name` is ignored)."""
        return self._execute_func_with_counter(*args, **kwargs)

    def wrap_async_endpoint(self, trace_name: str | None = None, *args: Any,
                            **kwargs: Any) -> None:
        """AI4E's: `kwargs['func'](*args, **kwargs)` in a thread of its own."""
        self._create_and_execute_thread(*args, **kwargs)

    def _create_and_execute_thread(self, *args: Any, **kwargs: Any) -> None:
        """AI4E's private helper, which CameraTraps' batch API calls. The thread is no task
        of the toolkit's: a stop does not wait for it, a restart does not run it again."""
        threading.Thread(target=self._run_in_thread, args=args, kwargs=kwargs,
                         daemon=True).start()

    def _run_in_thread(self, *args: Any, **kwargs: Any) -> None:
        """A thread's function; if it raises, logged, and the task named `taskId` failed
        with AI4E's words (AI4E meant to, but its handler raised a TypeError instead)."""
        try:
            self._execute_func_with_counter(*args, **kwargs)
        except Exception:
            log.exception("%s (%s) failed", getattr(kwargs["func"], "__name__", "a function"),
                          kwargs.get("api_path"))
            if kwargs.get("taskId"):
                self.api_task_manager.FailTask(
                    kwargs["taskId"], "Task failed - please contact support or try again.")

    def _execute_func_with_counter(self, *args: Any, **kwargs: Any) -> Any:
        """`kwargs['func'](*args, **kwargs)`, counted in `func_request_counts` meanwhile."""
        key = self.api_prefix + kwargs["api_path"]
        self._count(key, 1)
        try:
            return kwargs["func"](*args, **kwargs)
        finally:
            self._count(key, -1)

    def _count(self, key: str, step: int) -> None:
        with self._counts_lock:
            self.func_request_counts[key] = self.func_request_counts.get(key, 0) + step

    def run(self, *args: Any, **kwargs: Any) -> None:
        """`app.run()`: serve through the toolkit on $HOST:$PORT (AI4E's own arguments,
        host, port, debug, are ignored: the runner sets PORT)."""
        server.configure_logging()  # before serve(), so that this line is in the same log
        if args or kwargs:
            given = [*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())]
            log.warning("app.run(%s): arguments ignored; serving on $HOST:$PORT",
                        ", ".join(given))
        self.service.serve()


AI4EService = AI4EWrapper = APIService  # AI4E's earlier names for the same class


def _name(app: flask.Flask) -> str:
    """The service's name: AI4E's SERVICE_MODEL_NAME, else the app's (unless `__main__`)."""
    name = os.environ.get("SERVICE_MODEL_NAME") or app.name
    return "ai4e-service" if name == "__main__" else name


def _unprefix_plain_routes(app: flask.Flask, prefix: str) -> None:
    """AI4E services write their plain Flask routes with the prefix (`@app.route(api_prefix
    + '/classify')`); the toolkit serves the whole app under it already, so it is taken off
    the rules added from now on (else they would answer only under the prefix twice)."""
    if not prefix:
        return
    add_url_rule = app.add_url_rule

    def add_unprefixed(rule: str, *args: Any, **kwargs: Any) -> None:
        decorated = str(kwargs.get("endpoint", "")).startswith(ENDPOINT)  # AI4E prefixed
        if not decorated and (rule == prefix or rule.startswith(prefix + "/")):  # any path
            rule = rule[len(prefix):] or "/"
        add_url_rule(rule, *args, **kwargs)

    app.add_url_rule = add_unprefixed  # type: ignore[method-assign]  # `app.route` calls it


def _processed(request_processing_function: ProcessingFunction | None) -> dict[str, Any]:
    """The processing function's keys for the current request ({} without one).

    A response it returns is the request's answer: CameraTraps' validation returns
    `make_response(jsonify(error=...), 400)` to refuse "without issuing a request_id"
    (AI4E crashed with 500 merging it into the function's arguments)."""
    if request_processing_function is None:
        return {}
    values = request_processing_function(flask.request)
    if isinstance(values, werkzeug.Response):
        flask.abort(values)
    return dict(values or {})


def _storable(result: Any) -> Any:
    """The task's result when it can be stored as JSON, else None: AI4E ignored what an
    async function returned (an image, a numpy array), so it must not fail the task."""
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return None
    return result
