"""Long-running tasks: where their records live and who runs them (one module per kind)."""

from .base import KeyReused, Task, TaskBackend, TaskRecord, TaskStoreError, TaskStoreUnavailable

__all__ = ["KeyReused", "Task", "TaskBackend", "TaskRecord", "TaskStoreError",
           "TaskStoreUnavailable"]
