"""How much faster the runner resolves a git URL than a full `git clone` of it.

Builds a repository with 2,000 commits and a 50 MB random blob that was added
and deleted again in history (the case where a full clone hurts), then times,
on the same file:// URL:
  - baseline: `git clone URL dest` (the whole history, blob included);
  - runner:   `python -m runner git+URL --requirements-only` (a new process each
              time: start-up, ls-remote, depth-1 fetch, checkout);
  - fetch():  the VCS source's fetch alone, in this process (no start-up).
Prints the median of each and the ratios. Goal: resolving 10 times faster or
better. The whole process cannot get there on a local URL: Python's start-up
alone is a good part of what a full local clone takes.

Usage: python bench/vcs.py [--runs N]   (from the project root)
"""

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runner.config import Config
from runner.scratch import Scratch
from runner.sources.vcs import VcsSource

COMMITS = 2000
BLOB_MB = 50
BLOB_AT = 1000  # the commit that adds the blob; the next one deletes it
SERVICE = "print('hello from the benchmark service')\n"


def build_repo(path: Path) -> None:
    """2,000 commits through `git fast-import` (seconds, not minutes)."""
    subprocess.run(["git", "init", "-q", "-b", "main", path], check=True)
    blob = os.urandom(BLOB_MB * 1024 * 1024)
    stream = bytearray()

    def data(payload: bytes) -> None:
        stream.extend(b"data %d\n" % len(payload) + payload + b"\n")

    for n in range(1, COMMITS + 1):
        stream.extend(b"commit refs/heads/main\n")
        stream.extend(b"committer Bench <bench@example.com> %d +0000\n" % (1_700_000_000 + n))
        data(b"commit %d" % n)  # each commit continues the branch fast-import is on
        stream.extend(b"M 100644 inline __main__.py\n")
        data(SERVICE.encode())
        stream.extend(b"M 100644 inline counter.txt\n")
        data(b"%d\n" % n)
        if n == BLOB_AT:
            stream.extend(b"M 100644 inline model.bin\n")
            data(blob)
        if n == BLOB_AT + 1:
            stream.extend(b"D model.bin\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input=bytes(stream), check=True)
    subprocess.run(["git", "checkout", "-q", "main"], cwd=path, check=True)
    subprocess.run(["git", "gc", "-q"], cwd=path, check=True)


def median_time(action: Callable[[], object], runs: int) -> float:
    """Median wall time of `action`; what it returns is cleaned up outside the timing."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        leftover = action()
        times.append(time.perf_counter() - started)
        if isinstance(leftover, Path):
            shutil.rmtree(leftover)
        elif isinstance(leftover, Scratch):
            leftover.cleanup()
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="bench-vcs-") as tmp:
        root = Path(tmp)
        repo = root / "repo"
        started = time.perf_counter()
        build_repo(repo)
        url = repo.as_uri()
        print(f"repository: {COMMITS} commits, a {BLOB_MB} MB blob added and deleted "
              f"(built in {time.perf_counter() - started:.1f} s)")

        def clone() -> Path:
            subprocess.run(["git", "clone", "-q", url, root / "clone"], check=True)
            return root / "clone"

        def runner() -> None:
            subprocess.run([sys.executable, "-m", "runner", f"git+{url}", "--requirements-only"],
                           check=True, stderr=subprocess.DEVNULL)

        def fetch() -> Scratch:
            scratch = Scratch()
            with contextlib.redirect_stderr(io.StringIO()):
                VcsSource(f"git+{url}", Config()).fetch(scratch)
            return scratch

        fetch().cleanup()  # warm up: GitPython's import
        baseline = median_time(clone, runs)
        ours = median_time(runner, runs)
        fetch_only = median_time(fetch, runs)
    print(f"full git clone:                 median {baseline:.3f} s over {runs} runs")
    print(f"runner (new process each time): median {ours:.3f} s -> {baseline / ours:.1f}x faster")
    print(f"VcsSource.fetch() alone:        median {fetch_only:.3f} s -> "
          f"{baseline / fetch_only:.1f}x faster")
    print(f"ratio, resolving the URL vs a full clone: {baseline / fetch_only:.1f}x (goal: 10x); "
          f"whole runner process, Python start-up included: {baseline / ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
