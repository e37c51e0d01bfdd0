"""Step 2 of the pipeline: the install steps in the contract's order.

environment.yml (or conda-lock.yml) -> setup.sh -> requirements.txt, each
only when its file is in the code root. The registry names each step's class
beside its files, so a step is imported only when its file is there (the
conda step's imports are not free), and `--code-only` never loads the stamps.
"""

import pkgutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from runner import log
from runner.config import Config
from runner.errors import InstallError
from runner.install.base import InstallContext, InstallStep, ServiceEnv
from runner.sources.base import Code

if TYPE_CHECKING:
    from runner.install.stamps import Stamps


class Registered(NamedTuple):
    """An install step by name: the files that trigger it, first match wins, and its class."""

    filenames: tuple[str, ...]
    step_class: str  # "module:Class", imported by `load`

    def find(self, root: Path) -> Path | None:
        """The file in `root` that asks for this step, if any."""
        for name in self.filenames:
            if (root / name).is_file():
                return root / name
        return None

    def load(self) -> InstallStep:
        return pkgutil.resolve_name(self.step_class)()


STEPS = (
    Registered(("conda-lock.yml", "environment.yml"), "runner.install.conda:CondaStep"),
    Registered(("setup.sh",), "runner.install.setup_sh:SetupShStep"),
    Registered(("requirements.txt",), "runner.install.requirements:RequirementsStep"),
)


def install(code: Code, config: Config) -> ServiceEnv:
    """Run the steps whose inputs changed; with `--code-only`, only activate them.

    A step is skipped when its stamp says its file and the environment are as
    the last complete install left them (`--reinstall` ignores stamps). Once a
    step runs, every later step runs too: it may depend on what changed.
    """
    ctx = InstallContext(code=code, config=config, service_env=ServiceEnv(config.service_python))
    if config.code_only:
        for step, file in _found(code.root):
            step.activate(ctx, file)
        return ctx.service_env
    from runner.cache import cache_root  # only an install keeps state: not for --code-only
    from runner.install.stamps import Stamps

    stamps = Stamps(cache_root(config) / "state", code.root, config.service_python)
    rerun = config.reinstall
    try:
        for step, file in _found(code.root):
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
    stamps.save(ctx.service_env)
    return ctx.service_env


def dependency_files(root: Path) -> set[str]:
    """The files under `root` (relative paths) that the install steps read: --watch
    re-installs when one of them changes (an included requirements file too)."""
    found = set()
    for step, file in _found(root):
        try:
            inputs = step.inputs(file)
        except InstallError:  # unreadable: the install that follows says so
            inputs = [file]
        found |= {str(p.relative_to(root)) for p in inputs if p.is_relative_to(root)}
    return found


def _found(root: Path) -> Iterator[tuple[InstallStep, Path]]:
    """The steps whose file is in `root`, in order, each imported only then."""
    for registered in STEPS:
        file = registered.find(root)
        if file is not None:
            yield registered.load(), file


def _unchanged(
    step: InstallStep, ctx: InstallContext, file: Path, inputs: list[Path], stamps: "Stamps"
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
