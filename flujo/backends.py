"""The built-in execution backends, for ``Flujo(backend=...)`` or the ``execution`` settings.

``LocalExecutionBackend`` runs steps in this process (the default);
``RayExecutionBackend`` runs every leaf step as a task on a Ray cluster
(``pip install 'flujo[ray]'``; Ray itself is imported when the first step is
shipped). See docs/user_guide/scaling-out.md.
"""

from flujo.application.core.execution_backend import LocalExecutionBackend
from flujo.infra.ray_backend import RayExecutionBackend

__all__ = ["LocalExecutionBackend", "RayExecutionBackend"]
