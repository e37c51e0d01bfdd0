"""AI for Earth's Flask extension module: `from ai4e_app_insights import AppInsights`."""

from workspace_service.ai4e.insights import AppInsights

__all__ = ["AppInsights"]
