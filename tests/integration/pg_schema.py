"""A PostgreSQL schema of a test's own, so tests sharing one server never see each other's tables.

``postgres_dsn()`` in ``tests.integration.postgres`` empties flujo's run tables of the
server's default schema; the provider tests instead make a fresh schema per test,
point ``search_path`` at it through the DSN (asyncpg passes unknown DSN parameters
on as server settings), and drop only that schema afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.integration.postgres import HOW_TO_START
from tests.integration.servers import require_server


async def server_dsn() -> str:
    """Return the test server's DSN; skip naming the variable (fail under CI) without one."""
    return await require_server(
        "PostgreSQL", ("FLUJO_TEST_PG_DSN", "PG_DSN"), _reachable, HOW_TO_START
    )


async def _reachable(dsn: str) -> str | None:
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), timeout=5)
    except Exception as exc:
        return f"PostgreSQL at {dsn} is not reachable ({type(exc).__name__}: {exc})"
    await conn.close()
    return None


def with_settings(dsn: str, **settings: str) -> str:
    """Return ``dsn`` with server settings (``search_path``, ``application_name``) added."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    query.update(settings)
    return urlunsplit(parts._replace(query=urlencode(query)))


class Schema:
    """A schema made for one test: ``dsn`` works in it; ``drop()`` removes it and its tables."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.name = f"flujo_test_{uuid.uuid4().hex[:16]}"
        self.dsn = with_settings(server, search_path=self.name)

    async def create(self) -> Schema:
        """Make the schema on the server."""
        await self.execute(f'CREATE SCHEMA "{self.name}"')
        return self

    async def execute(self, sql: str, *args: object) -> None:
        """Run ``sql`` on a connection of its own inside the schema."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()

    async def fetch(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        """Return the rows of ``sql`` as tuples, from a connection of its own."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            return [tuple(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    async def drop(self) -> None:
        """Drop the schema and everything in it (only what this test made)."""
        await self.execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
