"""Start-up imports only what the run needs (issue 16): checked at the moment of the spawn.

The runner runs as a real process, started through a small launcher that adds
an audit hook: at the first `subprocess.Popen` (the service's spawn, for a
`--code-only` start) it writes `sys.modules` to a file. `-X importtime` would
not do: it does not see modules imported through `importlib`, which is how the
source and step registries import by need.
"""

import functools
import http.server
import sys
import threading
from pathlib import Path

import pytest
from helpers import RunnerProcess, service_source, write_service

LAUNCHER = """
import runpy, sys

def record(event, args):
    if event == "subprocess.Popen" and not recorded:
        recorded.append(True)
        with open(record_to, "w") as out:
            out.write("\\n".join(sorted(sys.modules)))

recorded, record_to = [], sys.argv.pop(1)
sys.addaudithook(record)
runpy.run_module("runner", run_name="__main__", alter_sys=True)
"""
#: Never needed to serve a local folder: other sources, fetching, unpacking, install state;
#: nor `dataclasses`, which imports `inspect` (with `ast`, `dis`, `tokenize`: about 5 ms).
NOT_FOR_LOCAL = ("runner.sources.vcs", "runner.sources.http", "runner.sources.lab",
                 "runner.download", "runner.archive", "runner.cache", "runner.install.stamps",
                 "runner.install.conda", "git", "requests", "yaml", "rattler", "watchdog",
                 "dataclasses", "inspect")


def modules_at_spawn(tmp_path: Path, *args: str) -> set[str]:
    """The modules the runner had imported when it spawned its first process."""
    record = tmp_path / "modules.txt"
    runner = RunnerProcess(args, argv0=[sys.executable, "-c", LAUNCHER, str(record)])
    try:
        runner.wait_log("service ready", timeout=30)
    finally:
        runner.kill()
    return set(record.read_text().split())


def unexpected(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_FOR_LOCAL))


@pytest.mark.parametrize("files", [(), ("requirements.txt",)], ids=["bare", "requirements"])
def test_code_only_from_a_folder_imports_only_what_it_needs(
    tmp_path: Path, files: tuple[str, ...]
) -> None:
    svc = write_service(tmp_path / "svc")
    for name in files:
        (svc / name).write_text("")
    modules = modules_at_spawn(tmp_path, str(svc), "--code-only")
    runner_install = sorted(m for m in modules if m.startswith("runner.install"))
    steps = [f"runner.install.{name.split('.')[0]}" for name in files]
    assert runner_install == sorted(["runner.install", "runner.install.base", *steps])
    assert unexpected(modules) == []
    assert {"runner.sources.local", "runner.supervisor.base"} <= modules  # it did record


def test_an_http_url_imports_no_vcs_or_lab_source(tmp_path: Path) -> None:
    """The source registry imports a source only when the ones before it said no."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "svc.py").write_text(service_source())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/svc.py"
        modules = modules_at_spawn(tmp_path, url, "--code-only")
    finally:
        server.shutdown()
        server.server_close()
    assert "runner.sources.http" in modules
    assert [m for m in modules if m.startswith(("runner.sources.vcs", "runner.sources.lab"))] == []
