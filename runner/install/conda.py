"""`environment.yml` / `conda-lock.yml`: the conda environment of the service, without conda.

The environment is made with py-rattler (the library behind pixi) in a child
process (see `conda_worker` for why) into a prefix under the envs folder,
named by a digest of what goes into it. A later start with the same files
finds the prefix marked complete and uses it with no solve, no link and no
rattler import at all; a prefix left incomplete (a run stopped mid-way) is
updated in place, not rebuilt. `--reinstall` solves again without preferring
what is installed (so newer builds are taken) and updates the prefix in place.

What goes into the digest: the platform, the channels, the conda specs and
the `pip:` list (or the lock's packages), and `requirements.txt` (with the
files it includes), because it is installed into the same environment: two
services with the same environment.yml but different requirements never
share (and so never spoil) one environment.

pip, as conda provides it: when a pip step follows (a `pip:` list, a lock's
pip packages, requirements.txt), `pip` joins the specs if the channels have
it (conda's `add_pip_as_python_dependency`); else the environment's Python
bootstraps it with `ensurepip`; else the error says to add pip. The `pip:`
list is installed from a temporary requirements file, as conda does, with
its `-r`/`-c` paths made absolute against the environment file's folder
(conda writes that file beside environment.yml).
"""

import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

import runner
from runner import log
from runner.cache import cache_root
from runner.config import Config
from runner.errors import InstallError
from runner.install.base import InstallContext, InstallStep, ServiceEnv, check, check_pip
from runner.install.conda_lock import LockSpec, read_lock_file, verify_local_packages
from runner.install.conda_spec import read_env_file
from runner.install.conda_worker import CondaJob
from runner.install.requirements import (
    INCLUDE,
    register_text_secrets,
    register_url_secrets,
    requirement_files,
)
from runner.install.stamps import inputs_hash
from runner.proc import run_tool
from runner.scratch import step_folder

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
    job: CondaJob
    lock: LockSpec | None = None
    pip_requirements: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    #: A later step runs pip in it (a `pip:` list, a lock's pip packages, requirements.txt).
    needs_pip: bool = False

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"


class CondaStep(InstallStep):
    """Makes the conda environment that every later step and the service use."""


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
            if env.needs_pip:
                _ensure_pip(ctx, env)
            if "pip" not in done:
                _pip_install(ctx, env)
                _write_stamp(env, [*done, "pip"])

    def inputs(self, file: Path) -> list[Path]:
        """The file, and the requirements files its `pip:` list includes (for --watch)."""
        if file.name == "conda-lock.yml":
            return [file]
        pip_lines = [absolute_includes(line, file.parent) for line in read_env_file(file).pip]
        return [file, *(p for line in pip_lines for p in _included(line))]

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
    requirements = ctx.code.root / "requirements.txt"
    has_requirements = requirements.is_file()
    extra = inputs_hash(requirement_files(requirements)) if has_requirements else ""
    job = CondaJob(
        mode="solve", platform=subdir, network_timeout=config.network_timeout,
        prefer_installed=not config.reinstall, pkgs_dir=cache_root(config) / "conda-pkgs",
        repodata_dir=cache_root(config) / "conda-repodata",
    )
    if file.name == "conda-lock.yml":
        lock = read_lock_file(file, subdir)
        key = _digest(lock.key(), extra)
        return CondaEnv(file, envs_dir(config) / f"lock-{key[:16]}", key,
                        replace(job, mode="lock", lock_file=file), lock=lock,
                        pip_requirements=lock.pip_requirements(),
                        needs_pip=bool(lock.pip) or has_requirements)
    spec = read_env_file(file)
    pip_lines = [absolute_includes(line, file.parent) for line in spec.pip]
    included = [p for line in pip_lines for p in _included(line)]
    key = _digest(spec.key(subdir), extra, inputs_hash(included))
    needs_pip = bool(spec.pip) or has_requirements
    return CondaEnv(file, envs_dir(config) / f"{spec.name}-{key[:16]}", key,
                    replace(job, channels=spec.channels, specs=spec.specs, want_pip=needs_pip),
                    pip_requirements="".join(f"{line}\n" for line in pip_lines),
                    variables=spec.variables, needs_pip=needs_pip)


def absolute_includes(line: str, folder: Path) -> str:
    """A `pip:` line's `-r`/`-c` path made absolute against the environment file's folder."""
    match = INCLUDE.match(line)
    if match is None or "://" in match["path"] or Path(match["path"]).is_absolute():
        return line
    return line[:match.start("path")] + str(folder / match["path"]) + line[match.end("path"):]


def _included(line: str) -> list[Path]:
    """The files a `pip:` line includes, with the files they include in turn."""
    match = INCLUDE.match(line)
    if match is None or "://" in match["path"] or not Path(match["path"]).is_file():
        return []
    return requirement_files(Path(match["path"]))


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
    verb = "updating" if (env.prefix / "conda-meta").is_dir() else "creating"
    log.info(f"conda: {verb} the environment in {env.prefix}")
    env.prefix.mkdir(parents=True, exist_ok=True)
    with step_folder("conda-") as tmp:
        job_file, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        replace(env.job, prefix=env.prefix, result=result).write(job_file)
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


def _has_pip(env: CondaEnv) -> bool:
    return any(env.prefix.glob("lib/python3*/site-packages/pip/__init__.py"))


def _ensure_pip(ctx: InstallContext, env: CondaEnv) -> None:
    """pip for the steps that need it: from the channels (solved in), else ensurepip."""
    if _has_pip(env):
        return
    log.info("conda: the channels have no pip: installing it with ensurepip")
    finished = run_tool([env.python, "-m", "ensurepip", "--default-pip"], cwd=ctx.code.root,
                        env=ctx.service_env.environ())
    if not finished.ok or not _has_pip(env):
        raise InstallError(
            f"{env.file.name}: the conda environment has no pip and `python -m ensurepip` "
            f"failed ({finished.tail.quote(1)}): add pip to the dependencies of {env.file.name}"
        )


def _pip_install(ctx: InstallContext, env: CondaEnv) -> None:
    """The `pip:` list (or the lock's pip packages) with the environment's own pip.

    Written to a requirements file, as conda does, so option lines work and
    no URL (with its credentials) ends up in an argument list.
    """
    if not env.pip_requirements:
        return
    register_text_secrets(env.pip_requirements.splitlines())
    for line in env.pip_requirements.splitlines():
        for included in _included(line):
            register_url_secrets(included)
    with step_folder("conda-pip-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(env.pip_requirements)
        argv: list[str | Path] = [env.python, "-m", "pip", "install",
                                  "--disable-pip-version-check", "--no-input"]
        if env.lock is not None:
            argv.append("--no-deps")  # the lock lists every package itself
        finished = run_tool([*argv, "-r", requirements], cwd=ctx.code.root,
                            env=ctx.service_env.environ())
    check_pip(finished, env.file, "pip install (its pip packages)")


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
