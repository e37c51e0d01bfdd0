"""AI for Earth compatibility: a service written for AI4E's framework, served by the runner.

The service (tests/toolkit/ai4e_base_py) is the base-py example as the seed
describes it: `APIService(app, log)`, a long-running `POST /example`, a sync
`GET /echo/<text>`, `app.run()` at the end. It runs unchanged on the toolkit's
`ai4e_service`, `ai4e_app_insights_wrapper` and `task_management` modules,
under `API_PREFIX` as AI4E's Dockerfile sets it. The tests check AI4E's
answers where clients parse them (`TaskId: <id>`, the status keys) and the
toolkit's where AI4E was wrong (415 not 401, 404 for an unknown task, a
raising task failed, limits on parameterised routes, tasks kept over a restart).
"""

import http.client
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import ROOT, RunnerProcess, wait_for
from test_examples import problem, request, service_pid, stop, toolkit_env, wait_ready

SERVICE = ROOT / "tests" / "toolkit" / "ai4e_base_py"
PREFIX = "/v1/my_api/tasker"
TASK_ID = re.compile(r"TaskId: ([0-9a-f]{32})")
FINISHED = ("completed", "failed")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., RunnerProcess]]:
    """Start the AI4E service through the runner; whatever still runs is killed after."""
    runners: list[RunnerProcess] = []

    def start_one(**env: str) -> RunnerProcess:
        runners.append(RunnerProcess([SERVICE, "--code-only"], env=toolkit_env(
            API_PREFIX=PREFIX, TASKS_DB=str(tmp_path / "tasks.sqlite3"), **env)))
        wait_ready(runners[-1])
        return runners[-1]

    yield start_one
    for runner in runners:
        runner.kill()


def post_example(runner: RunnerProcess, doc: object) -> str:
    """POST {prefix}/example; the task id from AI4E's `TaskId: <id>` reply."""
    status, headers, body = request(runner, "POST", f"{PREFIX}/example", json.dumps(doc).encode())
    assert status == 200, (status, body)
    match = TASK_ID.fullmatch(body.decode())
    assert match, body
    assert headers["Location"] == f"{PREFIX}/tasks/{match[1]}"
    return match[1]


def task_status(runner: RunnerProcess, task_id: str, prefix: str = PREFIX) -> dict[str, object]:
    """AI4E's status document of a task, from `GET {prefix}/task/<id>`."""
    answer = runner.get(f"{prefix}/task/{task_id}")
    assert answer is not None and answer[0] == 200, answer
    return json.loads(answer[1])


def wait_finished(runner: RunnerProcess, task_id: str, timeout: float = 20) -> list[dict]:
    """Every status document seen until the task finished, the last one finished."""
    seen: list[dict] = []

    def finished() -> bool:
        seen.append(task_status(runner, task_id))
        return seen[-1]["status"] in FINISHED

    wait_for(finished, timeout, f"task {task_id} to finish")
    return seen


def test_health_echo_and_a_long_running_task(start: Callable[..., RunnerProcess]) -> None:
    runner = start(SLEEP="0.5")
    task_id = post_example(runner, {"image": "x"})
    seen = wait_finished(runner, task_id)
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 0

    assert runner.get(f"{PREFIX}/") is None  # stopped; the answers below were taken before
    last = seen[-1]
    assert {doc["Status"] for doc in seen} >= {"running model", "completed"}, seen
    assert (last["TaskId"], last["task_id"], last["status"]) == (task_id, task_id, "completed")
    assert last["Endpoint"] == f"{PREFIX}/example"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", str(last["Timestamp"]))
    assert f"ai4e DEBUG Running model task_id={task_id}" in runner.stdout
    assert f"ai4e DEBUG Completed task task_id={task_id}" in runner.stdout


def test_health_check_and_echo_under_the_prefix(start: Callable[..., RunnerProcess]) -> None:
    runner = start()
    health = runner.get(f"{PREFIX}/")
    echo = runner.get(f"{PREFIX}/echo/hello")
    probe = runner.get("/health")
    outside = request(runner, "GET", "/echo/hello", content_type=None)
    document = runner.get(f"{PREFIX}/openapi.json")
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 0
    assert health == (200, b"Health check OK")
    assert echo == (200, b"Echo: hello")
    assert probe is not None and json.loads(probe[1]) == {"health": "true", "status": "ok"}
    assert problem(outside)["status"] == 404
    assert "ai4e INFO metric echo_length=5" in runner.stdout
    assert document is not None and document[0] == 200
    assert {"/example", "/echo/{text}"} <= set(json.loads(document[1])["paths"])


def test_fail_task_and_a_raising_task_end_failed(start: Callable[..., RunnerProcess]) -> None:
    runner = start(SLEEP="0")
    empty = wait_finished(runner, post_example(runner, {}))[-1]
    raised = wait_finished(runner, post_example(runner, {"fail": True}))[-1]
    alive = runner.get(f"{PREFIX}/echo/still")
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 0
    assert (empty["status"], empty["Status"]) == (
        "failed", "Task failed - Body was empty or could not be parsed.")
    assert (raised["status"], raised["error"]) == ("failed", "RuntimeError: model exploded")
    assert raised["Status"] == "RuntimeError: model exploded"
    assert "RuntimeError: model exploded" in runner.stdout  # the traceback, in the log only
    assert alive == (200, b"Echo: still")


def test_bad_requests_get_the_right_status(start: Callable[..., RunnerProcess]) -> None:
    runner = start()
    example = f"{PREFIX}/example"
    wrong_type = request(runner, "POST", example, b"x", "text/plain")
    no_type = request(runner, "POST", example, b"{}", None)
    too_big = request(runner, "POST", example, json.dumps({"x": "y" * 1000}).encode())
    not_json = request(runner, "POST", example, b"{nope")
    unknown = request(runner, "GET", f"{PREFIX}/task/0123456789abcdef", content_type=None)
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 0
    assert problem(wrong_type)["status"] == 415  # AI4E: 401
    assert problem(no_type)["status"] == 415
    assert problem(too_big)["status"] == 413
    assert problem(not_json)["status"] == 400
    assert problem(unknown)["status"] == 404  # AI4E: 200 {"Status": "Not found."}


def test_the_limit_holds_on_a_parameterised_route(start: Callable[..., RunnerProcess]) -> None:
    """AI4E looked its limits up by the literal path, so `/slow_echo/<text>` had none."""
    runner = start(SLEEP="1")
    statuses: list[int] = []

    def call(text: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=10)
        conn.request("GET", f"{PREFIX}/slow_echo/{text}")
        statuses.append(conn.getresponse().status)
        conn.close()

    callers = [threading.Thread(target=call, args=(f"t{n}",)) for n in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=10)
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 0
    assert sorted(statuses) == [200, 503, 503]


def test_a_task_cut_short_by_sigkill_runs_again_after_the_restart(
    start: Callable[..., RunnerProcess],
) -> None:
    runner = start(SLEEP="2")
    task_id = post_example(runner, {"image": "x"})
    wait_for(lambda: task_status(runner, task_id)["Status"] == "running model", 10,
             "the task to run")
    pid = service_pid(runner)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the service only; the runner restarts it
    wait_for(lambda: service_pid(runner) not in (None, pid), 20, "the restart")
    wait_ready(runner)
    last = wait_finished(runner, task_id)[-1]
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 0
    assert (last["status"], last["Status"]) == ("completed", "completed")
    assert runner.stdout.count(f"Started task task_id={task_id}") == 2


#: AI4E's older pattern: a plain Flask route that adds a task and runs it in its own thread.
MANUAL_TASK = '''\
import threading
from flask import Flask, request
from ai4e_app_insights_wrapper import AI4EAppInsights
from ai4e_service import AI4EService

app = Flask(__name__)
ai4e_service = AI4EService(app, AI4EAppInsights())
manager = ai4e_service.api_task_manager
go = threading.Event()

def work(task_id, fail):
    manager.UpdateTaskStatus(task_id, "working")
    go.wait(10)
    if fail:
        manager.FailTask(task_id, "could not do it")
    else:
        manager.CompleteTask(task_id, "all done")

@app.route("/start", methods=["POST"])
def start():
    info = manager.AddTask(request)
    threading.Thread(target=work, args=(info["TaskId"], "fail" in request.args)).start()
    return "TaskId: " + info["TaskId"]

@app.route("/go", methods=["POST"])
def release():
    go.set()
    return "ok"

@app.route("/new-id")
def new_id():
    return manager.GetTaskId()

@app.route("/status/<task_id>")
def status(task_id):
    return manager.GetTaskStatus(task_id)

if __name__ == "__main__":
    app.run(host="0.0.0.0", port=80)
'''


def test_add_task_and_its_calls_from_code_that_runs_the_task_itself(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "__main__.py").write_text(MANUAL_TASK)
    runner = RunnerProcess([tmp_path / "svc", "--code-only"],
                           env=toolkit_env(TASKS_DB=str(tmp_path / "tasks.sqlite3")))
    try:
        wait_ready(runner)
        ids = [TASK_ID.fullmatch(request(runner, "POST", path, b"", None)[2].decode())[1]
               for path in ("/start", "/start?fail")]
        wait_for(lambda: all(task_status(runner, i, "")["Status"] == "working" for i in ids),
                 10, "the tasks to run")
        working = json.loads(runner.get(f"/status/{ids[0]}")[1])
        request(runner, "POST", "/go", b"", None)
        wait_for(lambda: all(task_status(runner, i, "")["status"] in FINISHED for i in ids),
                 10, "the tasks to finish")
        done, failed = (task_status(runner, i, "") for i in ids)
        unknown = json.loads(runner.get("/status/nope")[1])
        new_ids = [runner.get("/new-id") for _ in range(2)]
        code = stop(runner)
    finally:
        runner.kill()
    assert (working["TaskId"], working["Status"], working["status"]) == (ids[0], "working",
                                                                         "running")
    assert (done["status"], done["Status"]) == ("completed", "all done")
    assert (failed["status"], failed["Status"], failed["error"]) == (
        "failed", "could not do it", "could not do it")
    assert (unknown["TaskId"], unknown["Status"], unknown["Endpoint"]) == ("nope", "Not found.", "")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", unknown["Timestamp"])
    assert [answer[0] for answer in new_ids] == [200, 200]  # AI4E's GetTaskId(): a fresh id
    assert len({answer[1] for answer in new_ids} - {i.encode() for i in ids}) == 2
    assert "app.run(host='0.0.0.0', port=80): arguments ignored" in runner.stdout
    assert code == 0


def test_sigterm_lets_a_running_task_finish(start: Callable[..., RunnerProcess]) -> None:
    """AI4E refused requests once terminating but dropped its running threads with the
    process; the toolkit's drain waits for them (up to DRAIN_TIMEOUT)."""
    runner = start(SLEEP="1")
    task_id = post_example(runner, {"image": "x"})
    wait_for(lambda: task_status(runner, task_id)["Status"] == "running model", 10,
             "the task to run")
    runner.signal(signal.SIGTERM)
    assert runner.finish() == 0
    again = start(SLEEP="1")  # the same TASKS_DB: the record the first run left
    last = task_status(again, task_id)
    assert stop(again) == 0
    assert (last["status"], last["Status"]) == ("completed", "completed")
    assert f"Completed task task_id={task_id}" in runner.stdout
    assert f"Started task task_id={task_id}" not in again.stdout


IMAGE_SERVICE = ROOT / "tests" / "toolkit" / "ai4e_image_py"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(24))


@pytest.fixture(scope="module")
def image_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    """The image service (AI4E's pytorch/tensorflow examples' shape), one run for the module."""
    tasks_db = tmp_path_factory.mktemp("ai4e-image") / "tasks.sqlite3"
    runner = RunnerProcess([IMAGE_SERVICE, "--code-only"], env=toolkit_env(
        API_PREFIX=PREFIX, TASKS_DB=str(tasks_db)))
    try:
        wait_ready(runner)
        yield runner
    finally:
        runner.kill()


def test_an_image_service_with_ai4es_flask_extension_classifies(
    image_service: RunnerProcess,
) -> None:
    """`from ai4e_app_insights import AppInsights; AppInsights(app)` (AI4E's Flask extension,
    in its pytorch example) imports and leaves the answers, errors included, alone."""
    classify = f"{PREFIX}/classify"
    image = request(image_service, "POST", classify, PNG, "image/png")
    octets = request(image_service, "POST", classify, b"abc", "application/octet-stream")
    wrong_type = request(image_service, "POST", classify, PNG, "text/plain")
    too_big = request(image_service, "POST", classify, b"x" * 10001, "image/jpeg")
    assert (image[0], image[2]) == (200, f"class {len(PNG)}".encode())
    assert (octets[0], octets[2]) == (200, b"class 3")
    assert problem(wrong_type)["status"] == 415
    assert problem(too_big)["status"] == 413


def test_an_abort_in_the_processing_function_answers_the_post(
    image_service: RunnerProcess,
) -> None:
    """AI4E ran the processing function in the request, so its `abort(400, ...)` was the
    caller's answer; no task is made. A good image runs it once, not once more in the task."""
    empty = request(image_service, "POST", f"{PREFIX}/detect", b"", "image/png")
    before = image_service.stdout.count("Processing data...")
    status, _, body = request(image_service, "POST", f"{PREFIX}/detect", PNG, "image/png")
    match = TASK_ID.fullmatch(body.decode())
    assert (status, bool(match)) == (200, True), body
    wait_for(lambda: task_status(image_service, match[1])["status"] in FINISHED, 10,
             "the detection")
    refused = problem(empty)
    assert (refused["status"], refused["detail"]) == (400, "an image is required")
    assert image_service.stdout.count("Processing data...") == before + 1


def test_what_an_async_function_returns_does_not_fail_its_task(
    image_service: RunnerProcess,
) -> None:
    """AI4E ignored an async function's return value; /detect returns its BytesIO (not JSON)
    after setting its last status: the task completes with that status, no result."""
    task_id = TASK_ID.fullmatch(
        request(image_service, "POST", f"{PREFIX}/detect", PNG, "image/jpeg")[2].decode())[1]
    wait_for(lambda: task_status(image_service, task_id)["status"] in FINISHED, 10,
             "the detection")
    last = task_status(image_service, task_id)
    assert (last["status"], last["Status"], last["result"]) == (
        "completed", f"completed - {len(PNG)} boxes", None)


#: An async endpoint whose processing function reads `request.files` (a multipart upload), no
#: limits set; its first run waits until it is killed, the run after the restart completes.
UPLOAD_TASK = '''\
import os, time
from flask import Flask
from ai4e_app_insights_wrapper import AI4EAppInsights
from ai4e_service import APIService

app = Flask(__name__)
ai4e_service = APIService(app, AI4EAppInsights())

def process_files(request):
    return {"files": {f.filename: f.read().decode() for f in request.files.values()}}

@ai4e_service.api_async_func(api_path="/upload", methods=["POST"],
                             request_processing_function=process_files)
def upload(*args, **kwargs):
    taskId = kwargs["taskId"]
    got = ",".join(f"{name}={text}" for name, text in sorted(kwargs["files"].items()))
    ai4e_service.api_task_manager.UpdateTaskStatus(taskId, "got " + got)
    if not os.path.exists("ran-once"):
        open("ran-once", "w").close()
        time.sleep(30)
    ai4e_service.api_task_manager.CompleteTask(taskId, "done " + got)

if __name__ == "__main__":
    app.run()
'''


def test_a_multipart_upload_is_there_again_when_its_task_runs_after_a_restart(
    tmp_path: Path,
) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "__main__.py").write_text(UPLOAD_TASK)
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.txt\""
            b"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b0undary--\r\n")
    runner = RunnerProcess([tmp_path / "svc", "--code-only"],
                           env=toolkit_env(TASKS_DB=str(tmp_path / "tasks.sqlite3")))
    try:
        wait_ready(runner)
        answer = request(runner, "POST", "/upload", body, "multipart/form-data; boundary=b0undary")
        task_id = TASK_ID.fullmatch(answer[2].decode())[1]
        wait_for(lambda: task_status(runner, task_id, "")["Status"] == "got a.txt=hello", 10,
                 "the first run")
        pid = service_pid(runner)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: service_pid(runner) not in (None, pid), 20, "the restart")
        wait_ready(runner)
        wait_for(lambda: task_status(runner, task_id, "")["status"] in FINISHED, 10,
                 "the second run")
        last = task_status(runner, task_id, "")
        code = stop(runner)
    finally:
        runner.kill()
    assert (last["status"], last["Status"]) == ("completed", "done a.txt=hello")
    assert code == 0


BATCH_SERVICE = ROOT / "tests" / "toolkit" / "ai4e_batch_py"


@pytest.fixture(scope="module")
def batch_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    """The batch service (CameraTraps' batch API's shape), one run for the module."""
    tasks_db = tmp_path_factory.mktemp("ai4e-batch") / "tasks.sqlite3"
    runner = RunnerProcess([BATCH_SERVICE, "--code-only"], env=toolkit_env(
        API_PREFIX=PREFIX, TASKS_DB=str(tasks_db), SLEEP="0.3"))
    try:
        wait_ready(runner)
        yield runner
    finally:
        runner.kill()


def post_detections(runner: RunnerProcess, doc: object) -> str:
    answer = request(runner, "POST", f"{PREFIX}/request_detections", json.dumps(doc).encode())
    match = TASK_ID.fullmatch(answer[2].decode())
    assert (answer[0], bool(match)) == (200, True), answer
    return match[1]


def test_a_status_set_as_a_dict_is_read_back_as_an_object(batch_service: RunnerProcess) -> None:
    """AI4E kept a status as given; CameraTraps' clients read `Status["request_status"]`."""
    done_id = post_detections(batch_service, {"images": ["a.jpg", "b.jpg"], "request_name": "r1"})
    failed_id = post_detections(batch_service, {"images": ["fail"]})
    running = wait_for(lambda: (lambda doc: doc if isinstance(doc["Status"], dict) else None)(
        task_status(batch_service, done_id)), 10, "the first status")
    seen = {task_id: wait_finished(batch_service, task_id)[-1] for task_id in (done_id, failed_id)}
    toolkit_doc = json.loads(batch_service.get(f"{PREFIX}/tasks/{done_id}")[1])
    done, failed = seen[done_id], seen[failed_id]
    assert (running["Status"]["request_status"], running["Status"]["message"]) == (
        "running", "Request received.")
    assert (done["status"], done["Status"]["request_status"], done["Status"]["message"]) == (
        "completed", "completed", {"num_images": 2, "detections": "r1_detections.json"})
    assert (failed["status"], failed["Status"]["request_status"]) == ("failed", "failed")
    assert json.loads(failed["error"]) == failed["Status"]
    assert json.loads(done["message"]) == done["Status"]  # the toolkit's keys: its JSON text
    assert toolkit_doc["message"] == done["message"]


def test_a_response_from_the_processing_function_is_the_answer(
    batch_service: RunnerProcess,
) -> None:
    """CameraTraps' validation returns `make_response(jsonify(error=...), 400)` "without
    issuing the user a request_id"; AI4E crashed (500) merging it into the arguments."""
    path = f"{PREFIX}/request_detections"
    no_images = request(batch_service, "POST", path, json.dumps({"request_name": "r"}).encode())
    bad_name = request(batch_service, "POST", path,
                       json.dumps({"images": ["a.jpg"], "request_name": "a b"}).encode())
    assert (no_images[0], json.loads(no_images[2])) == (
        400, {"error": "images is a required field."})
    assert bad_name[0] == 400 and "unallowed characters" in json.loads(bad_name[2])["error"]


#: AI4E services' plain Flask routes, written with the prefix themselves (the pytorch example,
#: CameraTraps' batch API: `@app.route(api_prefix + '/request_detections', ...)`).
PREFIXED_ROUTES = '''\
import os
from flask import Flask, jsonify, request
from ai4e_app_insights_wrapper import AI4EAppInsights
from ai4e_service import APIService

api_prefix = os.getenv("API_PREFIX")
app = Flask(__name__)
with app.app_context():
    ai4e_service = APIService(app, AI4EAppInsights())

@app.route(api_prefix + "/request_detections", methods=["POST"])
def request_detections():
    return jsonify(got=request.get_json())

@app.route(api_prefix + "/version/<name>")
def version(name):
    return "v1 of " + name

@app.route("/unprefixed")
def unprefixed():
    return "moved under the prefix"

@ai4e_service.api_sync_func(api_path=api_prefix + "/nested", methods=["GET"])
def nested(*args, **kwargs):
    return "AI4E put the prefix before api_path, whatever it was"

if __name__ == "__main__":
    app.run()
'''


def test_plain_flask_routes_written_with_the_prefix_are_served(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "__main__.py").write_text(PREFIXED_ROUTES)
    runner = RunnerProcess([tmp_path / "svc", "--code-only"], env=toolkit_env(
        API_PREFIX=PREFIX, TASKS_DB=str(tmp_path / "tasks.sqlite3")))
    try:
        wait_ready(runner)
        posted = request(runner, "POST", f"{PREFIX}/request_detections", b'{"a": 1}')
        version = runner.get(f"{PREFIX}/version/md")
        moved = runner.get(f"{PREFIX}/unprefixed")
        doubled = request(runner, "GET", f"{PREFIX}{PREFIX}/version/md", content_type=None)
        nested = runner.get(f"{PREFIX}{PREFIX}/nested")
        code = stop(runner)
    finally:
        runner.kill()
    assert (posted[0], json.loads(posted[2])) == (200, {"got": {"a": 1}})
    assert version == (200, b"v1 of md")
    assert moved == (200, b"moved under the prefix")
    assert problem(doubled)["status"] == 404
    assert nested == (200, b"AI4E put the prefix before api_path, whatever it was")
    assert code == 0


#: CameraTraps' batch API "hacking the API Framework a bit": its own route adds the task,
#: sets AI4E's request counter and runs the work with AI4E's private thread helper.
THREAD_HELPER = '''\
import os
from flask import Flask, jsonify, request
from ai4e_app_insights_wrapper import AI4EAppInsights
from ai4e_service import APIService

api_prefix = os.getenv("API_PREFIX")
app = Flask(__name__)
with app.app_context():
    ai4e_service = APIService(app, AI4EAppInsights())
api_task_manager = ai4e_service.api_task_manager
ai4e_service.func_request_counts[api_prefix + "/request_detections"] = 0

@app.route(api_prefix + "/request_detections", methods=["POST"])
def request_detections():
    task_info = api_task_manager.AddTask(request)
    request_id = str(task_info["TaskId"])
    ai4e_service._create_and_execute_thread(  # AI4E fails the task named `taskId` if it raises
        func=_request_detections, api_path="/request_detections",
        request_id=request_id, post_body=request.get_json(), taskId=request_id)
    return jsonify(request_id=request_id)

def _request_detections(**kwargs):
    request_id = kwargs["request_id"]
    if kwargs["post_body"].get("fail"):
        raise RuntimeError("the cluster is gone")
    counted = ai4e_service.func_request_counts[api_prefix + "/request_detections"]
    api_task_manager.UpdateTaskStatus(request_id, {"request_status": "completed",
                                                   "running": counted})

@app.route(api_prefix + "/echo/<text>")
def echo(text):
    return ai4e_service.wrap_sync_endpoint("get:echo", func=lambda **kw: "Echo: " + kw["text"],
                                           api_path="/echo", text=text)

if __name__ == "__main__":
    app.run()
'''


def test_ai4es_thread_helper_and_request_counter_as_cameratraps_uses_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "__main__.py").write_text(THREAD_HELPER)
    runner = RunnerProcess([tmp_path / "svc", "--code-only"], env=toolkit_env(
        API_PREFIX=PREFIX, TASKS_DB=str(tmp_path / "tasks.sqlite3")))
    try:
        wait_ready(runner)
        ids = [json.loads(request(runner, "POST", f"{PREFIX}/request_detections",
                                  json.dumps(body).encode())[2])["request_id"]
               for body in ({}, {"fail": True})]
        wait_for(lambda: all(task_status(runner, i)["status"] in FINISHED
                             or isinstance(task_status(runner, i)["Status"], dict)
                             for i in ids), 10, "the threads")
        done, failed = (task_status(runner, i) for i in ids)
        echo = runner.get(f"{PREFIX}/echo/hi")
        code = stop(runner)
    finally:
        runner.kill()
    assert done["Status"] == {"request_status": "completed", "running": 1}
    assert (failed["status"], failed["Status"]) == (
        "failed", "Task failed - please contact support or try again.")
    assert "RuntimeError: the cluster is gone" in runner.stdout
    assert echo == (200, b"Echo: hi")
    assert code == 0


def monitored_tasks(runner: RunnerProcess) -> list[dict]:
    """CameraTraps' v4 scaffold: `default_post` starts a monitoring thread and returns; the
    thread completes (or fails) the task later. The last documents of both tasks."""
    ids = [TASK_ID.fullmatch(request(runner, "POST", f"{PREFIX}/example{query}",
                                     b"{}")[2].decode())[1] for query in ("", "?fail")]
    wait_for(lambda: all(isinstance(task_status(runner, i)["Status"], dict) for i in ids), 10,
             "the monitoring threads")
    return [task_status(runner, i) for i in ids]


def test_a_thread_started_by_the_task_has_the_last_word_on_it(
    batch_service: RunnerProcess,
) -> None:
    """AI4E showed what the thread set; the function's return had completed the task."""
    done, failed = monitored_tasks(batch_service)
    assert (done["status"], done["Status"]) == ("completed", {"status": "complete",
                                                             "other_info": 2})
    assert (failed["status"], failed["Status"]) == ("failed", {"status": "failed",
                                                               "other_info": 3})


def test_the_last_word_and_status_objects_with_redis(redis_url: str, tmp_path: Path) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushall()
    runner = RunnerProcess([BATCH_SERVICE, "--code-only"], env=toolkit_env(
        API_PREFIX=PREFIX, REDIS_URL=redis_url, SLEEP="0.2"))
    try:
        wait_ready(runner)
        done, failed = monitored_tasks(runner)
        code = stop(runner)
    finally:
        runner.kill()
    assert (done["status"], done["Status"], done["message"]) == (
        "completed", {"status": "complete", "other_info": 2},
        '{"status": "complete", "other_info": 2}')
    assert (failed["status"], failed["error"]) == ("failed",
                                                   '{"status": "failed", "other_info": 3}')
    assert code == 0
