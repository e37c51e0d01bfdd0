"""Code that is already here: a mounted folder or a single script."""

from pathlib import Path

from runner.config import Config
from runner.scratch import Scratch
from runner.sources.base import CodeSource


class LocalSource(CodeSource):
    """An existing path; nothing to fetch."""

    name = "local"
    confined = False  # the user's own folder: its links are the user's choice

    @classmethod
    def detect(cls, spec: str, config: Config) -> bool:
        try:
            return Path(spec).exists()
        except OSError:  # e.g. a name over the system's limit (a long URL): not a path
            return False

    def fetch(self, scratch: Scratch) -> Path:
        return Path(self.spec)
