"""`/openapi.json` (valid OpenAPI 3.1, every route and refusal) and `/metrics` (Prometheus)."""

import http.client
import json
import os
import socket
from pathlib import Path

import pytest
from conftest import TOOLKIT
from helpers import http_get, wait_for
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from toolkit_services import STANDARD


@pytest.fixture(scope="module")
def svc(start_module_service, tmp_path_factory: pytest.TempPathFactory):
    return start_module_service(STANDARD, GATE_DIR=str(tmp_path_factory.mktemp("gates")),
                                API_PREFIX="/api")


def test_openapi_document_is_valid_and_complete(svc) -> None:
    status, body = http_get(svc.url("/api/openapi.json"))
    doc = json.loads(body)
    validate(doc)  # raises on an invalid document
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": "/api"}]
    assert set(doc["paths"]) == {"/predict", "/boom", "/teapot", "/echo/{text}", "/hold/{name}",
                                 "/batch", "/tasks/{task_id}", "/health", "/ready"}
    predict = doc["paths"]["/predict"]["post"]
    assert {"200", "400", "411", "413", "415", "503"} <= predict["responses"].keys()
    assert list(predict["requestBody"]["content"]) == ["application/json"]
    assert predict["summary"] == "Echo the JSON body (waiting for its \"gate\" first, when it " \
        "names one)."
    batch = doc["paths"]["/batch"]["post"]
    assert {"202", "400", "415", "422", "503"} <= batch["responses"].keys()
    assert doc["paths"]["/echo/{text}"]["parameters"][0]["name"] == "text"
    assert doc["paths"]["/tasks/{task_id}"]["get"]["responses"].keys() == {"200", "404", "503"}
    assert "TaskStatus" in doc["components"]["schemas"]


def metric_samples(svc) -> dict[tuple[str, tuple], float]:
    status, body = http_get(svc.url("/api/metrics"))
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def test_metrics_count_requests_rejections_and_tasks(svc) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("POST", "/api/predict", b"{}", {"Content-Type": "text/plain"})
            conn.getresponse().read()
        conn.request("POST", "/api/batch", b"{}", {"Content-Type": "application/json"})
        task_id = json.loads(conn.getresponse().read())["task_id"]
    finally:
        conn.close()
    wait_for(lambda: json.loads(http_get(svc.url(f"/api/tasks/{task_id}"))[1])["status"] ==
             "completed", 10, "the task")
    http_get(svc.url("/api/echo/a"))
    http_get(svc.url("/api/echo/b"))
    # A request is counted once its answer is sent, a moment after the client has it.
    key = ("http_request_duration_seconds_count", (("route", "/echo/<text>"),))
    samples = wait_for(lambda: (s := metric_samples(svc)).get(key) == 2 and s, 5,
                       "the metrics of the last request")
    route = lambda r, s, m="GET": ("http_requests_total",  # noqa: E731
                                   (("method", m), ("route", r), ("status", s)))
    assert samples[route("/predict", "415", "POST")] == 2
    assert samples[route("/echo/<text>", "200")] == 2  # one series for every text
    assert samples[("http_rejections_total", (("reason", "content_type"),))] == 2
    assert samples[("tasks", (("status", "completed"),))] >= 1
    assert samples[("tasks", (("status", "queued"),))] == 0
    assert samples[("http_requests_in_flight", ())] >= 1  # this scrape


def test_made_up_methods_are_counted_as_one_series(svc) -> None:
    """A method is any token a client likes: each one made a series of its own, kept
    for ever (a client could grow the service's memory and every scrape without end)."""
    for method in ("FOOA", "FOOB", "FOOC"):
        with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as sock:
            sock.sendall(f"{method} /api/echo/x HTTP/1.1\r\nHost: x\r\n"
                         "Connection: close\r\n\r\n".encode())
            assert sock.recv(100).startswith(b"HTTP/1.1 405 ")
    key = ("http_requests_total", (("method", "other"), ("route", "<unmatched>"),
                                   ("status", "405")))
    samples = wait_for(lambda: (s := metric_samples(svc)).get(key) == 3 and s, 5,
                       "the three requests in the metrics")
    assert not [labels for _, labels in samples if ("method", "FOOA") in labels]


def test_without_the_extras_the_documents_say_what_to_install(start_service,
                                                              tmp_path: Path) -> None:
    """apispec and prometheus-client hidden (a sitecustomize makes their import fail),
    as in a service installed without the `openapi` and `prometheus` extras."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nsys.modules['apispec'] = None\nsys.modules['prometheus_client'] = None\n")
    svc = start_service(STANDARD, GATE_DIR=str(tmp_path),
                        PYTHONPATH=f"{TOOLKIT}{os.pathsep}{hide}")
    status, doc = svc.get_json("/openapi.json")
    assert (status, doc["status"]) == (501, 501)
    assert "workspace-service[openapi]" in doc["detail"]
    status, doc = svc.get_json("/metrics")
    assert status == 404 and "workspace-service[prometheus]" in doc["detail"]
