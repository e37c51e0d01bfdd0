"""The pipeline of the contract: resolve the code, install its dependencies, serve it."""

from pathlib import Path

from runner import log
from runner.config import Config
from runner.errors import UsageError
from runner.install import install
from runner.install.base import ServiceEnv
from runner.scratch import Scratch
from runner.sources import resolve
from runner.sources.base import Code
from runner.supervisor import Supervisor


def run(config: Config) -> int:
    """Run every step the config asks for; return the runner's exit code."""
    if not config.code:
        raise UsageError(
            "nothing to run: set EXECUTE_CODE or pass a folder, script or URL "
            "(e.g. execute-code ./my-service)"
        )
    with Scratch() as scratch:
        code = resolve(config.code, config, scratch)
        service_env = install(code, config)
        if config.requirements_only:
            log.info("requirements installed (--requirements-only): not starting the service")
            return 0
        return serve(code, config, service_env)


def serve(code: Code, config: Config, service_env: ServiceEnv) -> int:
    """Start the service on its Python, in its code root, with PORT set."""
    argv, env = service_command(code, config, service_env)
    if config.check:
        from runner.supervisor.check import CheckSupervisor

        return CheckSupervisor(config, argv, cwd=code.root, env=env).run()
    if config.watch:
        from runner.supervisor.watch import WatchSupervisor

        def reinstall() -> tuple[list[str | Path], dict[str, str]]:
            return service_command(code, config, install(code, config))

        return WatchSupervisor(config, argv, code.root, env, reinstall).run()
    return Supervisor(config, argv, cwd=code.root, env=env).run()


def service_command(
    code: Code, config: Config, service_env: ServiceEnv
) -> tuple[list[str | Path], dict[str, str]]:
    """The service's argv and environment: its Python, its main, PORT set.

    A folder runs as `python DIR/__main__.py`, not `python DIR`: the latter gives
    `__main__` a module spec that multiprocessing's spawn children take to mean
    "do not re-run the main", so they cannot find the main's functions.
    """
    env = service_env.environ()
    env["PORT"] = str(config.port)
    env["PYTHONUNBUFFERED"] = "1"
    main = code.main / "__main__.py" if code.main.is_dir() else code.main
    return [service_env.python, main, *config.service_args], env
