"""The lecture's iris classifier (seed 004) as a service on the toolkit.

    execute-code examples/iris-service
    curl -X POST localhost:8091/predict -H 'Content-Type: application/json' \
         -d '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'

The lecture's Flask view checked its four arguments by hand and answered 422
with a bare string. Here the toolkit refuses what is not JSON (415, 400), too
big (413) or too many at once (503) before `predict` runs, and `predict` checks
the four numbers (0 to 100 cm) and names the missing or bad ones in a 422
problem+json. /openapi.json documents the body, so clients and fuzzers know it.
The model is trained in `startup` on the first start (about a second) and kept
at $MODEL_PATH (default: model.pickle beside this file); `/ready` says 503
until it is loaded.
"""

import os
from pathlib import Path

import flask
import iris_model
from workspace_service import Problem, Service

MODEL_PATH = Path(os.environ.get("MODEL_PATH", Path(__file__).with_name("model.pickle")))
SPECIES = ("setosa", "versicolor", "virginica")
PREDICTION_SCHEMA = {
    "type": "object", "required": ["prediction", "species"],
    "properties": {"prediction": {"type": "integer", "enum": [0, 1, 2]},
                   "species": {"type": "string", "enum": list(SPECIES)}}}

svc = Service("iris")


@svc.startup
def load() -> None:
    """Load the model, training it first when there is no pickle yet."""
    svc.state["model"] = iris_model.load_or_train(MODEL_PATH)


@svc.endpoint("/predict", methods=["POST"], max_concurrent=4,
              content_types=["application/json"], max_content_length=10_000,
              request_schema=iris_model.REQUEST_SCHEMA, response_schema=PREDICTION_SCHEMA,
              responses={422: "A measurement is missing, not a number, or out of range "
                              "(`fields` names them)"})
def predict() -> dict[str, object]:
    """The species of one flower from its four measurements in cm."""
    measurements = _measurements(flask.request.get_json())
    label = int(svc.state["model"].predict([measurements])[0])
    return {"prediction": label, "species": SPECIES[label]}


def _measurements(body: object) -> list[float]:
    """The four numbers in the model's order, or a 422 naming what is wrong."""
    if not isinstance(body, dict):
        raise Problem(422, f"the body must be a JSON object with {', '.join(iris_model.FEATURES)}")
    missing = [name for name in iris_model.FEATURES if name not in body]
    if missing:
        raise Problem(422, f"missing field(s): {', '.join(missing)}", fields=missing)
    numbers = {name: _measurement(body[name]) for name in iris_model.FEATURES}
    bad = [name for name, number in numbers.items() if number is None]
    if bad:
        raise Problem(422, f"not a number from 0 to {iris_model.MAX_CM:g} (cm): "
                      f"{', '.join(bad)}", fields=bad)
    return [numbers[name] for name in iris_model.FEATURES]


def _measurement(value: object) -> float | None:
    """A JSON number from 0 to MAX_CM as a float; None for anything else (true and
    false, which Python counts as numbers, included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= iris_model.MAX_CM:  # also refuses an int too big for a float
        return None
    return float(value)


if __name__ == "__main__":
    svc.serve()
