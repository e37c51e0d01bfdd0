"""A minimal model service: Flask served by waitress, stopping gracefully on SIGTERM.

Run it with `execute-code examples/hello-service` (or `python examples/hello-service`);
it listens on $PORT (default 8091) on $HOST (default 0.0.0.0, as it runs in a container).

Routes: `/` says hello, `/health` answers {"status": "ok"} for load balancers, and
`/slow?seconds=N` answers after N seconds, to watch a graceful stop (bench/stop.py).

Why the stop code: waitress has no SIGTERM handling of its own. On SIGTERM (what the
runner and `docker stop` send) it dies at once and every request in flight is lost; on
SIGINT it cancels the queued ones. Below, a stop signal instead closes the listening
socket (new connections are refused, so a load balancer moves on at once), lets every
accepted request finish and its response go out, and exits 0. To use it in your own
service, copy `serve()` with its two helpers and call it with your WSGI app.
"""

import logging
import os
import signal
import threading
import time

import flask
import waitress

THREADS = 32  # requests served at once; more wait in a queue (and are still drained)
# Upper bound on a stop, below the runner's --stop-timeout (30 s), after which it kills us.
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS", "25"))

app = flask.Flask(__name__)


@app.get("/")
def index() -> dict[str, str]:
    return {"message": "hello from the workspace runner"}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/slow")
def slow() -> dict[str, float]:
    """Answer after `?seconds=N` (at most 60): a request that is in flight during a stop."""
    seconds = max(0.0, min(flask.request.args.get("seconds", 1.0, type=float), 60.0))
    time.sleep(seconds)
    return {"slept": seconds}


def serve(app: flask.Flask, host: str, port: int) -> int:
    """Serve `app` until SIGTERM/SIGINT, then drain; return the exit status."""
    stop = _stop_signal_pipe()  # before the port opens: from then on a stop is graceful
    server = waitress.create_server(app, host=host, port=port, threads=THREADS)
    # waitress's event loop (accepting, reading, sending) runs in a thread of its
    # own, so that this main thread is free to wait for the stop and then drain.
    threading.Thread(target=server.run, name="waitress-loop", daemon=True).start()
    server.print_listen("Serving on http://{}:{}")
    signum = os.read(stop, 1)[0]  # blocks until a stop signal arrives
    logging.info("%s: refusing new connections, finishing requests in flight",
                 signal.Signals(signum).name)

    def stop_accepting() -> None:
        server.accepting = False
        server.del_channel()  # the loop stops watching the listening socket...
        server.socket.close()  # ...and new connections are refused from now on

    # Change the loop's sockets only from the loop's own thread: the trigger runs it there.
    server.trigger.pull_trigger(stop_accepting)
    deadline = time.monotonic() + DRAIN_SECONDS
    while (busy := _busy_connections(server)) and time.monotonic() < deadline:
        time.sleep(0.02)
    if busy:
        logging.error("gave up after %g s: %d request(s) unfinished", DRAIN_SECONDS, busy)
        return 1
    logging.info("all requests finished: exiting")
    return 0  # the loop and worker threads are daemons: they end with the process


def _busy_connections(server: waitress.server.BaseWSGIServer) -> int:
    """Connections with a request arriving, queued or running, or a response unsent."""
    channels = list(server.active_channels.values())  # a copy: the loop thread changes it
    return sum(1 for ch in channels
               if ch.request is not None or ch.requests or ch.total_outbufs_len)


def _stop_signal_pipe() -> int:
    """A pipe that receives the number of each SIGTERM/SIGINT.

    The handler only writes one byte, which is safe whatever the main thread is
    doing when the signal comes; the real work happens after `os.read` returns.
    """
    read_end, write_end = os.pipe()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda n, _frame: os.write(write_end, bytes([n])))
    return read_end


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # HOST is one address (0.0.0.0, 127.0.0.1, ::), not a name that resolves to several.
    host, port = os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8091"))
    raise SystemExit(serve(app, host, port))
