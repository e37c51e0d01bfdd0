"""AI for Earth's module name for its task manager (`task_management.api_task.TaskManager`)."""

from workspace_service.ai4e.tasks import TaskManager

__all__ = ["TaskManager"]
