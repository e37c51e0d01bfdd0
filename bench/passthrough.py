"""Service output through the runner vs. straight into a pipe: the cost of supervision.

    python bench/passthrough.py [MB] [RUNS]     (default 200 MB, 5 runs)

A service writes MB megabytes to stdout and exits. Case a (the baseline) runs
it bare into a pipe read by this script; b runs it under the runner
(`--code-only`) into the same kind of pipe, with short lines; c the same bytes
without a single newline (what the runner keeps per line is bounded, so c
should cost what b costs). Printed: median seconds, MB/s and the ratio to a.
Goal: under the runner at least 100 MB/s (a service's logs are far less),
and c within 1.5x of b. Cases run interleaved so a slow moment hits them all.
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PYTHON, ROOT, free_port, load_note

SERVICE = """\
import sys
line = b"x" * 1023 + {end!r}
block = line * 1024
for _ in range({mb}):
    sys.stdout.buffer.write(block)
sys.stdout.flush()
"""


def timed(argv: list[str], size: int) -> float:
    """Seconds until `argv` has written `size` bytes to our pipe and exited."""
    start = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    assert child.stdout is not None
    got = 0
    while chunk := child.stdout.read1(1 << 20):
        got += len(chunk)
    child.wait()
    took = time.monotonic() - start
    assert got == size and child.returncode == 0, (got, size, child.returncode)
    return took


def main(mb: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-pass-") as tmp:
        folders = {}
        for name, end in (("lines", b"\n"), ("one-line", b"x")):
            folder = Path(tmp) / name
            folder.mkdir()
            (folder / "__main__.py").write_text(SERVICE.format(end=end, mb=mb))
            folders[name] = folder
        runner = [PYTHON, "-m", "runner", "--code-only", "--port"]
        cases = {
            "a: bare service into a pipe": lambda: [PYTHON, str(folders["lines"])],
            "b: through the runner, 1 KB lines": lambda: [*runner, str(free_port()),
                                                         str(folders["lines"])],
            "c: through the runner, no newline": lambda: [*runner, str(free_port()),
                                                         str(folders["one-line"])],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(runs):
            for name, argv in cases.items():
                times[name].append(timed(argv(), mb * 1024 * 1024))
    base = statistics.median(times["a: bare service into a pipe"])
    print(f"{mb} MB of service output, median of {runs} runs:")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"  {name}: {median:.2f} s, {mb / median:.0f} MB/s = {median / base:.2f}x a")
    print(load_note())


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(args[0] if args else 200, max(3, args[1]) if len(args) > 1 else 5)
