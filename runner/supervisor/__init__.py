"""Step 3 of the pipeline: serve the code under supervision."""

from runner.supervisor.base import Supervisor

__all__ = ["Supervisor"]
