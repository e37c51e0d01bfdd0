"""The pytest plugin (`live_service`), run by pytest's own `pytester` in a real inner pytest.

Each test writes an inner test file, runs pytest on it in a subprocess with the
plugin loaded (`-p runner.pytest_plugin`: the entry point is only active once
the runner is installed again) and checks what a user sees: outcomes, the
report's text, the services' process ids afterwards.
"""

import configparser
import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT, http_get, pid_alive, wait_for, write_service

from runner.live_service import LiveService, Spec

pytest_plugins = ["pytester"]

PLUGIN = "runner.pytest_plugin"

# Every start appends the service's pid to $STARTS_FILE; GET /crash kills it mid-request.
SERVICE_BODY = '''
with open(os.environ["STARTS_FILE"], "a") as starts:
    starts.write(f"{os.getpid()}\\n")


def status(path):
    if path == "/crash":
        print("boom: crashing now", flush=True)
        os._exit(3)
    return 200
'''

# The inner tests: each GETs / and notes the runner's pid in $RUNNER_PIDS.
THREE_TESTS = '''
import os, urllib.request
import pytest

pytestmark = pytest.mark.live_service(code={code!r}, env={env!r}{options})


def get(service):
    with open({runner_pids!r}, "a") as pids:
        pids.write(f"{{service.pid}}\\n")
    return urllib.request.urlopen(service.url, timeout=5).read()


def test_one(live_service):
    assert get(live_service) == b"served"


def test_two(live_service):
    assert get(live_service) == b"served"


def test_three(live_service):
    assert get(live_service) == b"served"
'''


@pytest.fixture
def svc(tmp_path: Path) -> Path:
    return write_service(tmp_path / "svc", body=SERVICE_BODY, reply="served",
                         status_expr="status(self.path)")


@pytest.fixture
def starts(tmp_path: Path) -> Path:
    return tmp_path / "starts.txt"


def run_inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", PLUGIN, *args, timeout=120)


def pids(file: Path) -> list[int]:
    return [int(line) for line in file.read_text().split()] if file.exists() else []


def three_tests(pytester: pytest.Pytester, svc: Path, starts: Path, options: str = "") -> Path:
    runner_pids = pytester.path / "runner-pids.txt"
    pytester.makepyfile(test_inner=THREE_TESTS.format(
        code=str(svc), env={"STARTS_FILE": str(starts)}, runner_pids=str(runner_pids),
        options=options))
    return runner_pids


def test_module_scope_starts_once_for_three_tests(
    pytester: pytest.Pytester, svc: Path, starts: Path
) -> None:
    runner_pids = three_tests(pytester, svc, starts)
    result = run_inner(pytester)
    result.assert_outcomes(passed=3)
    assert len(pids(starts)) == 1
    assert len(set(pids(runner_pids))) == 1
    left = [pid for pid in pids(starts) + pids(runner_pids) if pid_alive(pid)]
    assert left == [], "processes outlived the pytest session"


def test_function_scope_starts_for_every_test(
    pytester: pytest.Pytester, svc: Path, starts: Path
) -> None:
    runner_pids = three_tests(pytester, svc, starts, options=', scope="function"')
    result = run_inner(pytester)
    result.assert_outcomes(passed=3)
    assert len(set(pids(starts))) == 3
    assert len(set(pids(runner_pids))) == 3
    left = [pid for pid in pids(starts) + pids(runner_pids) if pid_alive(pid)]
    assert left == [], "processes outlived the pytest session"


def test_service_that_does_not_install_errors_with_the_error_line(
    pytester: pytest.Pytester, svc: Path, starts: Path
) -> None:
    (svc / "setup.sh").write_text("echo fetching weights\necho 'weights: not found' >&2\nexit 1\n")
    three_tests(pytester, svc, starts)
    result = run_inner(pytester)
    result.assert_outcomes(errors=3)  # one failed start, reported for each test of the module
    result.stdout.fnmatch_lines([
        f"*live service {svc} failed to start: the runner exited 4: error: setup.sh failed: "
        "bash setup.sh exited 1; last output: fetching weights | weights: not found*",
        "its last output:",
        "*installing from setup.sh",
    ])
    assert pids(starts) == [], "the service started although its install failed"


def test_crash_during_a_test_fails_it_with_the_output(
    pytester: pytest.Pytester, svc: Path, starts: Path
) -> None:
    pytester.makepyfile(test_crash=f'''
import contextlib, urllib.request
import pytest

pytestmark = pytest.mark.live_service(code={str(svc)!r}, env={{"STARTS_FILE": {str(starts)!r}}})


def test_crashes_it(live_service):
    with contextlib.suppress(OSError):  # the test itself would pass
        urllib.request.urlopen(live_service.url + "/crash", timeout=5)


def test_next_one_gets_a_fresh_start(live_service):
    assert urllib.request.urlopen(live_service.url, timeout=5).read() == b"served"
''')
    result = run_inner(pytester)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "*_ test_crashes_it _*",
        f"the live service {svc} crashed during the test: the runner exited 5: error: the "
        "service exited with status 3 *",
        "*- live service output -*",
        "boom: crashing now",
    ])
    assert len(pids(starts)) == 2
    assert [pid for pid in pids(starts) if pid_alive(pid)] == []


def test_restart_starts_again_on_the_same_url(
    pytester: pytest.Pytester, svc: Path, starts: Path
) -> None:
    pytester.makepyfile(test_restart=f'''
import urllib.request
import pytest


@pytest.mark.live_service(code={str(svc)!r}, env={{"STARTS_FILE": {str(starts)!r}}})
def test_restart(live_service):
    url, first = live_service.url, live_service.pid
    live_service.restart()
    assert (live_service.url, live_service.pid != first) == (url, True)
    assert urllib.request.urlopen(url, timeout=5).read() == b"served"
    assert live_service.output.count("service ready") == 2
''')
    run_inner(pytester).assert_outcomes(passed=1)
    assert len(pids(starts)) == 2


@pytest.mark.parametrize("where", ["rootdir", "ini option"])
def test_code_from_the_rootdir_or_the_ini_option(pytester: pytest.Pytester, where: str) -> None:
    if where == "rootdir":
        write_service(pytester.path, reply="from the rootdir")
    else:
        write_service(pytester.path / "model", reply="from the ini option")
        pytester.makeini("[pytest]\nlive_service_code = model\n")
    pytester.makepyfile(test_default=f'''
import urllib.request


def test_default(live_service):
    answer = urllib.request.urlopen(live_service.url, timeout=5).read()
    assert answer == b"from the {where}"
''')
    run_inner(pytester).assert_outcomes(passed=1)


READY_AFTER = """
import time
STARTED = time.monotonic()


def status(path):
    if path == "/ready":
        return 200 if time.monotonic() - STARTED > {seconds} else 503
    return 200
"""


def test_waits_for_a_ready_route_to_say_yes(pytester: pytest.Pytester, tmp_path: Path) -> None:
    svc = write_service(tmp_path / "svc", body=READY_AFTER.format(seconds=0.5),
                        status_expr="status(self.path)")
    pytester.makepyfile(test_ready=f'''
import urllib.request
import pytest


@pytest.mark.live_service(code={str(svc)!r})
def test_ready_at_once(live_service):
    assert urllib.request.urlopen(live_service.url + "/ready", timeout=5).status == 200
''')
    run_inner(pytester).assert_outcomes(passed=1)


def test_a_ready_route_that_never_says_yes_errors_after_the_timeout(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    svc = write_service(tmp_path / "svc", body=READY_AFTER.format(seconds=3600),
                        status_expr="status(self.path)")
    pytester.makeini("[pytest]\nlive_service_timeout = 4\n")
    pytester.makepyfile(test_never_ready=f'''
import pytest


@pytest.mark.live_service(code={str(svc)!r})
def test_it(live_service):
    pass
''')
    result = run_inner(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        f"*live service {svc} failed to start: the service did not answer 2xx on /ready "
        "within 4 s (ini option live_service_timeout)"])


def test_a_wrong_marker_errors_saying_what_is_wrong(pytester: pytest.Pytester, svc: Path) -> None:
    pytester.makepyfile(test_wrong=f'''
import pytest


@pytest.mark.live_service(code={str(svc)!r}, port=1)
def test_unknown_option(live_service):
    pass


@pytest.mark.live_service(code={str(svc)!r}, scope="session")
def test_unknown_scope(live_service):
    pass


@pytest.mark.live_service(code={str(svc)!r}, args=["--restart", "sometimes"])
def test_bad_runner_flag(live_service):
    pass


@pytest.mark.live_service(code={str(svc)!r}, args=["--port", "18999"])
def test_own_port(live_service):
    pass
''')
    result = run_inner(pytester)
    result.assert_outcomes(errors=4)
    report = result.stdout.str()
    assert "live_service marker: unknown option(s) port (known: code, env, args, scope)" in report
    assert "live_service marker: scope must be one of module, function, got 'session'" in report
    assert ("bad live_service args ['--restart', 'sometimes']: argument --restart: invalid "
            "choice: 'sometimes'") in report
    assert ("bad live_service args ['--port', '18999']: the fixture gives the service a free "
            "port of its own (live_service.port, .url): leave --port out") in report
    assert "During handling" not in report


def test_a_bad_timeout_option_errors_saying_what_is_wrong(
    pytester: pytest.Pytester, svc: Path
) -> None:
    pytester.makeini("[pytest]\nlive_service_timeout = soon\n")
    pytester.makepyfile(test_it=f"""
import pytest


@pytest.mark.live_service(code={str(svc)!r})
def test_it(live_service):
    pass
""")
    result = run_inner(pytester)
    result.assert_outcomes(errors=1)
    report = result.stdout.str()
    assert ("ini option live_service_timeout: expected a number of seconds, got 'soon'"
            in report), report
    assert "Traceback" not in report and "ValueError" not in report


def test_nothing_to_serve_errors_saying_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_it(live_service):\n    pass\n")
    result = run_inner(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*live_service: nothing to serve: give "
                                 "@pytest.mark.live_service(code=...) or the ini option*"])


def test_keep_leaves_the_service_running_and_prints_its_url(
    pytester: pytest.Pytester, svc: Path, starts: Path
) -> None:
    runner_pids = three_tests(pytester, svc, starts)
    result = run_inner(pytester, "--live-service-keep")
    kept = pids(runner_pids)[:1]
    try:
        result.assert_outcomes(passed=3)
        kept_line = result.stdout.str().split("live services kept running", 1)[1]
        url = kept_line.split("\n", 2)[1].split()[0]
        answer = http_get(url)
    finally:
        for pid in kept:
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not any(map(pid_alive, kept + pids(starts))), 30, "kept runner to stop")
    assert url.startswith("http://127.0.0.1:")
    assert answer == (200, b"served")


def test_a_pytest_run_not_using_it_imports_nothing_of_the_runner(
    pytester: pytest.Pytester,
) -> None:
    """With the plugin loaded (as the entry point loads it everywhere), and without."""
    pytester.makeconftest('''
import sys


def pytest_unconfigure(config):
    with open("modules-" + config.getoption("plugins")[-1].replace(":", "-"), "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
''')
    pytester.makepyfile(test_unrelated="def test_it():\n    pass\n")
    for plugin in (PLUGIN, "no:" + PLUGIN):
        pytester.runpytest_subprocess("-p", plugin, "-q", timeout=60).assert_outcomes(passed=1)
    with_plugin = set((pytester.path / f"modules-{PLUGIN}").read_text().split())
    without = set((pytester.path / f"modules-no-{PLUGIN}").read_text().split())
    assert with_plugin - without == {"runner", PLUGIN}


def test_the_distribution_declares_the_pytest11_entry_point() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    entry_points = setup["options.entry_points"]["pytest11"].split("\n")
    assert f"{PLUGIN} = {PLUGIN}" in entry_points


def test_the_example_tests_pass() -> None:
    example = ROOT / "examples" / "hello-service"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-q", "-p", "no:cacheprovider", example],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def test_a_crash_is_seen_as_soon_as_the_connection_drops(
    svc: Path, starts: Path, tmp_path: Path
) -> None:
    """The test that crashed the service is told at once, while the service's keeper
    (runner/keeper.py) may still be reaping it. (The keeper was taken for the
    service: a crash went unseen until the keeper had exited, about 1 run in 8.)"""
    service = LiveService(Spec(code=str(svc), env=(("STARTS_FILE", str(starts)),)),
                          tmp_path / "live.log", cwd=tmp_path, timeout=60)
    seen = []
    try:
        for _ in range(5):
            service.start()
            with contextlib.suppress(OSError):
                urllib.request.urlopen(service.url + "/crash", timeout=5)
            seen.append(service.crashed())
            service.stop()
    finally:
        service.stop()
    assert None not in seen, seen
    assert [pid for pid in pids(starts) if pid_alive(pid)] == []
