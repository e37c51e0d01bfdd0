"""Edit-to-new-answer time: our `--watch` against `uvicorn --reload`, same ASGI app.

For each of N edits, writes a new version into the app's module and times
from the save to the first HTTP answer carrying the new version. Two apps:
- light: the bare ASGI app. Goal: ours at most 1x uvicorn's.
- heavy: the same app importing pandas and scikit-learn, from a bench venv
  installed from PyPI once (~/.cache/workspace-runner-bench). uvicorn's reload
  re-imports them in a new process; `--watch` restarts in its standby spare,
  which has them imported already. Goal: ours at most 0.25x uvicorn's.

Between saves each server settles as a person's next save would find it:
0.3 s, and for `--watch` until its next spare is ready (the spare imports in
the background while the new code serves).

    python bench/reload.py [--edits 9]
"""

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HEAVY_PACKAGES,
    PYTHON,
    Started,
    bench_venv,
    free_port,
    load_note,
    median_ms,
    started,
    wait_until,
)

APP = '''\
{imports}
VERSION = {version!r}


async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": VERSION.encode()}})
'''
HEAVY_IMPORTS = "import pandas\nimport sklearn.tree\n"
MAIN = '''\
import os

import uvicorn

uvicorn.run("app:app", host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
'''
SETTLE = 0.3


def body(port: int) -> bytes | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_body(port: int, want: bytes, timeout: float = 60) -> float:
    """Monotonic time of the first answer equal to `want`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if body(port) == want:
            return time.monotonic()
        time.sleep(0.002)
    raise RuntimeError(f"no answer {want!r} within {timeout} s")


def spare_ready(server: Started, edit: int) -> None:
    """Wait until `--watch` has a spare ready for the next edit."""
    wait_until(lambda: server.output().count("standby: the spare") > edit, 60,
               "the next spare to be ready")


def measure(argv: list[str], folder: Path, edits: int, imports: str, env: dict[str, str],
            settle: Callable[[Started, int], None] | None = None) -> list[float]:
    """Seconds from each save to the new answer, for a server started with `argv`."""
    (folder / "app.py").write_text(APP.format(imports=imports, version="v0"))
    port = free_port()
    times = []
    with started([*argv, "--port", str(port)], port, env) as server:
        wait_body(port, b"v0", timeout=120)
        for i in range(1, edits + 1):
            time.sleep(SETTLE)  # let the previous start settle, like a person between saves
            if settle is not None:
                settle(server, i - 1)
            saved = time.monotonic()
            (folder / "app.py").write_text(APP.format(imports=imports, version=f"v{i}"))
            times.append(wait_body(port, f"v{i}".encode()) - saved)
        if server.proc.poll() is not None:
            raise server.fail("server died")
    return times


def compare(name: str, python: str, imports: str, edits: int, env: dict[str, str],
            goal: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        folder = Path(tmp)
        (folder / "__main__.py").write_text(MAIN)
        uvicorn_argv = [python, "-m", "uvicorn", "app:app", "--reload", "--reload-dir",
                        str(folder), "--app-dir", str(folder), "--log-level", "warning"]
        ours_argv = [PYTHON, "-m", "runner", str(folder), "--watch", "--code-only"]
        theirs = measure(uvicorn_argv, folder, edits, imports, env)
        ours = measure(ours_argv, folder, edits, imports, env, spare_ready)
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"{name}: uvicorn --reload        save -> new answer: {median_ms(theirs)}")
    print(f"{name}: execute-code --watch    save -> new answer: {median_ms(ours)}")
    print(f"{name}: ratio ours/uvicorn: {ratio:.2f} (goal <= {goal:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=9)
    edits = parser.parse_args().edits
    compare("light", PYTHON, "", edits, {}, goal=1.0)
    heavy_python = str(bench_venv("heavy", HEAVY_PACKAGES))
    compare("heavy", heavy_python, HEAVY_IMPORTS, edits, {"RUNNER_PYTHON": heavy_python},
            goal=0.25)
    print(load_note())


if __name__ == "__main__":
    main()
