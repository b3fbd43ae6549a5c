"""asyncpg pools for flujo's PostgreSQL parts: connections handed back without a reset.

asyncpg resets a connection each time it goes back to its pool (``RESET ALL``,
``UNLISTEN *``, ``pg_advisory_unlock_all()``...): a second round trip for every
statement run through the pool, which doubled the cost of a checkpoint. flujo's
statements leave no session state behind — no ``SET``, no ``LISTEN``, and the one
advisory lock (creating the tables) is released explicitly — so its pools skip
that query. A connection released inside a transaction is still rolled back.

Their connections also use generic plans (``plan_cache_mode``, PostgreSQL 12 or later).
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["create_pool"]

# flujo's statements are prepared once per connection and find rows by key, so one plan
# serves every parameter. With the default ("auto") PostgreSQL kept planning the CTE
# statements (making a run, the last checkpoint) afresh on every execution: ~40 µs of a
# ~150 µs statement, measured on loopback. A DSN that sets the parameter keeps its own.
_PLAN_CACHE_MODE = "plan_cache_mode"


@cache
def _connection_class() -> type[Any]:
    import asyncpg

    class Connection(asyncpg.Connection):  # type: ignore[misc]
        """A connection whose release runs no reset query."""

        def get_reset_query(self) -> str:
            return ""

    return Connection


async def create_pool(dsn: str, *, min_size: int, max_size: int) -> Any:
    """Open an asyncpg pool on ``dsn`` whose connections go back to it without a reset."""
    import asyncpg

    chosen = _PLAN_CACHE_MODE in dict(parse_qsl(urlsplit(dsn).query))
    settings = {} if chosen else {_PLAN_CACHE_MODE: "force_generic_plan"}
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        connection_class=_connection_class(),
        server_settings=settings,
    )
