"""Finding the PostgreSQL server the Postgres tests use, or saying how to start one."""

from __future__ import annotations

import asyncio

from tests.integration.servers import require_server

HOW_TO_START = (
    'start one with `eval "$(bash scripts/services.sh)"` (installs and starts PostgreSQL on '
    "127.0.0.1:55432 and exports PG_DSN), or point FLUJO_TEST_PG_DSN at a server"
)


async def postgres_dsn() -> str:
    """Return the test server's address; skip (fail under CI) when there is none reachable."""
    return await require_server("PostgreSQL", ("FLUJO_TEST_PG_DSN", "PG_DSN"), _probe, HOW_TO_START)


async def _probe(dsn: str) -> str | None:
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), timeout=5)
    except Exception as exc:
        return f"PostgreSQL at {dsn} is not reachable ({type(exc).__name__}: {exc})"
    try:
        await conn.execute("DROP TABLE IF EXISTS flujo_steps, flujo_runs")
    finally:
        await conn.close()
    return None
