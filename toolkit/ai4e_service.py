"""AI for Earth's module name for its service wrapper: `from ai4e_service import APIService`."""

from workspace_service.ai4e.service import AI4EService, AI4EWrapper, APIService

__all__ = ["AI4EService", "AI4EWrapper", "APIService"]
