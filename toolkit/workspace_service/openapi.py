"""`GET /openapi.json`: an OpenAPI 3.1 document of every endpoint and task route.

Built with apispec (the `openapi` extra) from what the decorators were told:
methods, content types, the limits' refusals (400, 411, 413, 415, 503) and the
task documents, so that a client generator or a fuzzer (schemathesis) sees
every answer the service can give.
"""

import re
from typing import Any

from .limits import is_json

PROBLEM = {"$ref": "#/components/schemas/Problem"}
_PARAM = re.compile(r"<(?:(?P<converter>[a-z]+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_PARAM_TYPES = {"int": "integer", "float": "number"}


def document(title: str, version: str, base_path: str, routes: list) -> dict[str, Any]:
    """The whole document; `routes` are the service's `Route`s."""
    from apispec import APISpec  # the openapi extra, imported only when the document is asked

    spec = APISpec(title=title, version=version, openapi_version="3.1.0",
                   servers=[{"url": base_path or "/"}])
    for name, schema in _SCHEMAS.items():
        spec.components.schema(name, schema)
    for route in routes:
        path, parameters = _path(route.rule)
        build = _task_operation if route.is_task else _operation
        spec.path(path=path, parameters=parameters,
                  operations={m.lower(): build(route) for m in route.methods})
    if any(route.is_task for route in routes):
        spec.path(path="/tasks/{task_id}", parameters=[_parameter("task_id", "string")],
                  operations={"get": _task_status_operation()})
    for probe, summary in (("health", "Liveness: 200 while the process works"),
                           ("ready", "Readiness: 200 when it takes requests")):
        spec.path(path=f"/{probe}", operations={"get": _probe_operation(summary)})
    return spec.to_dict()


def _path(rule: str) -> tuple[str, list[dict]]:
    """A Flask rule as an OpenAPI path, with its parameters: `/a/<int:n>` → `/a/{n}`."""
    parameters = [_parameter(m["name"], _PARAM_TYPES.get(m["converter"] or "", "string"))
                  for m in _PARAM.finditer(rule)]
    return _PARAM.sub(lambda m: "{" + m["name"] + "}", rule), parameters


def _parameter(name: str, kind: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _problem(description: str) -> dict:
    return {"description": description, "content": {"application/problem+json":
                                                    {"schema": PROBLEM}}}


def _refusals(route: Any) -> dict[str, dict]:
    """The answers a route's limits can give, beside its success."""
    limits = route.limits
    answers = {"404": _problem("No such resource"),
               "500": _problem("The handler failed (details in the service log)"),
               "503": _problem("Not ready, at its concurrency limit, or the task store "
                               "does not answer; see Retry-After")}
    if limits.content_types:
        answers["411"] = _problem("A body without Content-Length")
        answers["415"] = _problem(f"Content-Type not one of {', '.join(limits.content_types)}")
        if any(is_json(t) for t in limits.content_types):
            answers["400"] = _problem("The body is not valid JSON (or not an object)")
    if limits.max_content_length is not None:
        answers["413"] = _problem(f"The body is over {limits.max_content_length} bytes")
    answers.update({str(status): _problem(text) for status, text in route.responses.items()})
    return answers


def _request_body(route: Any) -> dict:
    limits = route.limits
    content = {}
    for kind in limits.content_types:
        schema = route.request_schema or ({"type": "object"} if is_json(kind) and
                                          limits.json_object else {})
        content[kind] = {"schema": schema}
    return {"required": True, "content": content}


def _operation(route: Any) -> dict:
    success = {"description": "The answer"}
    if route.response_schema is not None:
        success["content"] = {"application/json": {"schema": route.response_schema}}
    operation = {"summary": route.summary, "responses": {"200": success, **_refusals(route)}}
    if route.limits.content_types and "GET" not in route.methods:
        operation["requestBody"] = _request_body(route)
    return operation


def _task_operation(route: Any) -> dict:
    accepted = {"description": "Queued; poll its status URL",
                "headers": {"Location": {"schema": {"type": "string"},
                                         "description": "The task's status URL"}},
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/TaskAccepted"}}}}
    refused = {"422": _problem("The Idempotency-Key was sent before with another body"),
               **_refusals(route)}
    operation = {"summary": route.summary, "responses": {"202": accepted, **refused},
                 "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                 "schema": {"type": "string"},
                                 "description": "Sent again, returns the same task"}]}
    if route.limits.content_types:
        operation["requestBody"] = _request_body(route)
    return operation


def _task_status_operation() -> dict:
    return {"summary": "A task's status, progress and result",
            "responses": {"200": {"description": "The task", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/TaskStatus"}}}},
                "404": _problem("Unknown task, or expired"),
                "503": _problem("The task store (Redis) does not answer; see Retry-After")}}


def _probe_operation(summary: str) -> dict:
    probe = {"content": {"application/json": {"schema": {"$ref":
                                                         "#/components/schemas/Probe"}}}}
    return {"summary": summary,
            "responses": {"200": {"description": "Yes", **probe},
                          "500": {"description": "Startup failed", **probe},
                          "503": {"description": "Starting, draining or failed", **probe}}}


_SCHEMAS: dict[str, dict] = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "integer"}, "detail": {"type": "string"}}},
    "TaskAccepted": {"type": "object", "required": ["task_id", "status", "status_url"],
                     "properties": {"task_id": {"type": "string"},
                                    "status": {"type": "string", "enum": ["queued", "running",
                                                                          "completed", "failed"]},
                                    "status_url": {"type": "string"}}},
    "TaskStatus": {
        "type": "object",
        "required": ["task_id", "status", "message", "progress", "result", "error", "created",
                     "updated"],
        "properties": {
            "task_id": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "running", "completed", "failed"]},
            "message": {"type": "string"},
            "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "result": {},
            "error": {"type": ["string", "null"]},
            "created": {"type": "string", "format": "date-time"},
            "updated": {"type": "string", "format": "date-time"}}},
    "Probe": {"type": "object", "required": ["status"],
              "properties": {"status": {"type": "string"}, "health": {"type": "string"}}},
}
