"""waitress, with what it lacks for a service: a graceful drain and probe threads.

waitress 3 has no signal handling: on SIGTERM it dies with every request in
flight, on SIGINT it cancels the queued ones. Here a stop signal instead
1. turns `/ready` to 503 at once (the load balancer stops sending),
2. keeps serving for `DRAIN_DELAY` seconds (time to deregister),
3. closes the listening socket (new connections are refused) and the idle
   keep-alive connections, and marks every later answer `Connection: close`,
4. waits up to `DRAIN_TIMEOUT` seconds for every accepted request to be
   answered and running tasks to finish, then exits 0.

Probes get threads of their own: a liveness probe queued behind long requests
would time out and get a healthy, merely busy service restarted.
"""

import functools
import logging
import os
import resource
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from io import BytesIO
from typing import NoReturn

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask

from . import accesslog, problems
from .accesslog import AccessLog
from .lifecycle import Lifecycle
from .probes import Probes, probe_paths
from .settings import Settings, SettingsError

log = logging.getLogger("workspace_service")
PROBE_THREADS = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # accesslog.py writes it too
#: How long a failed startup stays visible (`/health` 500) before the process exits.
FAILED_EXIT_DELAY = 1.0
#: How long a drain waits for the first request of a connection opened just before it.
FIRST_REQUEST_GRACE = 1.0
#: At most one "Task queue depth" warning per this many seconds (waitress: one per request).
QUEUE_WARNING_INTERVAL = 1.0
#: Open files kept free of connections: modules, the task store, the service's own files.
FILES_RESERVED = 100
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_STARTUP_FAILED = 0  # the byte written to the wake-up pipe when startup raised (no signal)
#: Set in the WSGI environ to close the connection after the answer (WSGI apps may not
#: send `Connection` themselves): when unread bytes of a refused body would follow.
CLOSE_KEY = "workspace_service.close_connection"
#: `body_limit(method, path)`: the most bytes of body the route there takes (None: any).
BodyLimit = Callable[[str, str], int | None]


def _no_body_limit(method: str, path: str) -> None:
    return None


def serve(app: Callable) -> NoReturn:
    """Serve any WSGI app on $HOST:$PORT with the drain, probes and access log, then exit.

    `/health` and `/ready` answer at the root unless the app (a Flask app) has
    its own route there; the app is ready as soon as the port is open.
    """
    configure_logging()
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
    lifecycle = Lifecycle()
    paths = {path: probe for path, probe in probe_paths("").items() if not _routes(app, path)}
    wrapped = AccessLog(Probes(app, lifecycle, paths))
    sys.exit(run(wrapped, settings, lifecycle, probe_paths=set(probe_paths(""))))


def configure_logging() -> None:
    """Log lines (the access log too) on stdout, unless the app set up logging itself."""
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format=LOG_FORMAT)


def _routes(app: Callable, path: str) -> bool:
    """Whether `app` is a Flask app with a GET route at `path`."""
    url_map = getattr(app, "url_map", None)
    if url_map is None:
        return False
    try:
        url_map.bind("localhost").match(path, "GET")
    except Exception:  # werkzeug's NotFound, MethodNotAllowed or RequestRedirect
        return False
    return True


class _Discarded:
    """A body buffer that keeps only the count of what it was given (waitress's
    receivers write into it): the body of a request its route refuses as too large."""

    def __init__(self, count: int = 0) -> None:
        self.count = count

    def append(self, data: bytes) -> None:
        self.count += len(data)

    def __len__(self) -> int:
        return self.count

    def getfile(self) -> BytesIO:
        return BytesIO()

    def close(self) -> None:
        """Nothing kept, nothing to free."""


class _Parser(HTTPRequestParser):
    """Keeps no body its route will refuse as too large. waitress stores a whole body
    (up to 1 GB, in a temporary file) before the app sees it, and tells an
    `Expect: 100-continue` client to send it. Here, once the length or the chunks
    show a body is too large, it is read and dropped, and the app answers 413 by the
    length; a client waiting to be told to send it is answered at once instead, and
    the connection is then closed (a body may follow all the same)."""

    unread_body = False
    _limit: int | None = None

    def __init__(self, adj: Adjustments, body_limit: BodyLimit = _no_body_limit) -> None:
        super().__init__(adj)
        self._body_limit = body_limit

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.content_length > 0 or self.chunked:
            self._limit = self._body_limit(self.command, self.path)
        if self._limit is None or self.content_length <= self._limit:
            return
        if self.expect_continue:
            self.unread_body = True
            self.expect_continue = False
            self.completed = True
        else:
            self._drop_body()

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        if self.chunked and self._limit is not None and self.body_rcv is not None and \
                len(self.body_rcv) > self._limit:
            self._drop_body()
        return consumed

    def _drop_body(self) -> None:
        kept = self.body_rcv.buf
        if not isinstance(kept, _Discarded):
            self.body_rcv.buf = _Discarded(len(kept))
            kept.close()


class _Task(WSGITask):
    def execute(self) -> None:
        """An app that calls sys.exit() while answering fails that request only:
        SystemExit is no Exception, so waitress's thread caught it without answering,
        and the client waited for ever. As an Exception it is a logged 500."""
        try:
            super().execute()
        except SystemExit as exc:
            raise RuntimeError(f"the app called sys.exit({exc.code!r})") from exc

    def build_response_header(self) -> bytes:
        if self.channel.server.closing or self.request.unread_body or \
                (self.environ or {}).get(CLOSE_KEY):
            self.set_close_on_finish()  # draining: so the client reconnects elsewhere
        return super().build_response_header()

    def write(self, data: bytes) -> None:
        """The header and the first body chunk in one send, not two: waitress sends
        each write at once (`send_bytes` 1), and a small answer is one chunk."""
        if self.wrote_header or not data or not self.complete:
            super().write(data)
            return
        header = self.build_response_header()  # decides `chunked_response`
        self.wrote_header = True
        length = self.content_length
        if not self.has_body or self.chunked_response or \
                (length is not None and len(data) > length - self.content_bytes_written):
            self.channel.write_soon(header)
            super().write(data)  # waitress's own framing, truncation and warnings
            return
        if length is not None:
            self.content_bytes_written += len(data)
        self.channel.write_soon(header + data)


class _ErrorTask(ErrorTask):
    """waitress's own errors (a malformed request, a body over its limit) as problem+json."""

    def execute(self) -> None:
        error = self.request.error
        payload = problems.body(error.code, error.body)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", problems.PROBLEM_TYPE))
        self.set_close_on_finish()
        self.content_length = len(payload)
        self.write(payload)


class _Channel(HTTPChannel):
    task_class = _Task
    error_task_class = _ErrorTask
    #: Whether the client has sent anything yet: a connection that has not is
    #: about to (a proxy connects, then writes), not idle.
    spoke = False

    def __init__(self, server: "_Server", *args: object, **kwargs: object) -> None:
        super().__init__(server, *args, **kwargs)
        self.parser_class = functools.partial(_Parser, body_limit=server.body_limit)

    def received(self, data: bytes) -> bool:
        self.spoke = True
        return super().received(data)

    def busy(self, now: float) -> bool:
        """A request arriving, queued or running, an answer unsent, or a first
        request still to come on a connection opened a moment ago."""
        return bool(self.request is not None or self.requests or self.total_outbufs_len
                    or (not self.spoke and now - self.creation_time < FIRST_REQUEST_GRACE))


class _Dispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool, warning of a queue at most once per `QUEUE_WARNING_INTERVAL`.

    waitress warns on every request queued behind busy threads: under a steady load
    that is one formatted, flushed log line per request, which costs more than a
    small request itself (bench/toolkit.py). The warning here tells the deepest
    queue seen since the last one, so nothing is hidden, only summed up.
    """

    def __init__(self) -> None:
        super().__init__()
        self._deepest = 0
        self._warned_at = -QUEUE_WARNING_INTERVAL

    def add_task(self, task: object) -> None:
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()
            depth = len(self.queue) - (len(self.threads) - self.stop_count - self.active_count)
            if depth <= 0:
                return
            self._deepest = max(self._deepest, depth)
            now = time.monotonic()
            if now - self._warned_at < QUEUE_WARNING_INTERVAL:
                return
            depth, self._deepest, self._warned_at = self._deepest, 0, now
        self.queue_logger.warning("Task queue depth is %d", depth)


class _Server(TcpWSGIServer):
    """Routes probe requests to their own small thread pool."""

    channel_class = _Channel
    closing = False

    def __init__(self, app: Callable, probe_paths: set[str], adj: Adjustments,
                 body_limit: BodyLimit) -> None:
        self.probe_paths = probe_paths
        self.body_limit = body_limit
        self.probe_dispatcher = _Dispatcher()
        self.probe_dispatcher.set_thread_count(PROBE_THREADS)
        dispatcher = _Dispatcher()
        dispatcher.set_thread_count(adj.threads)
        super().__init__(app, adj=adj, dispatcher=dispatcher)

    def add_task(self, channel: HTTPChannel) -> None:
        request = channel.requests[0]
        # An error first: a request that failed to parse early has no `path`.
        if not request.error and request.path in self.probe_paths:
            self.probe_dispatcher.add_task(channel)
        else:
            self.task_dispatcher.add_task(channel)

    def busy_channels(self) -> int:
        """Connections the drain waits for (`_Channel.busy`)."""
        channels = list(self.active_channels.values())  # a copy: the loop thread changes it
        now = time.time()
        return sum(1 for ch in channels if ch.busy(now))

    def stop_accepting(self) -> None:
        """Close the listener and the idle connections; run in the loop's own thread.

        Connections the kernel completed but waitress has not accepted yet are
        taken first: closing the listener would reset them.
        """
        self.closing = True
        self._accept_backlog()
        self.accepting = False
        self.del_channel()
        self.socket.close()
        now = time.time()
        for channel in list(self.active_channels.values()):
            if not channel.busy(now):
                channel.will_close = True

    def _accept_backlog(self) -> None:
        while True:
            try:
                conn, addr = self.socket.accept()
            except OSError:  # BlockingIOError: none left
                return
            self.set_socket_options(conn)
            self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)


class Drainable:
    """What the server asks of the work it does not see (the service's tasks).
    The default has nothing to wait for: a plain WSGI app."""

    def stop_taking(self) -> None:
        """A stop began: start no more queued work."""

    def busy(self) -> int:
        """How many units of work are still running."""
        return 0

    def abandon(self) -> None:
        """The drain timed out: leave what is unfinished to the next start."""


def run(app: Callable, settings: Settings, lifecycle: Lifecycle, *, probe_paths: set[str],
        started: Callable[[Callable[[str], None]], None] | None = None,
        work: Drainable | None = None, body_limit: BodyLimit = _no_body_limit) -> int:
    """Serve `app` until a stop signal, drain, and return the exit status.

    `started(failed)` is called once the port is open (to run startup in a
    thread); it calls `failed(cause)` when startup raised, and the process then
    exits 1 after `FAILED_EXIT_DELAY`, the cause on its last line (a supervisor
    quotes the last lines of a service that exited).
    """
    work = work or Drainable()
    wake = _stop_signal_pipe()  # before the port opens: from then on a stop is graceful
    adj = Adjustments(host=settings.host, port=settings.port, threads=settings.threads,
                      channel_timeout=max(1, int(settings.keepalive_timeout)),
                      # waitress's 100 connections let a burst of clients lock the probes
                      # out; select() cannot watch past descriptor 1024, poll() can
                      connection_limit=_connection_limit(settings.connection_limit),
                      asyncore_use_poll=True,
                      # how often idle connections are looked for (waitress: every 30 s)
                      cleanup_interval=max(1, min(30, int(settings.keepalive_timeout / 2))),
                      ident="workspace-service")
    server = _Server(app, probe_paths, adj, body_limit)
    threading.Thread(target=server.run, name="waitress-loop", daemon=True).start()
    log.info("serving on http://%s:%s", server.effective_host, server.effective_port)
    causes: list[str] = []
    if started:
        started(lambda cause: _startup_failed(wake.write_end, causes, cause))
    else:
        lifecycle.ready()
    signum = _next_stop(wake.read_end)
    if signum == _STARTUP_FAILED:
        accesslog.flush()
        log.error("startup failed: %s: exiting 1", causes[0])
        return 1
    lifecycle.drain()
    work.stop_taking()
    log.info("%s: not ready; serving %g s more, then draining for at most %g s",
             signal.Signals(signum).name, settings.drain_delay, settings.drain_timeout)
    _wait_until(time.monotonic() + settings.drain_delay, wake.read_end)
    server.trigger.pull_trigger(server.stop_accepting)
    return _drain(server, work, time.monotonic() + settings.drain_timeout)


def _connection_limit(wanted: int) -> int:
    """`wanted`, after raising the soft open-files limit for it as far as the hard one
    allows; fewer when that is not enough: past it accept() fails, and waitress logs
    the failure and retries at once, a busy loop."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FILES_RESERVED
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    limit = max(1, soft - FILES_RESERVED)
    log.warning("CONNECTION_LIMIT %d lowered to %d: at most %d files may be open (ulimit -n)",
                wanted, limit, soft)
    return limit


def _drain(server: _Server, work: Drainable, deadline: float) -> int:
    while (server.busy_channels() or work.busy()) and time.monotonic() < deadline:
        time.sleep(0.02)
    requests, tasks = server.busy_channels(), work.busy()
    accesslog.flush()  # the drain's outcome is the last line a supervisor quotes
    if tasks:
        log.warning("drain timed out: %d task(s) left queued, to run again at the next start "
                    "(or on another replica)", tasks)
        work.abandon()
    if requests:
        log.error("drain timed out: %d request(s) unanswered", requests)
        return 1
    log.info("drained: exiting")
    return 0


def _wait_until(deadline: float, read_end: int) -> None:
    """Sleep until `deadline`, swallowing repeated stop signals (they do not cut it short)."""
    while (left := deadline - time.monotonic()) > 0:
        if select.select([read_end], [], [], left)[0]:
            os.read(read_end, 1)


def _next_stop(read_end: int) -> int:
    """The next stop signal's number, or `_STARTUP_FAILED`; any other signal the app
    gave a handler of its own is written to the pipe too, and passed over here."""
    while (signum := os.read(read_end, 1)[0]) not in STOP_SIGNALS | {_STARTUP_FAILED}:
        pass
    return signum


def _startup_failed(write_end: int, causes: list[str], cause: str) -> None:
    causes.append(cause)
    time.sleep(FAILED_EXIT_DELAY)  # let probes and the log show the failure first
    os.write(write_end, bytes([_STARTUP_FAILED]))


class _Pipe:
    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()


def _stop_signal_pipe() -> _Pipe:
    """A pipe that receives the number of each SIGTERM/SIGINT.

    The byte is written by the interpreter's C-level handler (`set_wakeup_fd`), in
    whichever thread the kernel gave the signal to. A Python handler would not do:
    it runs in the main thread only, between two bytecodes, and the main thread is
    blocked in `os.read` of this very pipe; a signal another thread took was lost.
    The Python handlers do nothing but keep the signals from ending the process.
    """
    pipe = _Pipe()
    os.set_blocking(pipe.write_end, False)
    signal.set_wakeup_fd(pipe.write_end, warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda _n, _frame: None)
    return pipe
