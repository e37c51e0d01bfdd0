"""Reading `environment.yml`: channels, conda specs, the `pip:` list, variables.

Only the file is read here, with PyYAML; the specs are checked by rattler in
the worker. Everything that decides what ends up in the environment goes into
`key()`, so an unchanged file finds its environment again without a solve.

As conda does: `${VAR}` (and `$VAR`) in a channel is taken from the
environment (private channels with a token in the URL; the values are
secrets in every log line, and the key holds the channel as written, so a
new token is the same environment); pip-style extras in a conda dependency
(`nbconvert[execute]!=6.0.0`) are dropped, with a log line.
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import log
from runner.errors import InstallError
from runner.install.base import unreadable

#: conda's way of saying "not the defaults channels": we never add them anyway.
NODEFAULTS = "nodefaults"
#: The channel used when the file names none (as pixi and micromamba do).
DEFAULT_CHANNEL = "conda-forge"
#: What `defaults` means to conda on Linux and macOS (Anaconda's main and r).
DEFAULTS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
#: `${NAME}` or `$NAME` in a channel, as conda expands them.
_VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)\}|(?P<bare>\w+))")
#: `name[a,b]rest`: brackets holding names only are pip extras (conda's own
#: bracket keys are `key=value`, e.g. `numpy[version='>=1.26']`).
_EXTRAS = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\[(?P<extras>[^\]=]*)\](?P<rest>.*)$")


@dataclass
class EnvSpec:
    """What an `environment.yml` asks for.

    `channels` are what rattler gets (local paths made absolute file:// URLs);
    `written_channels` are the same as the file writes them, for the key.
    """

    name: str
    channels: list[str]
    written_channels: list[str]
    specs: list[str]
    pip: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)

    def key(self, platform: str) -> str:
        """A digest of everything that decides the environment's contents.

        Channels are hashed as written (a relative channel moves with the
        code, so code fetched into a new temporary folder still finds its
        environment); absolute paths are absolute already.
        """
        data = {"platform": platform, "channels": self.written_channels,
                "specs": self.specs, "pip": self.pip}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def read_env_file(file: Path) -> EnvSpec:
    """Parse `file`; raise `InstallError` that says what is wrong and where."""
    data = load_yaml(file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _bad(file, "expected a mapping with `channels:` and `dependencies:`")
    written = _strings(file, data.get("channels") or [], "channels")
    written = [c for c in written if c != NODEFAULTS] or [DEFAULT_CHANNEL]
    specs, pip = _dependencies(file, data.get("dependencies") or [])
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise _bad(file, "`variables:` must be a mapping of names to values")
    return EnvSpec(
        name=_name(data.get("name")),
        channels=[url for c in written
                  for url in resolve_channel(expand_variables(file, c), file.parent)],
        written_channels=written,
        specs=specs,
        pip=pip,
        variables={str(k): str(v) for k, v in variables.items()},
    )


def load_yaml(file: Path) -> Any:
    """PyYAML's C loader where built; a syntax error names its line and column."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(file.read_text(encoding="utf-8"), Loader=loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise InstallError(f"{file.name} is not valid YAML{where}: {problem} "
                           f"(fix {file.name})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InstallError(f"{file.name} is not valid YAML: {exc} (fix {file.name})") from None
    except OSError as exc:
        raise unreadable(file, exc) from None


def expand_variables(file: Path, channel: str) -> str:
    """`${VAR}`/`$VAR` in a channel from the environment; each value becomes a secret."""

    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        if name not in os.environ:
            raise _bad(file, f"channel {channel} uses ${{{name}}}, which is not set: set it "
                       "in the runner's environment")
        log.add_secret(os.environ[name])
        return os.environ[name]

    return _VARIABLE.sub(value, channel)


def resolve_channel(channel: str, root: Path) -> list[str]:
    """A channel as rattler takes it: names and URLs as they are, paths absolute.

    `defaults` becomes the channels conda means by it. A local channel that
    is not there fails here, at once and by name, rather than as a repodata
    error from the solver.
    """
    if channel == "defaults":
        return list(DEFAULTS)
    if "://" in channel or not channel.startswith((".", "/", "~")):
        return [channel]
    path = (root / Path(channel).expanduser()).resolve()
    if not path.is_dir():
        raise InstallError(
            f"channel {channel} not found: {path} is not a folder (channels that are "
            "paths are relative to the folder of the environment file)"
        )
    return [path.as_uri()]


def _dependencies(file: Path, deps: object) -> tuple[list[str], list[str]]:
    if not isinstance(deps, list):
        raise _bad(file, "`dependencies:` must be a list")
    specs: list[str] = []
    pip: list[str] = []
    for dep in deps:
        if isinstance(dep, dict) and set(dep) == {"pip"}:
            pip += _strings(file, dep["pip"] or [], "pip")
        elif isinstance(dep, str | int | float) and str(dep).strip():
            specs.append(_without_extras(" ".join(str(dep).split())))
        else:
            raise _bad(file, f"unexpected dependency {dep!r} (write `- name version` "
                       "or a `- pip: [...]` list)")
    return specs, pip


def _without_extras(spec: str) -> str:
    """A conda spec with pip-style extras dropped, as conda reads it."""
    match = _EXTRAS.match(spec)
    if match is None:
        return spec
    plain = match["name"] + match["rest"]
    log.info(f"conda: {spec} is read as {plain} (conda packages have no extras)")
    return plain


def _strings(file: Path, value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise _bad(file, f"`{what}:` must be a list of strings")
    return [str(v).strip() for v in value]


def _name(value: object) -> str:
    """The env's name, made safe for a folder name (it only labels the prefix)."""
    text = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(value or "env"))
    return text.strip(".-")[:40] or "env"


def _bad(file: Path, what: str) -> InstallError:
    return InstallError(f"{file.name}: {what} (fix {file.name})")
