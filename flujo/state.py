"""The built-in run-state backends, for ``Flujo(state_backend=...)`` or a container profile."""

from flujo.infra.state.memory import InMemoryBackend
from flujo.infra.state.postgres import PostgresBackend
from flujo.infra.state.sqlite import SQLiteBackend

__all__ = ["InMemoryBackend", "PostgresBackend", "SQLiteBackend"]
