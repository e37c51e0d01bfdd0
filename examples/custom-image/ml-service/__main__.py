"""An example model service for a custom image: Flask served by waitress on $PORT.

`/health` is what the image's HEALTHCHECK asks; `/predict` takes
`{"values": [...]}` and answers their mean, standing in for a model. On
SIGTERM (`docker stop`) it exits 0 at once; examples/hello-service shows how
to also finish the requests in flight.
"""

import os
import signal
import sys

import flask
import waitress

app = flask.Flask(__name__)


@app.get("/")
def index() -> dict[str, object]:
    return {"service": "ml-service", "routes": ["/health", "/predict"]}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict() -> tuple[dict[str, object], int]:
    values = (flask.request.get_json(silent=True) or {}).get("values")
    if not isinstance(values, list) or not values:
        return {"error": 'send {"values": [numbers...]}'}, 400
    try:
        return {"prediction": sum(map(float, values)) / len(values)}, 200
    except (TypeError, ValueError):
        return {"error": "values must be numbers"}, 400


if __name__ == "__main__":
    # waitress has no SIGTERM handler: without this, `docker stop` would end the
    # service by the signal (exit 143) instead of a clean exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ml-service: starting", flush=True)
    # 0.0.0.0: in a container, a published port reaches only non-loopback addresses.
    waitress.serve(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8091")))
