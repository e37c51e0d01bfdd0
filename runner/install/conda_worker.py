"""The child process that runs rattler: solve (or read a lock), then link a prefix.

Why a child process: a process that has run rattler's coroutines through
`asyncio.run` can crash while the interpreter shuts down (rattler's tokio
threads still hold Python's thread state: "PyGILState_Release ... must be
current", exit 134/139, about one run in 30 on this machine). This process
never shuts the interpreter down: it flushes its output and leaves with
`os._exit`, which ends its threads with it. The runner itself never imports
rattler, so its own exit (and its memory while it supervises the service)
is untouched.

Protocol: `python -m runner.install.conda_worker JOB.json`. The job (a
`CondaJob`, written as JSON by the runner) says what to do; progress lines go
to stderr; the outcome is written to the job's `result` file as
`{"error": message}` or `{"ok": true}`. A rattler failure is a one-line
message, never a traceback.
"""

import asyncio
import dataclasses
import json
import os
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runner import log

#: How many characters of a solver explanation reach the error line.
EXPLANATION_LIMIT = 400


@dataclass(frozen=True)
class CondaJob:
    """What the worker is to do: solve specs (or take a lock) and link one prefix."""

    #: "solve": the specs over the channels; "lock": the lock file's records as they are.
    mode: Literal["solve", "lock"]
    #: conda's name of the platform to install for (linux-64, osx-arm64, ...).
    platform: str
    network_timeout: float
    #: Keep installed versions where they fit (False with --reinstall: take the newest).
    prefer_installed: bool
    pkgs_dir: Path
    repodata_dir: Path
    prefix: Path = Path()
    #: Where the worker writes its outcome.
    result: Path = Path()
    channels: list[str] = field(default_factory=list)
    specs: list[str] = field(default_factory=list)
    #: A pip step follows: add `pip` to the specs, as conda does, if the channels have it.
    want_pip: bool = False
    lock_file: Path | None = None

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), default=str))

    @classmethod
    def read(cls, path: Path) -> "CondaJob":
        data = json.loads(path.read_text())
        for name in ("pkgs_dir", "repodata_dir", "prefix", "result", "lock_file"):
            if data.get(name) is not None:
                data[name] = Path(data[name])
        return cls(**data)


class WorkerError(Exception):
    """A failure the user can act on; its text goes into the runner's `error:` line."""


class Reporter:
    """rattler's install reporter: counts link steps, logs one line at the end.

    Quiet when the prefix is already what was asked for (no operations).
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.started = time.monotonic()
        self.operations = self.linked = self.unlinked = self.downloaded = 0

    def on_transaction_start(self, total_operations: int) -> None:
        self.started = time.monotonic()
        self.operations = total_operations

    def on_download_start(self, cache_entry: int) -> int:
        self.downloaded += 1
        return cache_entry

    def on_link_start(self, operation: int, package_name: str) -> int:
        self.linked += 1
        return operation

    def on_unlink_start(self, operation: int, package_name: str) -> int:
        self.unlinked += 1
        return operation

    def on_transaction_complete(self) -> None:
        if not self.operations:
            return
        removed = f", removed {self.unlinked}" if self.unlinked else ""
        fetched = f" ({self.downloaded} downloaded)" if self.downloaded else ""
        log.info(f"conda: linked {_count(self.linked, 'package')}{removed}{fetched} into "
                 f"{self.prefix} in {_ms(self.started)} ms")

    def __getattr__(self, name: str) -> Any:
        """The reporter protocol's other callbacks: nothing to report."""
        if name.startswith("on_"):
            return lambda *args: 0
        raise AttributeError(name)


async def run_job(job: CondaJob) -> None:
    """Solve or read the lock, then install into the job's prefix."""
    import rattler
    from rattler import PrefixRecord

    prefix = job.prefix
    meta = prefix / "conda-meta"
    installed = [PrefixRecord.from_path(f) for f in sorted(meta.glob("*.json"))]
    client = _client(job.network_timeout)
    if job.mode == "lock":
        records = _locked_records(job)
    else:
        records = await _solve_with_pip(job, installed, client)
    reporter = Reporter(str(prefix))
    try:
        await rattler.install(
            records, target_prefix=prefix, cache_dir=job.pkgs_dir,
            installed_packages=installed, show_progress=False, reporter=reporter, client=client,
        )
    except Exception as exc:
        if not _is_rattler_error(exc):
            raise
        raise WorkerError(f"installing into {prefix} failed: {_short(exc)} (check the space "
                          "and permissions of the envs folder, RUNNER_ENVS_DIR)") from None


async def _solve_with_pip(job: CondaJob, installed: list[Any], client: Any) -> list[Any]:
    """The solver's answer for the job's specs, with pip where conda would have it.

    conda makes pip a dependency of python (`add_pip_as_python_dependency`):
    when a pip step follows and the answer has python but no pip, `pip` joins
    the specs if the channels have it; if not, the first answer stands and the
    runner bootstraps pip with ensurepip.
    """
    started = time.monotonic()
    specs = job.specs
    records = await _solve(job, specs, installed, client)
    names = {record.name.normalized for record in records}
    if job.want_pip and "python" in names and "pip" not in names:
        with suppress(WorkerError):
            records = await _solve(job, [*specs, "pip"], installed, client)
            specs = [*specs, "pip"]
    log.info(f"conda: solved {_count(len(specs), 'spec')} to {_count(len(records), 'package')} "
             f"for {job.platform} in {_ms(started)} ms")
    return records


async def _solve(job: CondaJob, wanted: list[str], installed: list[Any],
                 client: Any) -> list[Any]:
    """The solver's answer for `wanted`, preferring what is installed.

    Preferring the installed versions keeps an update small; `--reinstall`
    turns it off to take the newest that fit.
    """
    import rattler
    from rattler import Gateway, MatchSpec, VirtualPackage

    try:
        specs = [MatchSpec(s) for s in wanted]
    except Exception as exc:
        if not _is_rattler_error(exc):
            raise
        raise WorkerError(f"invalid dependency: {_short(exc)} (write it as conda does, "
                          "e.g. `numpy >=1.26`)") from None
    gateway = Gateway(cache_dir=job.repodata_dir, client=client)
    try:
        return await rattler.solve(
            job.channels, specs, gateway=gateway,
            virtual_packages=VirtualPackage.detect(),
            locked_packages=installed if job.prefer_installed else None,
        )
    except Exception as exc:
        raise _solve_error(exc, job, wanted) from None


def _locked_records(job: CondaJob) -> list[Any]:
    """The lock's records for the job's platform, as rattler reads conda-lock v1."""
    import rattler

    try:
        env = rattler.LockFile.from_path(job.lock_file).default_environment()
    except Exception as exc:
        if not _is_rattler_error(exc):
            raise
        raise WorkerError(f"cannot read the lock: {_short(exc)} (re-create it with "
                          "conda-lock)") from None
    if env is None:
        raise WorkerError("the lock has no environment")
    for platform in env.platforms():
        if platform.name == job.platform:
            return env.conda_repodata_records_for_platform(platform) or []
    raise WorkerError(f"the lock has no packages for {job.platform}")


def _client(timeout: float) -> Any:
    """rattler's HTTP client with the runner's network timeout and stored logins."""
    from rattler.networking import Client
    from rattler.networking.middleware import AuthenticationMiddleware, RetryMiddleware

    return Client(
        middlewares=[AuthenticationMiddleware(), RetryMiddleware(max_retries=2)],
        timeout=max(1, round(timeout)),
    )


def _solve_error(exc: Exception, job: CondaJob, wanted: list[str]) -> Exception:
    """A one-line message naming the channel or the conflict."""
    name = type(exc).__name__
    if name == "SolverError":
        return WorkerError(f"cannot solve {', '.join(wanted)}: "
                           f"{_short(exc, EXPLANATION_LIMIT)} (relax the versions, or add "
                           "a channel that has them)")
    if name in ("GatewayError", "FetchRepoDataError", "InvalidChannelError"):
        text = str(exc)
        named = [c for c in job.channels if c.rstrip("/") in text] or job.channels
        return WorkerError(f"cannot read channel {', '.join(named)}: {_short(exc)} (check "
                           "the channel's name or URL, and the network)")
    if _is_rattler_error(exc):
        return WorkerError(f"solving failed: {_short(exc)} (check the dependencies and "
                           "channels)")
    return exc


def _is_rattler_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("rattler") or type(exc).__module__ == "exceptions"


def _short(exc: BaseException, limit: int = 300) -> str:
    """rattler's multi-line message as one line: the first and the root cause.

    The solver's explanation is a tree; its lines are joined without the
    tree's drawing characters.
    """
    lines = [line.strip(" \u2502\u2514\u251c\u2500") for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by:")]
    text = f"{lines[0]}: {causes[-1]}" if causes else _join_tree(lines)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _join_tree(lines: list[str]) -> str:
    """Lines of an explanation as one sentence: a line that goes on continues it."""
    text = lines[0].rstrip(".")
    for line in lines[1:]:
        goes_on = text.endswith((":", ",", "require", "requires"))
        text += (" " if goes_on else "; ") + line.rstrip(".")
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def main(argv: list[str]) -> int:
    """Run the job named by `argv[0]`; 0 when done, 1 when the result holds an error."""
    job = CondaJob.read(Path(argv[0]))
    try:
        asyncio.run(run_job(job))
    except WorkerError as exc:
        job.result.write_text(json.dumps({"error": str(exc)}))
        return 1
    job.result.write_text(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 70
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
