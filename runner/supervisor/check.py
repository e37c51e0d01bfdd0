"""`--check`: start the service once, ask it over HTTP, stop it. A smoke test for CI.

It asks `GET /ready` first: a service that has it (the toolkit's) opens its
port before its start-up (a model load) is done and says 503 "starting" until
then, so the check waits for that to end, up to `--ready-timeout`; an open
port alone is not a good start. Without `/ready` (404) it asks `GET /health`
(the health route model services are expected to have), then `GET /`.
"""

import json
import time

from runner import log
from runner.errors import ServiceError
from runner.supervisor.base import Exit, Restart, Run, Supervisor, exit_status

DEFAULT_READY_TIMEOUT = 60.0
REQUEST_TIMEOUT = 10.0
SHOWN_BYTES = 200
LOOPBACKS = ("127.0.0.1", "::1")
READY_POLL = 0.05  # between asks of /ready while the service says it is starting


class CheckSupervisor(Supervisor):
    """Runs the service until its first HTTP answer, then stops it."""

    answer: tuple[str, int, str, bytes] | None = None

    def run(self) -> int:
        if self.config.ready_timeout is None:
            self.config.ready_timeout = DEFAULT_READY_TIMEOUT
        return super().run()

    def on_ready(self, run: Run) -> None:
        self.answer = self._ask(run)
        if self.answer is not None:  # else a stop came, which the loop acts on
            self.stop_service(run)

    def after_exit(self, run: Run, returncode: int) -> Restart | Exit:
        raise ServiceError(
            f"check failed: the service exited with status {exit_status(returncode)} "
            f"before opening port {self.config.port}; its last output: {self.tail.quote()}"
        )

    def stopped(self, run: Run) -> Restart | Exit:
        """The check's verdict once the service it asked has stopped."""
        assert self.answer is not None and run.ready_after is not None
        path, status, reason, body = self.answer
        shown = body[:SHOWN_BYTES].decode("utf-8", "replace").strip()
        summary = f"GET {path} -> {status} {reason} (ready after {run.ready_after:.2f} s): {shown}"
        if 200 <= status < 400:
            log.info(f"check passed: {summary}")
            return Exit(0)
        raise ServiceError(f"check failed: {summary} (a healthy service answers 2xx or 3xx)")

    def _ask(self, run: Run) -> tuple[str, int, str, bytes] | None:
        """GET /ready (once it no longer says "starting"), else /health, else /.

        None when a stop signal came while /ready said "starting".
        """
        assert self.config.ready_timeout is not None  # set by run()
        deadline = time.monotonic() + self.config.ready_timeout - run.ran_for
        answer = self._get("/ready")
        while _starting(answer) and time.monotonic() < deadline:
            if self.stop_pending(READY_POLL):
                return None
            answer = self._get("/ready")
        for path in ("/health", "/"):
            if answer[1] != 404:
                break
            answer = self._get(path)
        return answer

    def _get(self, path: str) -> tuple[str, int, str, bytes]:
        """One GET on the loopback: IPv4's, else IPv6's (a service bound to ::1 only)."""
        import http.client  # 10 ms of imports (ssl, email) only a check needs

        deadline = time.monotonic() + REQUEST_TIMEOUT
        for host in LOOPBACKS:
            conn = http.client.HTTPConnection(host, self.config.port, timeout=REQUEST_TIMEOUT)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                return path, resp.status, resp.reason, resp.read(SHOWN_BYTES)
            except ConnectionRefusedError as exc:
                refused = exc  # not on this loopback: the next one
            except (OSError, http.client.HTTPException) as exc:
                raise self._no_answer(path, deadline, exc) from None
            finally:
                conn.close()
        raise self._no_answer(path, deadline, refused) from None

    def _no_answer(self, path: str, deadline: float, exc: Exception) -> ServiceError:
        waited = REQUEST_TIMEOUT - (deadline - time.monotonic())
        return ServiceError(f"check failed: GET {path} on port {self.config.port} got no "
                            f"answer after {waited:.1f} s ({exc})")


def _starting(answer: tuple[str, int, str, bytes]) -> bool:
    """Whether a /ready answer is the toolkit's 503 {"status": "starting"}."""
    if answer[1] != 503:
        return False
    try:
        return json.loads(answer[3]).get("status") == "starting"
    except (ValueError, AttributeError):
        return False
