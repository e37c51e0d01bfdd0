"""The lecture's iris model: a scaled gradient-boosting pipeline, trained once, kept as a pickle.

Training takes a second and needs only scikit-learn's bundled data set, so the
service builds the model on its first start instead of shipping a binary file;
later starts load the pickle (the lecture's `model.pickle`).
"""

import pickle
from pathlib import Path

#: The four measurements, in the order the model takes them (the lecture's names).
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
MAX_CM = 100  # no iris is a metre long: a larger number is a mistake, not a flower
#: The body /predict takes, as JSON Schema (for /openapi.json).
REQUEST_SCHEMA = {
    "type": "object", "required": list(FEATURES),
    "properties": {name: {"type": "number", "minimum": 0, "maximum": MAX_CM}
                   for name in FEATURES}}


def train():  # -> sklearn Pipeline; the type is left out so that sklearn loads only here
    """Fit the lecture's pipeline on 70% of the iris data (same split and seed)."""
    from sklearn import datasets
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    iris = datasets.load_iris()
    x_train, _, y_train, _ = train_test_split(
        iris["data"], iris["target"], test_size=0.3, random_state=47, stratify=iris["target"])
    model = Pipeline([("scale", StandardScaler()), ("gbm", GradientBoostingClassifier())])
    return model.fit(x_train, y_train)


def load_or_train(path: Path):
    """The pickled model at `path`; trained and written there (atomically) when missing."""
    if path.exists():
        with path.open("rb") as f:
            return pickle.load(f)
    model = train()
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as f:
        pickle.dump(model, f)
    partial.replace(path)  # a crash mid-write never leaves a truncated pickle behind
    return model
