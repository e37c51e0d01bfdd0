"""AI for Earth compatibility: AI4E's service, task manager and logger on the toolkit.

Services written for AI4E's API framework import these under AI4E's module
names (`ai4e_service`, `task_management.api_task`, `ai4e_app_insights_wrapper`,
`ai4e_app_insights`), which the toolkit installs as thin top-level modules
pointing here.
"""
