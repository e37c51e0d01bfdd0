"""Tasks through Redis (REDIS_URL): dramatiq queues them, the toolkit keeps their records.

Why dramatiq (measured against rq and celery: toolkit/README.md): its
Redis broker notices a dead worker by its missing heartbeat and gives that
worker's messages to another, by design; rq re-runs a killed worker's job only
with `Retry` after its maintenance pass, celery only with `acks_late` and a
visibility timeout. None has a status record an HTTP client can read, so the
record (status, progress, result, error, times) is the toolkit's own: a Redis
hash with the TTL, which any replica can answer from.

At least once: a message re-delivered after a replica died runs the task
again, unless its record already says `completed` or `failed`.
"""

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
    TaskStoreUnavailable,
    fingerprint,
)

#: How often (per million Redis commands) a worker looks for dead workers'
#: messages; dramatiq's default (1000) can take minutes on a quiet queue.
MAINTENANCE_CHANCE = 100_000
CONNECT_TIMEOUT = 5  # seconds: a REDIS_URL that points at nothing fails fast
RETRY_SECONDS = 0.5  # how often a worker tries again to write to a Redis that went away
log = logging.getLogger("workspace_service.tasks")

# Record a new queued task, or with an idempotency key (KEYS[2]) that names a
# task still on record, return that task's id instead: one step, so that two
# requests with one key never both make a task. Returns {id, 1 when the
# earlier task's body was this one (or is not known), else 0}.
_CREATE = """
if KEYS[2] then
  local earlier = redis.call('GET', KEYS[2])
  if earlier and redis.call('EXISTS', ARGV[3] .. earlier) == 1 then
    local sent = redis.call('HGET', ARGV[3] .. earlier, 'request_hash')
    return {earlier, (not sent or sent == ARGV[4]) and 1 or 0}
  end
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {ARGV[1], 1}
"""
# Claim a task for a run: only one that is not finished yet (a re-delivered
# message of a completed task does nothing). Returns its input, or nil.
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return nil end
redis.call('HSET', KEYS[1], 'status', 'running', 'updated', ARGV[1])
return redis.call('HMGET', KEYS[1], 'endpoint', 'body', 'content_type')
"""
# Report progress of a running task only (never re-create an expired record).
_UPDATE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'message', ARGV[1], 'updated', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[3]) end
return 1
"""
# Record the end of a run unless another run already ended it.
_FINISH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'result', ARGV[2], 'error', ARGV[3],
           'updated', ARGV[4], 'progress', ARGV[5], 'body', '')
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""
# Amend a finished task (AI4E code's later word); never re-create an expired record.
_AMEND = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'completed' and status ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'message', ARGV[1], 'updated', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[3]) end
return 1
"""
_FIELDS = ("task_id", "endpoint", "status", "message", "progress", "result", "error",
           "created", "updated")


def redacted(url: str) -> str:
    """`url` without its password, for error lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisBackend(TaskBackend):
    """Task records in Redis hashes; each task route is a dramatiq queue whose worker
    runs `max_concurrent` threads in every replica."""

    def __init__(self, url: str, service_name: str, ttl: float, heartbeat_timeout: float) -> None:
        super().__init__(ttl)
        self.url = url
        self.namespace = f"workspace-service:{service_name}"
        self.heartbeat_timeout = heartbeat_timeout
        self._actors: dict[str, Any] = {}
        self._workers: list[Any] = []
        self._stopping = False

    def open(self) -> None:
        import redis  # ~140 ms: only in Redis mode
        from dramatiq import Actor
        from dramatiq.brokers.redis import RedisBroker

        try:
            self.client = redis.Redis.from_url(self.url, socket_connect_timeout=CONNECT_TIMEOUT)
            self.client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise TaskStoreError(f"REDIS_URL {redacted(self.url)}: cannot use it ({exc})") \
                from None
        self.broker = RedisBroker(client=self.client, namespace=f"{self.namespace}:queue",
                                  heartbeat_timeout=int(self.heartbeat_timeout * 1000),
                                  maintenance_chance=MAINTENANCE_CHANCE, middleware=[])
        self._create = self.client.register_script(_CREATE)
        self._claim = self.client.register_script(_CLAIM)
        self._finish = self.client.register_script(_FINISH)
        self._update = self.client.register_script(_UPDATE)
        self._amend = self.client.register_script(_AMEND)
        for endpoint in self.functions:
            name = _queue_name(endpoint)
            self._actors[endpoint] = Actor(self.run, broker=self.broker, actor_name=name,
                                           queue_name=name, priority=0, options={})

    def start(self) -> None:
        from dramatiq import Worker

        for endpoint, (_, max_concurrent) in self.functions.items():
            worker = Worker(self.broker, queues={_queue_name(endpoint)},
                            worker_threads=max_concurrent, worker_timeout=1000)
            worker.start()
            self._workers.append(worker)

    def _key(self, task_id: str) -> str:
        return f"{self.namespace}:task:{task_id}"

    def create(self, endpoint: str, body: bytes, content_type: str,
               idempotency_key: str | None) -> TaskRecord:
        with _answering():
            return self._create_record(endpoint, body, content_type, idempotency_key)

    def _create_record(self, endpoint: str, body: bytes, content_type: str,
                       idempotency_key: str | None) -> TaskRecord:
        task_id = uuid.uuid4().hex
        now = time.time()
        digest = fingerprint(body)
        fields = {"task_id": task_id, "endpoint": endpoint, "status": QUEUED, "message": "",
                  "progress": "", "result": "", "error": "", "created": now, "updated": now,
                  "body": body, "content_type": content_type, "request_hash": digest}
        keys = [self._key(task_id)]
        if idempotency_key is not None:
            keys.append(f"{self.namespace}:idempotency:{endpoint}:{idempotency_key}")
        made, same_body = self._create(
            keys=keys, args=[task_id, max(1, int(self.ttl)), self._key(""), digest,
                             *(x for pair in fields.items() for x in pair)])
        if made.decode() != task_id:  # the key's earlier task
            if not same_body:
                raise KeyReused(idempotency_key)
            earlier = self.get(made.decode())
            # None: it expired a moment ago; the key may now have a task of its own
            return earlier or self.create(endpoint, body, content_type, idempotency_key)
        self._actors[endpoint].send(task_id)
        record = self.get(task_id)
        assert record is not None
        return record

    def get(self, task_id: str) -> TaskRecord | None:
        with _answering():
            values = self.client.hmget(self._key(task_id), _FIELDS)
        if values[0] is None:
            return None
        raw = dict(zip(_FIELDS, (v.decode() for v in values), strict=True))
        return TaskRecord(
            task_id=raw["task_id"], endpoint=raw["endpoint"], status=raw["status"],
            message=raw["message"], progress=float(raw["progress"]) if raw["progress"] else None,
            result=json.loads(raw["result"]) if raw["result"] else None,
            error=raw["error"] or None, created=float(raw["created"]),
            updated=float(raw["updated"]))

    def update(self, task_id: str, message: str, progress: float | None) -> None:
        """Progress is news, not work: a Redis away for a moment does not fail the task."""
        try:
            with _answering():
                self._update(keys=[self._key(task_id)],
                             args=[message, time.time(), "" if progress is None else progress])
        except TaskStoreUnavailable as exc:
            log.warning("task %s: progress not recorded: %s", task_id, exc)

    def claim(self, task_id: str) -> TaskInput | None:
        row = _until_answered(f"claim task {task_id}", lambda: self._claim(
            keys=[self._key(task_id)], args=[time.time()]))
        if row is None:
            return None
        endpoint, body, content_type = row
        return TaskInput(task_id, endpoint.decode(), body or b"", content_type.decode())

    def finish(self, task_id: str, status: str, result: Any, error: str | None) -> None:
        args = [status, "" if result is None else json.dumps(result), error or "", time.time(),
                1.0 if status == COMPLETED else "", max(1, int(self.ttl))]
        _until_answered(f"record the end of task {task_id}",
                        lambda: self._finish(keys=[self._key(task_id)], args=args))

    def amend(self, task_id: str, message: str, error: str | None) -> None:
        self._amend(keys=[self._key(task_id)], args=[message, time.time(), error or ""])

    def counts(self) -> dict[str, int]:
        """Queued: messages waiting in the queues (what every replica shares);
        running: this replica's."""
        counts = dict.fromkeys(STATUSES, 0)
        with _answering():
            for endpoint in self.functions:
                counts[QUEUED] += self.client.llen(
                    f"{self.namespace}:queue:{_queue_name(endpoint)}")
        counts[RUNNING] = self.busy()
        del counts[COMPLETED], counts[FAILED]  # kept per task with its TTL, not counted here
        return counts

    # The drain (server.Drainable)
    def stop_taking(self) -> None:
        """Stop the workers in the background: no new messages; dramatiq puts the
        prefetched ones back in the queue for the other replicas."""
        self._stopping = True
        for worker in self._workers:
            threading.Thread(target=worker.stop, daemon=True, name="dramatiq-stop").start()

    def abandon(self) -> None:
        """The unfinished tasks go back to `queued`; their messages, never acknowledged,
        are re-delivered once this replica's heartbeat is missed."""
        for task_id in self.running():
            try:
                with _answering():
                    self.client.hset(self._key(task_id), mapping={"status": QUEUED,
                                                                  "updated": time.time()})
            except TaskStoreUnavailable as exc:  # it says `running`: a new run claims that too
                log.warning("cannot put task %s back to queued (%s); its message is "
                            "delivered again all the same", task_id, exc)


@contextmanager
def _answering() -> Iterator[None]:
    """A Redis that does not answer, as `TaskStoreUnavailable` (a 503, not a 500 and a
    traceback); redis-py connects again at the next command."""
    import redis

    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise TaskStoreUnavailable(f"{type(exc).__name__}: {exc}") from None


def _until_answered(what: str, call: Callable[[], Any]) -> Any:
    """`call()`, tried again every `RETRY_SECONDS` while Redis does not answer.

    A worker must not raise for that: dramatiq (without its retry middleware) would
    dead-letter the message, and the record would stay `queued` or `running`. Waiting
    keeps the task counted as running; a drain that times out leaves its message
    unacknowledged, so another replica runs it again."""
    while True:
        try:
            with _answering():
                return call()
        except TaskStoreUnavailable as exc:
            log.warning("cannot %s: %s; trying again in %g s", what, exc, RETRY_SECONDS)
            time.sleep(RETRY_SECONDS)


def _queue_name(endpoint: str) -> str:
    """A dramatiq queue name for a task route: `/batch/v2` → `task_batch_v2`."""
    return "task" + re.sub(r"[^A-Za-z0-9]+", "_", endpoint).rstrip("_")
