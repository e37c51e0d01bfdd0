"""AI for Earth's `AI4EAppInsights`: the same logging calls, written to stdout.

AI4E sent these to Azure Application Insights (and dropped them without an
instrumentation key). Here every call is one line on stdout, where the runner
and any container log collector pick it up, so a service written for AI4E
keeps its `log.log_debug('Running model', taskId)` lines and they are seen.
The parameter names (`taskId`, `additionalProperties`) are AI4E's.

`AppInsights(app)`, AI4E's Flask extension (module `ai4e_app_insights`), sent
request, trace and exception telemetry; the toolkit's access log and crash log
already write those to stdout, so it is accepted and does nothing (it adds no
error handler: the toolkit's problem+json answers stay).
"""

import json
import logging
import sys
from collections.abc import Mapping

Properties = Mapping[str, object] | None


def _stdout_logger() -> logging.Logger:
    """The `ai4e` logger with one stdout handler of its own (added once)."""
    log = logging.getLogger("ai4e")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s ai4e %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False  # one line per call, whatever the root logger does
    return log


def _text(message: object, task_id: str | None, properties: Properties) -> str:
    """One line: the message (a traceback list joined), the task id, the properties as JSON."""
    if isinstance(message, list | tuple):
        message = "".join(map(str, message))
    text = str(message).rstrip("\n")
    if task_id:
        text += f" task_id={task_id}"
    if properties:
        text += " " + json.dumps(dict(properties), default=str)
    return text


class AI4EAppInsights:
    """AI4E's logger: `log_*` with an optional task id and extra properties, `track_metric`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.log = _stdout_logger()  # AI4E read its settings from the environment: none here

    def log_debug(self, message: object, taskId: str | None = None,
                  additionalProperties: Properties = None) -> None:
        self.log.debug("%s", _text(message, taskId, additionalProperties))

    def log_info(self, message: object, taskId: str | None = None,
                 additionalProperties: Properties = None) -> None:
        self.log.info("%s", _text(message, taskId, additionalProperties))

    def log_warn(self, message: object, taskId: str | None = None,
                 additionalProperties: Properties = None) -> None:
        self.log.warning("%s", _text(message, taskId, additionalProperties))

    def log_error(self, message: object, taskId: str | None = None,
                  additionalProperties: Properties = None) -> None:
        self.log.error("%s", _text(message, taskId, additionalProperties))

    def log_exception(self, message: object, taskId: str | None = None,
                      additionalProperties: Properties = None) -> None:
        """AI4E logged exceptions at CRITICAL; `message` is often a formatted traceback list."""
        self.log.critical("%s", _text(message, taskId, additionalProperties))

    def track_metric(self, name: str, value: float, *args: object, **kwargs: object) -> None:
        """One `metric NAME=VALUE` line (AI4E's further arguments, type, count ..., ignored)."""
        self.log.info("metric %s=%s", name, value)


class AppInsights:
    """AI4E's Flask extension: `AppInsights(app)` or `init_app(app)`, then `flush()`."""

    def __init__(self, app: object = None, context: object = None) -> None:
        if app is not None:
            self.init_app(app, context)

    def init_app(self, app: object, context: object = None) -> None:
        """Nothing to set up: requests and exceptions are in the toolkit's log already."""

    def flush(self) -> None:
        """Nothing queued: every line was written when it was logged."""
