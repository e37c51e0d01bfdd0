"""pytest plugin: the `live_service` fixture serves the code under test the way the image would.

    def test_predict(live_service):
        r = requests.post(live_service.url + "/predict", json={...})

What to serve: `@pytest.mark.live_service(code=..., env={...}, args=[...],
scope="module"|"function")` on a test, class or module (the closest marker's
keywords win), else the ini option `live_service_code`, else the rootdir when
it has a `__main__.py`. One start per test module by default.

Installing the runner registers this module as a pytest11 entry point, so it
is loaded in every pytest run, including those that never use it: it autouses
nothing and imports no other part of the runner until a test asks for the
fixture (`runner.live_service` then brings in the runner's command line).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from runner.live_service import LiveService, Spec

SCOPES = ("module", "function")
MARKER_OPTIONS = ("code", "env", "args", "scope")
DEFAULT_TIMEOUT = "120"  # seconds to install and start; a first pip install can take a while

T = TypeVar("T")
_USED = pytest.StashKey["LiveService"]()  # on a test item: the service its test used
_KEPT = pytest.StashKey[list["LiveService"]]()  # on the config: --live-service-keep's services


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("live_service", "serving code through the workspace runner")
    group.addoption("--live-service-keep", action="store_true",
                    help="leave live services running after the tests and print their URLs")
    parser.addini("live_service_code", "folder, script, VCS URL, lab key or URL the "
                  "live_service fixture serves (default: the rootdir if it has __main__.py)")
    parser.addini("live_service_timeout", "seconds a live service may take to install and "
                  f"start (default {DEFAULT_TIMEOUT})", default=DEFAULT_TIMEOUT)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "live_service(code=None, env=None, args=None, scope='module'): "
        "what the live_service fixture serves, with which environment and runner flags")
    config.stash[_KEPT] = []


@pytest.fixture(scope="module")
def _live_service_pool(request: pytest.FixtureRequest) -> Iterator[dict[Spec, LiveService]]:
    """The module-scoped services of one test module, stopped after its last test."""
    pool: dict[Spec, LiveService] = {}
    yield pool
    for service in pool.values():
        _release(request.config, service)


@pytest.fixture
def live_service(
    request: pytest.FixtureRequest,
    _live_service_pool: dict[Spec, LiveService],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveService]:
    """The code under test served by the runner on a free port: `.url`, `.port`, `.output`,
    `.restart()`. Configured by `@pytest.mark.live_service(...)`; see the module docstring."""
    options = _marker_options(request.node)
    spec = _spec(request, options)
    if options.get("scope", "module") == "function":
        service = _started(request.config, spec, tmp_path_factory)
        request.node.stash[_USED] = service
        yield service
        _release(request.config, service)
        return
    service = _pooled(request.config, _live_service_pool, spec, tmp_path_factory)
    request.node.stash[_USED] = service
    yield service


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A test whose service crashed fails, with the service's output, even if it passed."""
    report = yield
    service = item.stash.get(_USED, None)
    if service is None or report.when != "call":
        return report
    crash = service.crashed()
    if crash is not None or report.failed:
        report.sections.append(("live service output", service.run_output()))
    if crash is not None:
        why = f"the live service {service.spec.code} crashed during the test: {crash}"
        if report.passed:
            report.outcome = "failed"
            report.longrepr = why
        else:
            report.sections.append(("live service", why))
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT, [])
    if not kept:
        return
    terminalreporter.write_sep("=", "live services kept running (--live-service-keep)")
    for service in kept:
        terminalreporter.write_line(
            f"{service.url}  {service.spec.code}  (runner pid {service.pid}; output in "
            f"{service.log_path}; stop it with `kill {service.pid}`)")


def _marker_options(node: pytest.Item) -> dict[str, Any]:
    """The keywords of every `live_service` marker on the test, the closest one winning."""
    options: dict[str, Any] = {}
    for marker in node.iter_markers("live_service"):
        if marker.args:
            pytest.fail(f"live_service marker takes keywords only ({', '.join(MARKER_OPTIONS)})"
                        f", got {marker.args!r}", pytrace=False)
        for name, value in marker.kwargs.items():
            options.setdefault(name, value)
    unknown = sorted(set(options) - set(MARKER_OPTIONS))
    if unknown:
        pytest.fail(f"live_service marker: unknown option(s) {', '.join(unknown)} "
                    f"(known: {', '.join(MARKER_OPTIONS)})", pytrace=False)
    if options.get("scope", "module") not in SCOPES:
        pytest.fail(f"live_service marker: scope must be one of {', '.join(SCOPES)}, "
                    f"got {options['scope']!r}", pytrace=False)
    return options


def _spec(request: pytest.FixtureRequest, options: dict[str, Any]) -> Spec:
    from runner.live_service import Spec

    env = options.get("env") or {}
    return Spec(
        code=_code(request, options.get("code")),
        env=tuple(sorted((str(name), str(value)) for name, value in env.items())),
        args=tuple(map(str, options.get("args") or ())),
    )


def _code(request: pytest.FixtureRequest, given: str | None) -> str:
    """The marker's code (relative to the test file), the ini option's, or the rootdir."""
    config = request.config
    if given:
        return _path_or_spec(str(given), request.node.path.parent)
    configured = config.getini("live_service_code")
    if configured:
        base = config.inipath.parent if config.inipath else config.rootpath
        return _path_or_spec(configured, base)
    if (config.rootpath / "__main__.py").is_file():
        return str(config.rootpath)
    pytest.fail("live_service: nothing to serve: give @pytest.mark.live_service(code=...) or "
                f"the ini option live_service_code, or add a __main__.py to {config.rootpath}",
                pytrace=False)


def _path_or_spec(value: str, base: Path) -> str:
    """An existing path relative to `base` made absolute; else as given (a URL or a lab key)."""
    path = base / value
    return str(path) if path.exists() else value


def _started(
    config: pytest.Config, spec: Spec, tmp_path_factory: pytest.TempPathFactory
) -> LiveService:
    service = _new_service(config, spec, tmp_path_factory)
    _starting(service.start)
    return service


def _pooled(
    config: pytest.Config,
    pool: dict[Spec, LiveService],
    spec: Spec,
    tmp_path_factory: pytest.TempPathFactory,
) -> LiveService:
    """The module's service for `spec`: started once, started again after a crash."""
    service = pool.get(spec)
    if service is None:
        service = pool[spec] = _new_service(config, spec, tmp_path_factory)
        _starting(service.start)
    elif service.failure is not None:
        pytest.fail(service.failure, pytrace=False)  # as for its first test: no second try
    elif service.crashed() is not None:
        _starting(service.restart)
    return service


def _new_service(
    config: pytest.Config, spec: Spec, tmp_path_factory: pytest.TempPathFactory
) -> LiveService:
    from runner.live_service import LiveService

    log_path = tmp_path_factory.mktemp("live-service") / "output.log"
    timeout = _timeout(config)
    return _starting(lambda: LiveService(spec, log_path, cwd=config.rootpath, keep=_keep(config),
                                      timeout=timeout))


def _timeout(config: pytest.Config) -> float:
    """The ini option live_service_timeout in seconds; a bad one fails the test saying so."""
    value = config.getini("live_service_timeout")
    try:
        timeout = float(value)
    except ValueError:
        timeout = math.nan
    if not math.isfinite(timeout) or timeout < 0:
        pytest.fail(f"ini option live_service_timeout: expected a number of seconds, "
                    f"got {value!r}", pytrace=False)
    return timeout


def _starting(start: Callable[[], T]) -> T:
    """Make or start a service; one that cannot come up errors the test with why."""
    from runner.live_service import StartError

    try:
        return start()
    except StartError as exc:
        why = str(exc)
    pytest.fail(why, pytrace=False)  # outside `except`: no "during handling of" chain


def _keep(config: pytest.Config) -> bool:
    return bool(config.getoption("live_service_keep"))


def _release(config: pytest.Config, service: LiveService) -> None:
    """Stop the service, or with --live-service-keep leave it running and list it."""
    if _keep(config) and service.crashed() is None:
        config.stash[_KEPT].append(service)
    else:
        service.stop()
