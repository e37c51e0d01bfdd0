"""Step 3 of the pipeline: serve the code under supervision.

`Supervisor` (base.py) keeps the service running; its variants change what an
exit or a file change means: `CheckSupervisor` (check.py, --check) and
`WatchSupervisor` (watch.py, --watch), imported where they are chosen.
"""

from runner.supervisor.base import Supervisor

__all__ = ["Supervisor"]
