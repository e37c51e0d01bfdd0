"""The environment variables that configure a service, read and checked once at start.

A wrong value is a clear `error:` line at start (`SettingsError`), never a
surprise at the first request or the first stop.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class SettingsError(Exception):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the environment decides about serving, stopping and tasks."""

    host: str = "0.0.0.0"
    port: int = 8091
    threads: int = 8  # request threads; probes have their own (see server.py)
    keepalive_timeout: float = 120  # idle keep-alive connections are closed after this
    connection_limit: int = 1000  # open connections at once; more wait in the listen backlog
    drain_delay: float = 0  # seconds still serving after a stop signal, /ready 503
    drain_timeout: float = 25  # then at most this long to answer requests and finish tasks
    base_path: str = ""  # API_PREFIX or LAB_SERVICE_PATH, without a trailing slash
    tasks_db: str = ""  # empty: the default place (see default_tasks_db)
    task_ttl: float = 86400  # finished tasks are kept this long
    redis_url: str = ""  # set: tasks go through Redis
    redis_heartbeat_timeout: float = 60  # a replica silent this long has its tasks run elsewhere

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Read every variable, failing with `SettingsError` on the first bad one."""
        return cls(
            host=env.get("HOST", cls.host),
            port=_number(env, "PORT", cls.port, int),
            threads=_number(env, "THREADS", cls.threads, int, minimum=1),
            keepalive_timeout=_number(env, "KEEPALIVE_TIMEOUT", cls.keepalive_timeout),
            connection_limit=_number(env, "CONNECTION_LIMIT", cls.connection_limit, int,
                                     minimum=1),
            drain_delay=_number(env, "DRAIN_DELAY", cls.drain_delay),
            drain_timeout=_number(env, "DRAIN_TIMEOUT", cls.drain_timeout),
            base_path=base_path(env.get("API_PREFIX") or env.get("LAB_SERVICE_PATH") or ""),
            tasks_db=env.get("TASKS_DB", ""),
            task_ttl=_number(env, "TASK_TTL", cls.task_ttl),
            redis_url=env.get("REDIS_URL", ""),
            redis_heartbeat_timeout=_number(env, "REDIS_HEARTBEAT_TIMEOUT",
                                            cls.redis_heartbeat_timeout),
        )


def base_path(raw: str) -> str:
    """`raw` as a route prefix: "" or "/a/b" (leading slash, no trailing one)."""
    stripped = raw.strip().strip("/")
    return f"/{stripped}" if stripped else ""


def default_tasks_db(service_name: str) -> Path:
    """`/data/tasks.sqlite3` where `/data` is writable (the image's volume), else the
    user's cache folder, one file per service so two services never share tasks."""
    data = Path("/data")
    if data.is_dir() and os.access(data, os.W_OK):
        return data / "tasks.sqlite3"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "workspace-service" / service_name / "tasks.sqlite3"


def _number(env: Mapping[str, str], name: str, default: float, kind: type = float,
            minimum: float = 0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {raw!r}")
    return value
