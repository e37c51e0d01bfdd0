"""workspace_service: health, readiness, request limits, long-running tasks and a
graceful drain for a model service, on Flask and waitress.

Only the standard library, Flask and waitress are imported here: Redis,
Prometheus and the OpenAPI builder are imported where they are used.
"""

from .problems import Problem
from .server import serve
from .service import Service
from .settings import Settings

__all__ = ["Problem", "Service", "Settings", "serve"]
