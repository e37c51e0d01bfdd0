"""The command line: `execute-code [CODE] [flags] [-- service args]`.

Parses flags into a `Config`, runs the pipeline, and turns every failure into
the contract's exit code with one `error:` line.
"""

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from runner import __version__, log, pipeline, signals
from runner.config import DEFAULT_PORT, RESTART_POLICIES, Config, env_path
from runner.errors import RunnerError, Stopped, UsageError

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """argparse that fails with the contract's `error:` line and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `execute-code --help`)")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {port}")
    return port


#: The longest duration a flag takes (31 years): beyond it the clocks of socket and
#: select timeouts overflow.
MAX_SECONDS = 1e9


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    # inf: never kill; nan: every test false; 1e10: OverflowError in a socket timeout
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected a finite number of seconds, 0 to {MAX_SECONDS:.0f}, got {value!r}")
    return seconds


def _folder(value: str) -> Path:
    """A folder path; an empty one (an unset shell variable) would mean the working folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError(f"expected a folder, got {value!r}")
    return Path(value)


def _count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative, got {value}")
    return count


def _from_env(
    environ: dict[str, str] | os._Environ, name: str, parse: Callable[[str], T], default: T
) -> T:
    """A value from the environment, parsed as its flag is; a bad one names its variable."""
    value = environ.get(name)
    if not value:
        return default
    try:
        return parse(value)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{name}: {exc}") from None


def _env_flag(environ: dict[str, str] | os._Environ, name: str) -> bool | None:
    """A yes/no from the environment (1/0, true/false, yes/no, on/off); None when unset."""
    value = environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{name}: expected 1 or 0, got {value!r}")


def _signal(value: str) -> signal.Signals:
    name = value.upper()
    if name.isdigit():
        try:
            return signal.Signals(int(name))
        except ValueError:
            pass
    else:
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signal.Signals.__members__:
            return signal.Signals[name]
    raise argparse.ArgumentTypeError(f"unknown signal {value!r} (try TERM, INT, QUIT, HUP)")


def build_parser() -> argparse.ArgumentParser:
    """The flags; each help text says its environment variable where it has one."""
    p = _Parser(
        prog="execute-code",
        usage="%(prog)s [CODE] [flags] [-- SERVICE_ARGS...]",
        description="Fetch service code, install its dependencies and serve it supervised.",
        epilog="Exit codes: 0 ok, 2 usage, 3 code not resolved, 4 dependency step failed, "
        "5 service not kept running, else the service's status (128+N for signal N).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("code", nargs="?", help="folder, .py script, VCS URL, lab key or URL "
                   "(default: $EXECUTE_CODE)")
    p.add_argument("--port", type=_port, help=f"service port, passed as $PORT "
                   f"(default: $PORT or {DEFAULT_PORT})")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--requirements-only", action="store_true",
                      help="install dependencies, then exit (for RUN in a Dockerfile)")
    mode.add_argument("--code-only", action="store_true",
                      help="skip installing dependencies (for CMD in a prepared image)")
    p.add_argument("--keep-going", action="store_true",
                   help="go on after a failed install step, with a warning")
    p.add_argument("--reinstall", action="store_true",
                   help="run every install step even if its file and environment are unchanged")
    p.add_argument("--watch", action="store_true",
                   help="restart the service when its code changes (for testing code)")
    p.add_argument("--standby", action=argparse.BooleanOptionalAction,
                   help="keep a spare interpreter with the service's third-party imports done, "
                   "to restart in it after a crash ($RUNNER_STANDBY=1; default: on with --watch)")
    p.add_argument("--watch-ignore", action="append", default=[], metavar="PATTERN",
                   help="with --watch: also ignore paths matching this glob (repeatable)")
    p.add_argument("--check", action="store_true",
                   help="start the service, GET /health (or /), print the answer, stop; "
                   "exit 0 on 2xx/3xx, else 5")
    p.add_argument("--stop-signal", type=_signal, default=Config.stop_signal,
                   help="signal the service gets when the runner is stopped "
                   f"(default: {Config.stop_signal.name.removeprefix('SIG')})")
    p.add_argument("--stop-timeout", type=_seconds, default=Config.stop_timeout,
                   help="seconds to wait after the stop signal before SIGKILL "
                   f"(default: {Config.stop_timeout:g})")
    p.add_argument("--restart", choices=RESTART_POLICIES, default=Config.restart,
                   help=f"when to restart the service (default: {Config.restart})")
    p.add_argument("--max-restarts", type=_count, default=Config.max_restarts,
                   help="quick failures in a row before giving up with exit 5 "
                   f"(default: {Config.max_restarts})")
    p.add_argument("--min-uptime", type=_seconds, default=Config.min_uptime, metavar="SECONDS",
                   help="a run that lasted this long counts as good: its exit restarts at once "
                   f"and clears the count of quick failures (default: {Config.min_uptime:g})")
    p.add_argument("--ready-timeout", type=_seconds,
                   help="exit 5 if the port is not open after this many seconds (default: wait)")
    p.add_argument("--cache-dir", type=_folder,
                   help="keep checkouts, downloads and environments here ($RUNNER_CACHE_DIR)")
    p.add_argument("--network-timeout", type=_seconds,
                   help="seconds before a silent remote is given up ($RUNNER_NETWORK_TIMEOUT, "
                   f"default: {Config.network_timeout:g})")
    return p


#: Flags that each choose how the run ends (argparse's groups cannot share one flag).
EXCLUSIVE = (("requirements_only", "watch"), ("requirements_only", "check"), ("watch", "check"))


def _refuse_conflicts(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A usage error for two flags of which only one could be obeyed."""
    for first, second in EXCLUSIVE:
        if getattr(args, first) and getattr(args, second):
            parser.error(f"argument --{second.replace('_', '-')}: not allowed with "
                         f"argument --{first.replace('_', '-')}")


def parse(argv: Sequence[str], environ: dict[str, str] | os._Environ) -> Config:
    """Flags win over environment variables, which win over defaults."""
    argv = list(argv)
    service_args: list[str] = []
    if "--" in argv:  # everything after `--` is the service's, flags included
        at = argv.index("--")
        argv, service_args = argv[:at], argv[at + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    _refuse_conflicts(args, parser)
    port = args.port
    if port is None:
        port = _from_env(environ, "PORT", _port, DEFAULT_PORT)
    cache_dir = args.cache_dir or env_path(environ, "RUNNER_CACHE_DIR")
    timeout = args.network_timeout
    if timeout is None:
        timeout = _from_env(environ, "RUNNER_NETWORK_TIMEOUT", _seconds, Config.network_timeout)
    return Config(
        code=args.code or environ.get("EXECUTE_CODE") or None,
        service_args=service_args,
        port=port,
        requirements_only=args.requirements_only,
        code_only=args.code_only,
        keep_going=args.keep_going,
        reinstall=args.reinstall,
        watch=args.watch,
        standby=next(choice for choice in (args.standby, _env_flag(environ, "RUNNER_STANDBY"),
                                           args.watch) if choice is not None),
        watch_ignore=args.watch_ignore,
        check=args.check,
        stop_signal=args.stop_signal,
        stop_timeout=args.stop_timeout,
        restart=args.restart,
        max_restarts=args.max_restarts,
        min_uptime=args.min_uptime,
        ready_timeout=args.ready_timeout,
        cache_dir=cache_dir.absolute() if cache_dir else None,
        envs_dir=env_path(environ, "RUNNER_ENVS_DIR"),
        network_timeout=timeout,
        max_download_bytes=_from_env(environ, "RUNNER_MAX_DOWNLOAD_BYTES", _count,
                                     Config.max_download_bytes),
        max_unpacked_bytes=_from_env(environ, "RUNNER_MAX_UNPACKED_BYTES", _count,
                                     Config.max_unpacked_bytes),
        max_archive_members=_from_env(environ, "RUNNER_MAX_ARCHIVE_MEMBERS", _count,
                                      Config.max_archive_members),
        lab_endpoint=environ.get("LAB_ENDPOINT") or None,
        lab_token=environ.get("LAB_API_TOKEN") or None,
        lab_project=environ.get("LAB_PROJECT") or None,
        runner_python=env_path(environ, "RUNNER_PYTHON"),
    )


def check_settings(config: Config, environ: dict[str, str] | os._Environ) -> None:
    """Refuse, before any work, a setting the run would trip over halfway.

    `os.path`'s tests, unlike `Path`'s, answer False for a name over the limit.
    """
    python = config.runner_python
    if python is not None and not (os.path.isfile(python) and os.access(python, os.X_OK)):
        what = ("is a folder" if os.path.isdir(python) else
                "is not executable" if os.path.exists(python) else "does not exist")
        raise UsageError(f"RUNNER_PYTHON {python} {what}: point it at the service's Python "
                         "(e.g. /opt/venv/bin/python), or unset it to use the runner's own")
    if not config.code_only:  # a prepared image's start may have a read-only home
        from runner.cache import cache_root  # not on a --code-only start's path

        _check_writable(cache_root(config), _cache_setting(config, environ))


def _cache_setting(config: Config, environ: dict[str, str] | os._Environ) -> str:
    if config.cache_dir is not None:
        return "--cache-dir (or RUNNER_CACHE_DIR)"
    if environ.get("XDG_CACHE_HOME"):
        return "XDG_CACHE_HOME"
    return "HOME (or set RUNNER_CACHE_DIR)"


def _check_writable(folder: Path, setting: str) -> None:
    """The runner's cache folder exists (made now) and can be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        problem = "is a file, not a folder"
    except OSError as exc:
        problem = f"cannot be created ({exc.strerror or exc})"
    else:
        if os.access(folder, os.W_OK | os.X_OK):
            return
        problem = "is not writable"
    raise UsageError(f"the runner's cache folder {folder} {problem}: point {setting} "
                     "at a writable folder")


def _open_stdio() -> None:
    """Point a closed stdin, stdout or stderr at /dev/null.

    Otherwise a pipe of ours would take its number, and what the service writes
    to that stream would be written into the pipe (our signal pipe, say).
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; return the contract's exit code."""
    _open_stdio()
    previous = signals.install()
    try:
        config = parse(sys.argv[1:] if argv is None else argv, os.environ)
        check_settings(config, os.environ)
        for secret in (config.lab_token, os.environ.get("GIT_TOKEN")):
            log.add_secret(secret)  # from the start: an install step may print them too
        return pipeline.run(config)
    except RunnerError as exc:
        log.error(str(exc))
        return exc.exit_code
    except argparse.ArgumentTypeError as exc:
        log.error(f"{exc} (see `execute-code --help`)")
        return UsageError.exit_code
    except Stopped as exc:
        log.info(f"stopped by {signal.Signals(exc.signum).name} before the service started")
        return exc.exit_code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
