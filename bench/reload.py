"""Edit-to-new-answer time: our `--watch` against `uvicorn --reload`, same ASGI app.

For each of N edits, writes a new version into the app's module and times
from the save to the first HTTP answer carrying the new version. Prints the
two medians and their ratio (ours / uvicorn's; goal: at most 1).

    python bench/reload.py [--edits 9]
"""

import argparse
import http.client
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PYTHON, free_port, median_ms, started

APP = '''\
VERSION = {version!r}


async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": VERSION.encode()}})
'''
MAIN = '''\
import os

import uvicorn

uvicorn.run("app:app", host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
'''


def body(port: int) -> bytes | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_body(port: int, want: bytes, timeout: float = 30) -> float:
    """Monotonic time of the first answer equal to `want`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if body(port) == want:
            return time.monotonic()
        time.sleep(0.002)
    raise RuntimeError(f"no answer {want!r} within {timeout} s")


def measure(argv: list[str], folder: Path, edits: int) -> list[float]:
    """Seconds from each save to the new answer, for a server started with `argv`."""
    (folder / "app.py").write_text(APP.format(version="v0"))
    port = free_port()
    times = []
    with started([*argv, "--port", str(port)], port) as server:
        wait_body(port, b"v0", timeout=60)
        for i in range(1, edits + 1):
            time.sleep(0.3)  # let the previous start settle, like a person between saves
            saved = time.monotonic()
            (folder / "app.py").write_text(APP.format(version=f"v{i}"))
            times.append(wait_body(port, f"v{i}".encode()) - saved)
        if server.proc.poll() is not None:
            raise server.fail("server died")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=9)
    edits = parser.parse_args().edits
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        folder = Path(tmp)
        (folder / "__main__.py").write_text(MAIN)
        uvicorn_argv = [PYTHON, "-m", "uvicorn", "app:app", "--reload", "--reload-dir",
                        str(folder), "--app-dir", str(folder), "--log-level", "warning"]
        ours_argv = [PYTHON, "-m", "runner", str(folder), "--watch", "--code-only"]
        theirs = measure(uvicorn_argv, folder, edits)
        ours = measure(ours_argv, folder, edits)
    import statistics

    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"uvicorn --reload        save -> new answer: {median_ms(theirs)}")
    print(f"execute-code --watch    save -> new answer: {median_ms(ours)}")
    print(f"ratio ours/uvicorn: {ratio:.2f} (goal <= 1.00)")


if __name__ == "__main__":
    main()
