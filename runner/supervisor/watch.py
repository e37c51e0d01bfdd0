"""`--watch`: restart the service when its code changes, for testing code by hand.

watchdog observes the code root only (watching site-packages overflows
inotify); with no inotify instance or watch left, it polls the tree instead.
Paths are filtered here, not with watchdog's pattern handler (which missed
every event with watchdog 7 on this kind of machine). A burst of saves
becomes one restart: changes are collected until the tree has been quiet for
a moment. A dependency file among them re-runs the install steps, which
re-run only what changed (stamps). A service that exits on its own is not
restarted in a loop: the runner waits for the next change.
"""

import contextlib
import fnmatch
import os
import select
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from runner import log, signals
from runner.config import Config
from runner.errors import InstallError
from runner.install import STEPS, dependency_files
from runner.supervisor.base import Exit, Restart, Run, Supervisor, exit_status

QUIET = 0.05  # seconds without events that end a burst of saves
MAX_BURST = 1.0  # restart at the latest this long after the first change
POLL_EVERY = 1.0  # seconds between looks at the tree when inotify cannot be had
IGNORED = (".git", ".hg", ".svn", ".bzr", "__pycache__", "*.pyc", "*.pyo", "*.swp", "*.swx",
           "*~", ".#*", "#*#", "4913", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache")
#: The files of the install steps: a change to one re-runs the install.
DEPENDENCY_FILES = {name for step in STEPS for name in step.filenames}
#: watchdog event types that mean content changed (not opened, not read).
CHANGES = {"created", "modified", "deleted", "moved", "closed"}

#: Re-runs the install steps; returns the new service command and environment.
Reinstall = Callable[[], tuple[Sequence[str | Path], Mapping[str, str]]]


class ChangeFilter:
    """Which paths under the code root count as changes of the service."""

    def __init__(self, root: Path, patterns: Sequence[str], skip: Sequence[Path]) -> None:
        self.root = root
        self.patterns = [*IGNORED, *patterns]
        self.skip = [p.resolve() for p in skip]

    def relevant(self, path: str) -> str | None:
        """The path relative to the root if it counts, else None."""
        try:
            rel = PurePosixPath(Path(path).relative_to(self.root))
        except ValueError:
            return None
        if any(Path(path).resolve().is_relative_to(s) for s in self.skip):
            return None
        for pattern in self.patterns:
            if fnmatch.fnmatch(str(rel), pattern) or any(
                fnmatch.fnmatch(part, pattern) for part in rel.parts
            ):
                return None
        return str(rel)


def _started(observer: Any, handler: Any, root: Path) -> Any:
    """`observer` watching `root` and its subfolders, running (a daemon thread)."""
    observer.schedule(handler, str(root), recursive=True)
    observer.daemon = True
    observer.start()
    return observer


class WatchSupervisor(Supervisor):
    """The supervisor plus a file watcher that turns edits into restarts."""

    def __init__(
        self,
        config: Config,
        argv: Sequence[str | Path],
        cwd: Path,
        env: Mapping[str, str],
        reinstall: Reinstall,
    ) -> None:
        super().__init__(config, argv, cwd, env)
        self.reinstall = reinstall
        skip = [p for p in (config.cache_dir, config.envs_dir) if p is not None]
        self.filter = ChangeFilter(cwd.resolve(), config.watch_ignore, skip)
        self.changed: set[str] = set()
        self._first_change = 0.0
        self._last_change = 0.0
        self._events_r, self._events_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pending: list[str] = []

    def run(self) -> int:
        observer = self._observe()
        self._poller.register(self._events_r, select.POLLIN)
        log.info(f"watching {self.cwd} for changes (--watch)")
        try:
            return super().run()
        finally:
            observer.stop()
            os.close(self._events_r)
            os.close(self._events_w)

    def _observe(self) -> Any:
        """Start watchdog on the code root; its thread only queues paths and wakes us."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        supervisor = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type not in CHANGES or event.is_directory:
                    return
                for path in (event.src_path, getattr(event, "dest_path", "")):
                    if path:
                        supervisor._pending.append(os.fsdecode(path))
                with contextlib.suppress(BlockingIOError):  # the loop is due to wake anyway
                    os.write(supervisor._events_w, b".")

        try:
            return _started(Observer(), Handler(), self.cwd)
        except OSError as exc:  # no inotify instance or watch left for us
            from watchdog.observers.polling import PollingObserver

            log.warn(f"cannot watch {self.cwd} with inotify ({exc.strerror or exc}): polling it "
                     f"every {POLL_EVERY:g} s instead (raise fs.inotify.max_user_instances or "
                     "max_user_watches to see changes at once)")
            return _started(PollingObserver(timeout=POLL_EVERY), Handler(), self.cwd)

    def on_event(self, run: Run | None, fd: int) -> None:
        if fd != self._events_r:
            super().on_event(run, fd)
            return
        while True:
            try:
                if not os.read(self._events_r, 4096):
                    break
            except BlockingIOError:
                break
        paths, self._pending = self._pending, []
        for path in paths:
            rel = self.filter.relevant(path)
            if rel is not None:
                now = time.monotonic()
                if not self.changed:
                    self._first_change = now
                self.changed.add(rel)
                self._last_change = now

    def timer(self) -> float | None:
        """Wake up when the current burst of changes is over (None: no burst, or over)."""
        left = self._burst_left()
        return left if left is not None and left > 0 else None

    def _burst_left(self) -> float | None:
        if not self.changed:
            return None
        due = min(self._last_change + QUIET, self._first_change + MAX_BURST)
        return due - time.monotonic()

    def tick(self, run: Run | None) -> None:
        """On a change: stop the service at once, start it when the burst is over.

        Stopping right at the first event overlaps the old process's shutdown
        with the rest of the burst, so the quiet window costs no extra time.
        """
        if not self.changed:
            return
        if run is not None and run.child.poll() is None:
            self.stop_service(run)
        elif run is None and (self._burst_left() or 0) <= 0:
            self.restart_now()

    def stopped(self, run: Run) -> Restart | Exit:
        """We stopped it for a change: start it again once the burst is over."""
        return Restart(None)

    def after_exit(self, run: Run, returncode: int) -> Restart | Exit:
        log.warn(f"service exited with status {exit_status(returncode)} after "
                 f"{run.ran_for:.2f} s; waiting for a change to restart it")
        return Restart(None)

    def start(self) -> Run:
        """Start the service with the changes so far (in the standby's spare, if any)."""
        if self.changed:
            self._apply_changes()
        return super().start()

    def _apply_changes(self) -> None:
        changed, self.changed = sorted(self.changed), set()
        log.info(f"changed: {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}")
        if (DEPENDENCY_FILES | dependency_files(self.cwd)) & set(changed):
            try:
                with signals.stoppable():
                    argv, env = self.reinstall()
            except InstallError as exc:
                log.warn(f"{exc}; starting the service with what is installed")
                return
            self.argv, self.env = list(argv), dict(env)
            if self.standby is not None:
                self.standby.discard()  # it was made for the old environment

