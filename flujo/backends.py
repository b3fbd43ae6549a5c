"""The built-in execution backends, for ``Flujo(backend=...)`` or the ``execution`` settings.

``LocalExecutionBackend`` runs steps in this process (the default);
``RayExecutionBackend`` runs every leaf step on a Ray cluster, on a pool of
actors kept across runs (``ActorPool``) or as one task each (``pip install
'flujo[ray]'``; Ray itself is imported when the first step is shipped). See
docs/user_guide/scaling-out.md.
"""

from flujo.application.core.execution_backend import LocalExecutionBackend
from flujo.infra.ray_backend import RayExecutionBackend
from flujo.infra.ray_pool import ActorPool

__all__ = ["ActorPool", "LocalExecutionBackend", "RayExecutionBackend"]
