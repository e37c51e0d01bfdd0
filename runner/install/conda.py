"""`environment.yml` / `conda-lock.yml`: the conda environment of the service, without conda.

The environment is made with py-rattler (the library behind pixi) in a child
process (see `conda_worker` for why) into a prefix under the envs folder,
named by a digest of what goes into it. A later start with the same files
finds the prefix marked complete and uses it with no solve, no link and no
rattler import at all; a prefix left incomplete (a run stopped mid-way) is
updated in place, not rebuilt. `--reinstall` solves again without preferring
what is installed (so newer builds are taken) and updates the prefix in place.

What goes into the digest: the platform, the channels, the conda specs and
the `pip:` list (or the lock's packages), and `requirements.txt`, because it
is installed into the same environment: two services with the same
environment.yml but different requirements never share (and so never spoil)
one environment.
"""

import fcntl
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import runner
from runner import log
from runner.cache import cache_root
from runner.config import Config
from runner.errors import InstallError
from runner.install.base import InstallContext, InstallStep, ServiceEnv, check
from runner.install.conda_lock import LockSpec, read_lock_file, verify_local_packages
from runner.install.conda_spec import read_env_file
from runner.proc import run_tool

#: Marks a prefix whose steps are done; written last, so a stopped run leaves none.
STAMP = ".workspace-runner.json"
#: conda's names for (sys.platform, machine).
_SUBDIRS = {
    ("linux", "x86_64"): "linux-64", ("linux", "aarch64"): "linux-aarch64",
    ("linux", "ppc64le"): "linux-ppc64le", ("linux", "s390x"): "linux-s390x",
    ("darwin", "x86_64"): "osx-64", ("darwin", "arm64"): "osx-arm64",
}


@dataclass
class CondaEnv:
    """One environment the step makes or uses: where it is and what it holds."""

    file: Path
    prefix: Path
    key: str
    job: dict[str, object]
    lock: LockSpec | None = None
    pip_requirements: str = ""
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"


class CondaStep(InstallStep):
    """Makes the conda environment that every later step and the service use."""

    filenames = ("conda-lock.yml", "environment.yml")

    def run(self, ctx: InstallContext, file: Path) -> None:
        env = plan(ctx, file)
        with _exclusive(env.prefix):
            done = [] if ctx.config.reinstall else _read_stamp(env)
            if "conda" in done:
                log.info(f"conda: environment up to date in {env.prefix} (no solve)")
            else:
                _make(env)
                done = _write_stamp(env, ["conda"])
            _require_python(ctx, env, later_steps=True)
            ctx.service_env = service_env(ctx, env)
            if "pip" not in done:
                _pip_install(ctx, env)
                _write_stamp(env, [*done, "pip"])

    def activate(self, ctx: InstallContext, file: Path) -> None:
        env = plan(ctx, file)
        if not {"conda", "pip"} <= set(_read_stamp(env)):
            raise InstallError(
                f"no conda environment for {file.name} in {env.prefix.parent}: run "
                "`execute-code --requirements-only` first with the same RUNNER_ENVS_DIR "
                "(or --cache-dir), or start without --code-only"
            )
        _require_python(ctx, env, later_steps=False)
        ctx.service_env = service_env(ctx, env)


def plan(ctx: InstallContext, file: Path) -> CondaEnv:
    """Read `file` and decide the prefix; no rattler, no network."""
    config = ctx.config
    subdir = current_subdir()
    job: dict[str, object] = {
        "platform": subdir, "network_timeout": config.network_timeout,
        "prefer_installed": not config.reinstall,
        "pkgs_dir": str(cache_root(config) / "conda-pkgs"),
        "repodata_dir": str(cache_root(config) / "conda-repodata"),
    }
    requirements = ctx.code.root / "requirements.txt"
    extra = hashlib.sha256(requirements.read_bytes()).hexdigest() if requirements.is_file() else ""
    if file.name == "conda-lock.yml":
        lock = read_lock_file(file, subdir)
        key = _digest(lock.key(), extra)
        job.update(mode="lock", lock_file=str(file))
        return CondaEnv(file, envs_dir(config) / f"lock-{key[:16]}", key, job, lock=lock,
                        pip_requirements=lock.pip_requirements())
    spec = read_env_file(file)
    key = _digest(spec.key(subdir), extra)
    job.update(mode="solve", channels=spec.channels, specs=spec.specs)
    return CondaEnv(file, envs_dir(config) / f"{spec.name}-{key[:16]}", key, job,
                    pip_requirements="".join(f"{line}\n" for line in spec.pip),
                    variables=spec.variables)


def service_env(ctx: InstallContext, env: CondaEnv) -> ServiceEnv:
    """The environment's Python, its `bin/` first on PATH, CONDA_PREFIX set."""
    python = env.python if env.python.exists() else ctx.service_env.python
    extra = {**ctx.service_env.extra, "CONDA_PREFIX": str(env.prefix), **env.variables}
    return ServiceEnv(python=python, path_prefix=[env.prefix / "bin"], extra=extra)


def current_subdir() -> str:
    """This machine's conda platform (linux-64, osx-arm64, ...)."""
    machine = os.uname().machine.lower()
    if sys.platform == "linux" and machine == "arm64":
        machine = "aarch64"
    subdir = _SUBDIRS.get((sys.platform, machine))
    if subdir is None:
        raise InstallError(f"conda environments are not supported on {sys.platform} {machine}")
    return subdir


def envs_dir(config: Config) -> Path:
    """`RUNNER_ENVS_DIR`, else `envs` in the cache root."""
    return (config.envs_dir or cache_root(config) / "envs").absolute()


def _make(env: CondaEnv) -> None:
    """Solve (or take the lock) and link the prefix, in the rattler worker."""
    if env.lock is not None:
        verify_local_packages(env.file, env.lock)
    job = dict(env.job)
    verb = "updating" if (env.prefix / "conda-meta").is_dir() else "creating"
    log.info(f"conda: {verb} the environment in {env.prefix}")
    env.prefix.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="runner-conda-") as tmp:
        job_file, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.update(prefix=str(env.prefix), result=str(result))
        job_file.write_text(json.dumps(job))
        argv: list[str | Path] = [sys.executable, "-m", "runner.install.conda_worker", job_file]
        finished = run_tool(argv, cwd=Path(runner.__file__).parent.parent, env=os.environ)
        outcome = json.loads(result.read_text()) if result.is_file() else {}
    if not finished.ok:
        _remove_if_empty(env.prefix)
    if "error" in outcome:
        raise InstallError(f"{env.file.name}: {outcome['error']}")
    check(finished, env.file, "the conda environment (rattler)")


def _remove_if_empty(prefix: Path) -> None:
    """A failed solve leaves no empty prefix behind (a half-linked one stays, to update)."""
    with suppress(OSError):
        prefix.rmdir()


def _require_python(ctx: InstallContext, env: CondaEnv, *, later_steps: bool) -> None:
    """An environment without Python is an error when something still needs one."""
    if env.python.exists():
        return
    if env.pip_requirements:
        needs = f"the pip packages of {env.file.name}"
    elif later_steps and (ctx.code.root / "requirements.txt").is_file():
        needs = "requirements.txt"
    elif not ctx.config.requirements_only:
        needs = "the service"
    else:
        return
    raise InstallError(
        f"{env.file.name}: the conda environment has no Python, but {needs} needs one: "
        f"add python to the dependencies of {env.file.name}"
    )


def _pip_install(ctx: InstallContext, env: CondaEnv) -> None:
    """The `pip:` list (or the lock's pip packages) with the environment's own pip.

    Written to a requirements file, as conda does, so option lines work and
    no URL (with its credentials) ends up in an argument list.
    """
    if not env.pip_requirements:
        return
    with tempfile.TemporaryDirectory(prefix="runner-conda-pip-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(env.pip_requirements)
        argv: list[str | Path] = [env.python, "-m", "pip", "install",
                                  "--disable-pip-version-check", "--no-input"]
        if env.lock is not None:
            argv.append("--no-deps")  # the lock lists every package itself
        finished = run_tool([*argv, "-r", requirements], cwd=ctx.code.root,
                            env=ctx.service_env.environ())
    check(finished, env.file, "pip install (its pip packages)")


def _read_stamp(env: CondaEnv) -> list[str]:
    """The steps done in the prefix for this key (none if it was never finished)."""
    try:
        stamp = json.loads((env.prefix / STAMP).read_text())
    except (OSError, ValueError):
        return []
    return list(stamp.get("done", [])) if stamp.get("key") == env.key else []


def _write_stamp(env: CondaEnv, done: list[str]) -> list[str]:
    """Record finished steps atomically (a rename), so a stamp is never half written."""
    tmp = env.prefix / f"{STAMP}.tmp"
    tmp.write_text(json.dumps({"key": env.key, "file": str(env.file), "done": done}))
    os.replace(tmp, env.prefix / STAMP)
    return done


@contextmanager
def _exclusive(prefix: Path) -> Iterator[None]:
    """One runner at a time makes a given prefix; others wait, then reuse it."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / f".{prefix.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"conda: waiting for another runner making {prefix}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
