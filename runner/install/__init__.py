"""Step 2 of the pipeline: the install steps in the contract's order.

environment.yml (or conda-lock.yml) -> setup.sh -> requirements.txt, each
only when its file is in the code root.
"""

import time
from pathlib import Path

from runner import log
from runner.cache import cache_root
from runner.config import Config
from runner.errors import InstallError
from runner.install.base import InstallContext, InstallStep, ServiceEnv
from runner.install.conda import CondaStep
from runner.install.requirements import RequirementsStep
from runner.install.setup_sh import SetupShStep
from runner.install.stamps import Stamps
from runner.sources.base import Code

STEPS: list[InstallStep] = [CondaStep(), SetupShStep(), RequirementsStep()]


def install(code: Code, config: Config) -> ServiceEnv:
    """Run the steps whose inputs changed; with `--code-only`, only activate them.

    A step is skipped when its stamp says its file and the environment are as
    the last complete install left them (`--reinstall` ignores stamps). Once a
    step runs, every later step runs too: it may depend on what changed.
    """
    ctx = InstallContext(code=code, config=config, service_env=ServiceEnv(config.service_python))
    stamps = Stamps(cache_root(config) / "state", code.root, config.service_python)
    rerun = config.reinstall
    try:
        for step in STEPS:
            file = step.trigger(code)
            if file is None:
                continue
            if config.code_only:
                step.activate(ctx, file)
                continue
            inputs = step.inputs(file)
            if not rerun and _unchanged(step, ctx, file, inputs, stamps):
                log.info(f"{file.name} unchanged since the last install: skipped")
            else:
                rerun = True
                if not _run_step(step, ctx, file):
                    continue  # failed under --keep-going: no stamp, so it runs again
            stamps.record(file, inputs)
    except BaseException:
        stamps.drop()
        raise
    if not config.code_only:
        stamps.save(ctx.service_env)
    return ctx.service_env


def dependency_files(root: Path) -> set[str]:
    """The files under `root` (relative paths) that the install steps read: --watch
    re-installs when one of them changes (an included requirements file too)."""
    found = set()
    for step in STEPS:
        file = step.find(root)
        if file is None:
            continue
        try:
            inputs = step.inputs(file)
        except InstallError:  # unreadable: the install that follows says so
            inputs = [file]
        found |= {str(p.relative_to(root)) for p in inputs if p.is_relative_to(root)}
    return found


def _unchanged(
    step: InstallStep, ctx: InstallContext, file: Path, inputs: list[Path], stamps: Stamps
) -> bool:
    """Whether the step's file and what it installed are as the last install left them.

    The step is activated first (the conda step then points at its environment),
    since the environment to compare is the one the step leaves, not the one
    before it. A step that cannot activate (its environment is gone) is changed.
    """
    if not stamps.file_unchanged(file, inputs):
        return False
    before = ctx.service_env
    try:
        step.activate(ctx, file)
    except InstallError:
        ctx.service_env = before
        return False
    if stamps.env_unchanged(file, ctx.service_env):
        return True
    ctx.service_env = before
    return False


def _run_step(step: InstallStep, ctx: InstallContext, file: Path) -> bool:
    """Run one step; False when it failed and --keep-going let the run go on."""
    started = time.monotonic()
    log.info(f"installing from {file.name}")
    try:
        step.run(ctx, file)
    except InstallError as exc:
        if not ctx.config.keep_going:
            raise
        log.warn(f"{exc} -- going on because of --keep-going")
        return False
    log.info(f"{file.name} done in {time.monotonic() - started:.2f} s")
    return True
