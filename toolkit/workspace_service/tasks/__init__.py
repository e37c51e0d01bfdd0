"""Long-running tasks: where their records live and who runs them (one module per kind)."""

from .base import Task, TaskBackend, TaskRecord, TaskStoreError, TaskStoreUnavailable

__all__ = ["Task", "TaskBackend", "TaskRecord", "TaskStoreError", "TaskStoreUnavailable"]
