"""Step 2 of the pipeline: the install steps in the contract's order.

environment.yml (or conda-lock.yml) -> setup.sh -> requirements.txt, each
only when its file is in the code root.
"""

import time
from pathlib import Path

from runner import log
from runner.config import Config
from runner.errors import InstallError
from runner.install.base import InstallContext, InstallStep, ServiceEnv
from runner.install.conda import CondaStep
from runner.install.requirements import RequirementsStep
from runner.install.setup_sh import SetupShStep
from runner.sources.base import Code

STEPS: list[InstallStep] = [CondaStep(), SetupShStep(), RequirementsStep()]


def install(code: Code, config: Config) -> ServiceEnv:
    """Run the steps (or, with `--code-only`, only activate what they made)."""
    ctx = InstallContext(code=code, config=config, service_env=ServiceEnv(config.service_python))
    for step in STEPS:
        file = step.trigger(code)
        if file is None:
            continue
        if config.code_only:
            step.activate(ctx, file)
            continue
        _run_step(step, ctx, file)
    return ctx.service_env


def _run_step(step: InstallStep, ctx: InstallContext, file: Path) -> None:
    started = time.monotonic()
    log.info(f"installing from {file.name}")
    try:
        step.run(ctx, file)
    except InstallError as exc:
        if not ctx.config.keep_going:
            raise
        log.warn(f"{exc} -- going on because of --keep-going")
        return
    log.info(f"{file.name} done in {time.monotonic() - started:.2f} s")
