"""`Service`: a Flask app with startup, limited endpoints, tasks, probes and a drain.

    svc = Service("iris")

    @svc.startup
    def load(): svc.state["model"] = ...

    @svc.endpoint("/predict", methods=["POST"], max_concurrent=4,
                  content_types=["application/json"], max_content_length=100_000)
    def predict(): ...

    @svc.task("/batch", max_concurrent=2, content_types=["application/json"])
    def batch(task): ...

    svc.serve()
"""

import functools
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import flask
from werkzeug.exceptions import HTTPException

from . import metrics, openapi, problems, server
from .accesslog import ROUTE_KEY, AccessLog, printable
from .basepath import BasePath, within
from .lifecycle import FAILED, STARTING, Lifecycle
from .limits import RETRY_AFTER, Limits, Rejected
from .metrics import Metrics
from .probes import Probes, probe_paths
from .settings import Settings, SettingsError, default_tasks_db
from .tasks.base import (
    KeyReused,
    TaskBackend,
    TaskFunction,
    TaskStoreError,
    TaskStoreUnavailable,
)

log = logging.getLogger("workspace_service")
TASK_STATUS_RULE = "/tasks/<task_id>"
#: Seconds a request that comes while the service is starting waits for it to be ready
#: before its 503 (as long as the Retry-After it would be told).
STARTING_HOLD = 1.0


@dataclass
class Route:
    """One endpoint or task route, as the OpenAPI document describes it."""

    rule: str
    methods: Sequence[str]
    limits: Limits
    summary: str
    is_task: bool
    request_schema: dict | None = None  # JSON Schema of the body (documentation only)
    response_schema: dict | None = None  # JSON Schema of a 200 answer (documentation only)
    responses: dict[int, str] = field(default_factory=dict)  # more answers it gives


class Service:
    """A model service: `svc.app` is its Flask app, `svc.state` a place for the model."""

    def __init__(self, name: str, *, version: str = "0.1.0",
                 settings: Settings | None = None, app: flask.Flask | None = None) -> None:
        self.name = name
        self.version = version
        self.settings = settings or _settings_or_exit()
        self.app = app or flask.Flask(name)  # `app`: one made before (AI4E's services do)
        self.state: dict[str, Any] = {}
        self.lifecycle = Lifecycle()
        self.routes: list[Route] = []
        self._startups: list[Callable[[], None]] = []
        self._tasks: TaskBackend | None = None
        self._metrics: Metrics | None = None  # when prometheus-client is installed
        self._wsgi: Callable | None = None
        self._body_limits: dict[Callable, int] = {}  # view → its max_content_length
        self._openapi: dict | None = None
        self.app.register_error_handler(problems.Problem, self._problem)
        self.app.register_error_handler(HTTPException, self._http_error)
        self.app.register_error_handler(TaskStoreUnavailable, self._store_unavailable)
        self.app.register_error_handler(Exception, self._crash)
        self.app.before_request(_note_route)
        self.app.add_url_rule("/openapi.json", view_func=self._openapi_document)
        self.app.add_url_rule("/metrics", view_func=self._metrics_text)

    # ---- decorators
    def startup(self, function: Callable[[], None]) -> Callable[[], None]:
        """Run `function` once at start, before the service reports ready."""
        self._startups.append(function)
        return function

    def endpoint(self, rule: str, *, methods: Sequence[str] = ("GET",),
                 max_concurrent: int | None = None, content_types: Sequence[str] | None = None,
                 max_content_length: int | None = None, json_object: bool = True,
                 request_schema: dict | None = None, response_schema: dict | None = None,
                 responses: dict[int, str] | None = None,
                 **options: Any) -> Callable[[Callable], Callable]:
        """A Flask route whose limits are checked before `function` runs.

        `request_schema`, `response_schema` and `responses` (status → what it
        means) only document the route in /openapi.json."""
        limits = Limits(max_concurrent, content_types, max_content_length, json_object)

        def decorate(function: Callable) -> Callable:
            @functools.wraps(function)
            def view(**kwargs: Any) -> Any:
                self._refuse_unless_started()
                if not limits.reads_body and limits.max_concurrent is None:
                    return function(**kwargs)  # nothing to check: the short way
                limits.check(flask.request)
                with limits.slot():
                    limits.read_body(flask.request)
                    return function(**kwargs)

            self.app.add_url_rule(rule, view_func=view, methods=list(methods), **options)
            self._note_body_limit(view, limits)
            self.routes.append(Route(rule, list(methods), limits, _summary(function), False,
                                     request_schema, response_schema, responses or {}))
            return function
        return decorate

    def task(self, rule: str, *, max_concurrent: int = 1,
             content_types: Sequence[str] | None = None, max_content_length: int | None = None,
             json_object: bool = True, request_schema: dict | None = None,
             responses: dict[int, str] | None = None,
             ) -> Callable[[TaskFunction], TaskFunction]:
        """`POST rule` queues a task that runs `function(task)`; 202 with its status URL.
        `max_concurrent` tasks of this route run at once, the others wait queued."""
        limits = Limits(None, content_types, max_content_length, json_object)

        def decorate(function: TaskFunction) -> TaskFunction:
            tasks = self._task_backend()
            tasks.register(rule, function, max_concurrent)

            @functools.wraps(function)
            def view() -> flask.Response:
                self._refuse_unless_started()
                limits.check(flask.request)
                body = limits.read_body(flask.request)
                key = flask.request.headers.get("Idempotency-Key") or None  # "": no key
                try:
                    record = tasks.create(rule, body, flask.request.mimetype, key)
                except KeyReused:
                    raise problems.Problem(422, f"Idempotency-Key {key!r} was sent before with "
                                           "another body: send a new key for a new request"
                                           ) from None
                url = f"{flask.request.script_root}/tasks/{record.task_id}"
                answer = flask.jsonify(task_id=record.task_id, status=record.status,
                                       status_url=url)
                answer.status_code = 202
                answer.headers["Location"] = url
                return answer

            self.app.add_url_rule(rule, view_func=view, methods=["POST"])
            self._note_body_limit(view, limits)
            self.routes.append(Route(rule, ["POST"], limits, _summary(function), True,
                                     request_schema, None, responses or {}))
            return function
        return decorate

    def _note_body_limit(self, view: Callable, limits: Limits) -> None:
        if limits.max_content_length is not None:
            self._body_limits[view] = limits.max_content_length

    def _body_limit(self, method: str, path: str) -> int | None:
        """The `max_content_length` of the route `method path` goes to (None: no limit),
        for the server to refuse a larger body before reading it."""
        if self.settings.base_path:
            path = within(self.settings.base_path, path)
            if path is None:
                return None
        try:
            rule, _ = self.app.url_map.bind("localhost").match(path, method, return_rule=True)
        except Exception:  # werkzeug's NotFound, MethodNotAllowed or RequestRedirect
            return None
        return self._body_limits.get(self.app.view_functions.get(rule.endpoint))

    # ---- serving
    @property
    def wsgi(self) -> Callable:
        """The whole WSGI app that `serve()` serves: access log, probes, base path, then
        Flask (built once). Startup and task workers are `serve()`'s, not this app's."""
        if self._wsgi is None:
            try:
                self._metrics = metrics.Metrics(self._tasks)
            except ImportError:  # no `prometheus` extra: no /metrics
                self._metrics = None
            app = BasePath(self.app, self.settings.base_path) if self.settings.base_path \
                else self.app
            probes = probe_paths(self.settings.base_path)
            self._wsgi = AccessLog(Probes(app, self.lifecycle, probes), self._metrics)
        return self._wsgi

    def serve(self) -> NoReturn:
        """Serve on $HOST:$PORT until SIGTERM/SIGINT, drain, and exit (0 after a full drain,
        1 when startup raised or requests were left unanswered)."""
        server.configure_logging()
        try:
            if self._tasks is not None:
                self._tasks.open()
        except TaskStoreError as exc:
            sys.exit(f"error: {exc}")
        # Metrics ride with the probes: an autoscaler needs them most when every
        # request thread is busy.
        fast = {*probe_paths(self.settings.base_path), f"{self.settings.base_path}/metrics"}
        code = server.run(self.wsgi, self.settings, self.lifecycle, probe_paths=fast,
                          started=self._start, work=self._tasks, body_limit=self._body_limit)
        sys.exit(code)

    def _start(self, failed: Callable[[str], None]) -> None:
        threading.Thread(target=self._run_startup, args=(failed,), name="startup",
                         daemon=True).start()

    def _run_startup(self, failed: Callable[[str], None]) -> None:
        try:
            for function in self._startups:
                function()
        except (Exception, SystemExit) as exc:  # sys.exit() here must not end a thread unseen
            log.exception("startup failed: the service exits")
            self.lifecycle.fail()
            failed(f"{type(exc).__name__}: {exc}")
            return
        if self.lifecycle.status != STARTING:  # a stop began while starting: start no work
            return
        if self._tasks is not None:
            self._tasks.start()
        self.lifecycle.ready()
        log.info("ready")

    # ---- tasks
    def _task_backend(self) -> TaskBackend:
        if self._tasks is None:
            self._tasks = self._new_task_backend()
            self.app.add_url_rule(TASK_STATUS_RULE, view_func=self._task_status,
                                  methods=["GET"])
        return self._tasks

    def _new_task_backend(self) -> TaskBackend:
        if self.settings.redis_url:
            from .tasks.redis import RedisBackend  # imports redis (~140 ms) only here
            return RedisBackend(self.settings.redis_url, self.name, self.settings.task_ttl,
                                self.settings.redis_heartbeat_timeout)
        from .tasks.sqlite import SQLiteBackend
        path = Path(self.settings.tasks_db) if self.settings.tasks_db else \
            default_tasks_db(self.name)
        return SQLiteBackend(path, self.settings.task_ttl)

    @property
    def tasks(self) -> TaskBackend:
        """The task store (records and workers); created by the first `@svc.task`."""
        return self._task_backend()

    def _task_status(self, task_id: str) -> dict[str, Any]:
        record = self.tasks.get(task_id)
        if record is None:
            raise problems.Problem(404, f"no task {task_id} (unknown, or expired)")
        return record.to_json()

    # ---- documents
    def _openapi_document(self) -> dict:
        if self._openapi is None:
            try:
                self._openapi = openapi.document(self.name, self.version,
                                                 self.settings.base_path, self.routes)
            except ImportError:
                raise problems.Problem(501, "the OpenAPI document needs apispec: "
                                       "pip install 'workspace-service[openapi]'") from None
        return self._openapi

    def _metrics_text(self) -> flask.Response:
        if self._metrics is None:
            raise problems.Problem(404, "metrics need prometheus-client: "
                                   "pip install 'workspace-service[prometheus]'")
        return flask.Response(self._metrics.render(), content_type=metrics.CONTENT_TYPE)

    # ---- answers
    def _refuse_unless_started(self) -> None:
        """503 while starting or after startup failed. A request that comes while
        starting first waits up to STARTING_HOLD: a load balancer without a readiness
        probe (nginx) sends requests once the port accepts, and a 503 to a POST it has
        sent is lost. A draining service still serves: for DRAIN_DELAY the load balancer
        may still send requests, and after it the listener is closed, so what arrives
        was accepted and must be answered."""
        status = self.lifecycle.past_starting(STARTING_HOLD)
        if status in (STARTING, FAILED):
            raise Rejected(503, f"the service is {status}; retry shortly", status,
                           {"Retry-After": RETRY_AFTER})

    def _problem(self, exc: problems.Problem) -> flask.Response:
        if isinstance(exc, Rejected) and self._metrics:
            self._metrics.rejected(exc.reason)
        return _problem_response(exc.status, exc.detail, exc.headers, **exc.extra)

    def _http_error(self, exc: HTTPException) -> flask.Response:
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return _problem_response(exc.code or 500, exc.description or "", headers)

    def _store_unavailable(self, exc: TaskStoreUnavailable) -> flask.Response:
        log.warning("task store unavailable: %s (%s %s answered 503)", exc,
                    flask.request.method, printable(flask.request.path))
        return self._problem(Rejected(503, "the task store does not answer; retry shortly",
                                      "task_store", {"Retry-After": RETRY_AFTER}))

    def _crash(self, exc: Exception) -> flask.Response:
        rid = flask.request.headers.get("X-Request-ID", "")
        log.error("request %s %s (id %s) failed", flask.request.method,
                  printable(flask.request.path), rid, exc_info=exc)
        return _problem_response(500, f"the handler failed; the service log has the details"
                                 f" (request id {rid})", {})


def _problem_response(status: int, detail: str, headers: dict[str, str],
                      **extra: object) -> flask.Response:
    answer = flask.Response(problems.body(status, detail, **extra), status=status,
                            content_type=problems.PROBLEM_TYPE)
    answer.headers.update(headers)
    return answer


def _note_route() -> None:
    """Tell the access log (metrics labels) which route template matched."""
    if flask.request.url_rule is not None:
        flask.request.environ[ROUTE_KEY] = flask.request.url_rule.rule


def _summary(function: Callable) -> str:
    return (function.__doc__ or function.__name__).strip().splitlines()[0]


def _settings_or_exit() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
