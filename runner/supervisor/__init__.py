"""Step 3 of the pipeline: serve the code under supervision.

`Supervisor` keeps the service running; its variants change what an exit or
a file change means: `CheckSupervisor` (--check) and `WatchSupervisor` (--watch).
"""

from runner.supervisor.base import Supervisor
from runner.supervisor.check import CheckSupervisor
from runner.supervisor.watch import WatchSupervisor

__all__ = ["CheckSupervisor", "Supervisor", "WatchSupervisor"]
