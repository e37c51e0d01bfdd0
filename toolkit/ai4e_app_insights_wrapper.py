"""AI for Earth's module name for its logger (`from ai4e_app_insights_wrapper import ...`)."""

from workspace_service.ai4e.insights import AI4EAppInsights

__all__ = ["AI4EAppInsights"]
