"""Service files the toolkit tests run (as real processes), and how to steer them.

A "gate" is a file the test creates to let a blocked handler or task go on:
the test decides when work finishes, without sleeping for a guessed time.
"""

from pathlib import Path

STANDARD = '''
import os, pathlib, time
import flask
from workspace_service import Problem, Service

GATES = pathlib.Path(os.environ.get("GATE_DIR", "."))
svc = Service("standard")


def wait_gate(name):
    while not (GATES / name).exists():
        time.sleep(0.005)


@svc.startup
def load():
    if os.environ.get("STARTUP_GATE"):
        wait_gate(os.environ["STARTUP_GATE"])
    if os.environ.get("STARTUP_FAILS"):
        raise RuntimeError("model file is corrupt")
    svc.state["model"] = "loaded"


@svc.endpoint("/predict", methods=["POST"], max_concurrent=2,
              content_types=["application/json"], max_content_length=1000)
def predict():
    """Echo the JSON body (waiting for its "gate" first, when it names one)."""
    body = flask.request.get_json()
    if "gate" in body:
        wait_gate(body["gate"])
    return {"echo": body, "model": svc.state["model"]}


@svc.endpoint("/boom")
def boom():
    raise ValueError("internal detail: /secret/path")


@svc.endpoint("/teapot")
def teapot():
    raise Problem(418, "short and stout", hint="tip me over")


@svc.endpoint("/echo/<text>")
def echo(text):
    return {"text": text}


@svc.endpoint("/hold/<name>")
def hold(name):
    """Say it started (file entered-NAME), then wait for the gate NAME."""
    (GATES / f"entered-{name}").touch()
    wait_gate(name)
    return {"held": name}


@svc.app.get("/plain")
def plain():
    return {"plain": True}


@svc.task("/batch", max_concurrent=1, content_types=["application/json"])
def batch(task):
    """Sum the numbers, after waiting for the gate the input names, if any."""
    (GATES / f"pid-{task.id}").write_text(str(os.getpid()))
    task.update("started", 0.1)
    if task.input.get("gate"):
        wait_gate(task.input["gate"])
    if task.input.get("fail"):
        raise RuntimeError("cannot sum these")
    with open(GATES / f"ran-{task.id}", "a") as runs:
        runs.write("x")
    return {"sum": sum(task.input.get("numbers", []))}


svc.serve()
'''


def open_gate(folder: Path, name: str) -> None:
    (folder / name).touch()


def entered(folder: Path, name: str) -> bool:
    """Whether the request `/hold/NAME` is inside its handler."""
    return (folder / f"entered-{name}").exists()
