"""The example's tests, against the service as the image serves it: `pytest examples/hello-service`.

The `live_service` fixture (the runner's pytest plugin) starts `execute-code ..`
once for this module on a free port: the requirements are installed (or found
unchanged), the service is supervised, `PORT` is set, as in the image.
"""

import pytest
import requests

pytestmark = pytest.mark.live_service(code="..", env={"HOST": "127.0.0.1"})


def test_health_and_ready_say_ok(live_service) -> None:
    health = requests.get(live_service.url + "/health", timeout=5)
    ready = requests.get(live_service.url + "/ready", timeout=5)
    assert (health.status_code, health.json()) == (200, {"health": "true", "status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_index_says_hello(live_service) -> None:
    response = requests.get(live_service.url + "/", timeout=5)
    assert response.json() == {"message": "hello from the workspace runner"}


def test_slow_answers_after_the_time_asked(live_service) -> None:
    response = requests.get(live_service.url + "/slow", params={"seconds": "0.1"}, timeout=5)
    assert response.json() == {"slept": 0.1}
    assert response.elapsed.total_seconds() >= 0.1


def test_unknown_route_is_a_404_problem(live_service) -> None:
    response = requests.get(live_service.url + "/nope", timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 404
