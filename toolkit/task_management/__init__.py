"""AI for Earth's package name for its task manager (`task_management.api_task`)."""
