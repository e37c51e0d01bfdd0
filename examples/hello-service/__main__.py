"""A minimal model service on the toolkit (`workspace_service`).

Run it with `execute-code examples/hello-service` (or `python examples/hello-service`);
it listens on $PORT (default 8091) on $HOST (default 0.0.0.0, as it runs in a container).

Routes: `/` says hello and `/slow?seconds=N` answers after N seconds (at most 60),
to watch a graceful stop with (bench/stop.py). The toolkit adds `/health`
(liveness), `/ready` (readiness), `/openapi.json`, problem+json errors, access
log lines and the drain: on SIGTERM `/ready` turns 503, requests go on being
served for DRAIN_DELAY seconds, then new connections are refused and every
accepted request is answered (at most DRAIN_TIMEOUT seconds) before it exits 0.
"""

import time

import flask
from workspace_service import Service

svc = Service("hello")


@svc.endpoint("/")
def index() -> dict[str, str]:
    return {"message": "hello from the workspace runner"}


@svc.endpoint("/slow")
def slow() -> dict[str, float]:
    """Answer after `?seconds=N` (at most 60): a request that is in flight during a stop."""
    seconds = max(0.0, min(flask.request.args.get("seconds", 1.0, type=float), 60.0))
    time.sleep(seconds)
    return {"slept": seconds}


if __name__ == "__main__":
    svc.serve()
