"""The built-in state providers, for ``Flujo(state_providers={...})``."""

from flujo.infra.providers.memory import InMemoryStateProvider
from flujo.infra.providers.sqlite import SQLiteStateProvider

__all__ = ["InMemoryStateProvider", "SQLiteStateProvider"]
