"""The built-in state providers, for ``Flujo(state_providers={...})``.

``PostgresStateProvider`` and ``RedisStateProvider`` import asyncpg and redis only
when they first connect, so importing this module needs neither extra.
"""

from flujo.infra.providers.memory import InMemoryStateProvider
from flujo.infra.providers.postgres import PostgresStateProvider
from flujo.infra.providers.redis import RedisStateProvider
from flujo.infra.providers.sqlite import SQLiteStateProvider

__all__ = [
    "InMemoryStateProvider",
    "PostgresStateProvider",
    "RedisStateProvider",
    "SQLiteStateProvider",
]
