"""The example's tests, against the service as the image serves it: `pytest examples/hello-service`.

The `live_service` fixture (the runner's pytest plugin) starts `execute-code ..`
once for this module on a free port: the requirements are installed (or found
unchanged), the service is supervised, `PORT` is set, as in the image.
"""

import pytest
import requests

pytestmark = pytest.mark.live_service(code="..", env={"HOST": "127.0.0.1"})


def test_health_says_ok(live_service) -> None:
    response = requests.get(live_service.url + "/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_index_says_hello(live_service) -> None:
    response = requests.get(live_service.url + "/", timeout=5)
    assert response.json() == {"message": "hello from the workspace runner"}


def test_slow_answers_after_the_time_asked(live_service) -> None:
    response = requests.get(live_service.url + "/slow", params={"seconds": "0.1"}, timeout=5)
    assert response.json() == {"slept": 0.1}
    assert response.elapsed.total_seconds() >= 0.1


def test_unknown_route_is_404(live_service) -> None:
    assert requests.get(live_service.url + "/nope", timeout=5).status_code == 404
