"""Resolve an `EXECUTE_CODE` value to local `Code`: the first source that detects it.

Order matters: an existing path always wins, so a folder that happens to be
named like a URL is still run as a folder. Each source is named by its module
and imported only when the sources before it did not detect the spec: a
local start never imports the VCS backends or the http client (start-up
time). http comes before VCS because no spec is both (a VCS URL starts with
`git+`, `hg+`, ...), and an http URL then imports nothing of VCS.
"""

import pkgutil
from collections.abc import Iterator
from pathlib import Path

from runner import log
from runner.config import Config
from runner.errors import ResolveError
from runner.scratch import Scratch
from runner.sources.base import Code, CodeSource

SOURCES = (
    "runner.sources.local:LocalSource",
    "runner.sources.http:HttpSource",
    "runner.sources.vcs:VcsSource",
    "runner.sources.lab:LabSource",
)


def source_classes() -> Iterator[type[CodeSource]]:
    """The source classes in order, each imported as it is reached."""
    for name in SOURCES:
        yield pkgutil.resolve_name(name)


def resolve(spec: str, config: Config, scratch: Scratch) -> Code:
    """Fetch the code `spec` names and check that it can run."""
    for source_cls in source_classes():
        if source_cls.detect(spec, config):
            source = source_cls(spec, config)
            path = source.fetch(scratch)
            code = Code.from_path(path, origin=log.redact(spec))
            log.info(f"code from {source.name}: {log.redact(spec)} -> {code.main}")
            files = _install_files(code)
            if source.confined:
                code.refuse_links_out(files, log.redact(spec))
            if not config.code_only:  # --code-only installs nothing: nothing to say
                found = ", ".join(f.name for f in files) or "none"
                log.info(f"install files in {code.root}: {found}")
            return code
    raise ResolveError(_not_found_message(spec))


def _install_files(code: Code) -> list[Path]:
    """The files in the code root that ask for an install step, in the steps' order.

    Logged because a single script brings in its whole folder's install files
    (a script in /tmp runs /tmp/setup.sh).
    """
    from runner.install import STEPS  # runner.install imports this package

    return [file for step in STEPS if (file := step.find(code.root)) is not None]


def _not_found_message(spec: str) -> str:
    return (
        f"{log.redact(spec)} does not exist locally: if it is an ML Lab data key, set "
        "LAB_ENDPOINT, LAB_API_TOKEN and LAB_PROJECT; else give an existing folder or "
        ".py script, a VCS URL (git+https://...) or an http(s) URL"
    )
