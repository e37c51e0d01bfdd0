"""The toolkit's examples (examples/iris-service, examples/async-service), through the runner.

Each is started as a user would (`python -m runner examples/NAME --code-only`)
with the toolkit of this checkout on PYTHONPATH, and asked over real HTTP.
examples/hello-service has its own file: tests/test_example.py.
"""

import glob
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, RunnerProcess, run_runner, wait_for

pytest.importorskip("sklearn", reason="the iris example needs scikit-learn (the test extra)")

IRIS = ROOT / "examples" / "iris-service"
ASYNC = ROOT / "examples" / "async-service"
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3}


def toolkit_env(**extra: str) -> dict[str, str]:
    """The environment that makes a service import this checkout's toolkit."""
    path = os.pathsep.join(filter(None, [str(ROOT / "toolkit"), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, **extra}


def request(runner: RunnerProcess, method: str, path: str, body: bytes | None = None,
            content_type: str | None = "application/json") -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request to the service."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=10)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def post_json(runner: RunnerProcess, path: str, doc: object) -> tuple[int, dict[str, str], bytes]:
    return request(runner, "POST", path, json.dumps(doc).encode())


def problem(answer: tuple[int, dict[str, str], bytes]) -> dict[str, object]:
    """The problem+json body of an error answer (fails when it is not one)."""
    status, headers, body = answer
    assert headers["Content-Type"] == "application/problem+json", (status, headers, body)
    doc = json.loads(body)
    assert doc["status"] == status and doc["title"] and doc["detail"], doc
    assert "Traceback" not in body.decode()
    return doc


def wait_ready(runner: RunnerProcess, timeout: float = 60) -> None:
    """Wait until the service's `/ready` says 200 (its startup is done)."""
    runner.wait_http("/health", timeout)
    wait_for(lambda: (runner.get("/ready") or (0,))[0] == 200, timeout, "/ready to say 200")


def service_pid(runner: RunnerProcess) -> int | None:
    """The runner's one child process (the service), or None between two runs."""
    children: list[int] = []
    for path in glob.glob(f"/proc/{runner.proc.pid}/task/*/children"):
        children += map(int, Path(path).read_text().split())
    return children[0] if len(children) == 1 else None


def stop(runner: RunnerProcess) -> int:
    runner.signal(signal.SIGTERM)
    return runner.finish()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the iris model is kept: trained by the first start, loaded by later ones."""
    return tmp_path_factory.mktemp("iris") / "model.pickle"


@pytest.fixture(scope="module")
def iris(model_path: Path) -> Iterator[RunnerProcess]:
    """The iris example, started once for the module (its first start trains the model)."""
    runner = RunnerProcess([IRIS, "--code-only"], env=toolkit_env(MODEL_PATH=str(model_path)))
    try:
        wait_ready(runner)
        yield runner
    finally:
        runner.kill()


def test_iris_predicts_the_species(iris: RunnerProcess) -> None:
    setosa = post_json(iris, "/predict", SETOSA)
    virginica = post_json(iris, "/predict", VIRGINICA)
    assert (setosa[0], json.loads(setosa[2])) == (200, {"prediction": 0, "species": "setosa"})
    assert (virginica[0], json.loads(virginica[2])) == (
        200, {"prediction": 2, "species": "virginica"})


def test_iris_names_the_missing_fields(iris: RunnerProcess) -> None:
    doc = problem(post_json(iris, "/predict", {"sepal_length": 5.1, "petal_width": 0.2}))
    assert doc["status"] == 422
    assert doc["detail"] == "missing field(s): sepal_width, petal_length"
    assert doc["fields"] == ["sepal_width", "petal_length"]


@pytest.mark.parametrize("bad", ["5.1", True, None, 10**400, -0.1, 100.5, [5.1]])
def test_iris_names_a_field_that_is_not_a_measurement(iris: RunnerProcess, bad: object) -> None:
    doc = problem(post_json(iris, "/predict", {**SETOSA, "petal_length": bad}))
    assert (doc["status"], doc["fields"]) == (422, ["petal_length"])
    assert doc["detail"] == "not a number from 0 to 100 (cm): petal_length"


def test_iris_refuses_what_is_not_a_json_object(iris: RunnerProcess) -> None:
    wrong_type = problem(request(iris, "POST", "/predict", b"5.1,3.5", "text/csv"))
    not_json = problem(request(iris, "POST", "/predict", b"{sepal_length: 5.1"))
    a_list = problem(post_json(iris, "/predict", [5.1, 3.5, 1.4, 0.2]))
    assert wrong_type["status"] == 415 and "application/json" in str(wrong_type["detail"])
    assert not_json["status"] == 400
    assert a_list["status"] in (400, 422)


def test_iris_second_start_loads_the_model_the_first_one_trained(
    iris: RunnerProcess, model_path: Path
) -> None:
    trained = model_path.stat().st_mtime_ns
    runner = run_runner([IRIS, "--code-only", "--check"],
                        env=toolkit_env(MODEL_PATH=str(model_path)))
    assert runner.proc.returncode == 0, runner.stderr
    assert re.search(r"check passed: GET /ready -> 200 OK", runner.stderr), runner.stderr
    assert model_path.stat().st_mtime_ns == trained
    assert not model_path.with_name("model.pickle.partial").exists()


def test_check_waits_for_the_startup_behind_ready(tmp_path: Path) -> None:
    """The port opens before the model is trained: `--check` must wait for /ready, not fail."""
    runner = run_runner([IRIS, "--code-only", "--check"],
                        env=toolkit_env(MODEL_PATH=str(tmp_path / "model.pickle")))
    assert runner.proc.returncode == 0, runner.stderr
    assert re.search(r'check passed: GET /ready -> 200 OK .*"status": "ready"', runner.stderr), \
        runner.stderr
    assert (tmp_path / "model.pickle").exists()


@pytest.fixture
def async_service(tmp_path: Path) -> Iterator[RunnerProcess]:
    runner = RunnerProcess([ASYNC, "--code-only"], env=toolkit_env(
        STEPS="3", STEP_SECONDS="0.3", TASKS_DB=str(tmp_path / "tasks.sqlite3")))
    try:
        wait_ready(runner)
        yield runner
    finally:
        runner.kill()


def test_async_post_runs_a_task_that_reports_progress(async_service: RunnerProcess) -> None:
    status, headers, body = post_json(async_service, "/", {"size": 3})
    accepted = json.loads(body)
    seen: list[dict[str, object]] = []

    def finished() -> bool:
        seen.append(json.loads(async_service.get(headers["Location"])[1]))
        return seen[-1]["status"] in ("completed", "failed")

    wait_for(finished, 10, "the task to finish")
    assert status == 202 and accepted["status"] == "queued"
    assert headers["Location"] == f"/tasks/{accepted['task_id']}"
    running = [doc for doc in seen if doc["status"] == "running"]
    assert {doc["message"] for doc in running} >= {"running model: step 2 of 3"}, seen
    assert seen[-1]["status"] == "completed" and seen[-1]["progress"] == 1.0
    assert seen[-1]["result"] == {"input": {"size": 3}, "steps": 3}
    assert stop(async_service) == 0


def test_async_echo_answers_at_once_and_unknown_tasks_are_404(
    async_service: RunnerProcess,
) -> None:
    echo = async_service.get("/echo/hello%20world")
    unknown = request(async_service, "GET", "/tasks/no-such-task", content_type=None)
    assert echo == (200, b'{"echo":"hello world"}\n')
    assert problem(unknown)["status"] == 404
    assert stop(async_service) == 0
