"""Finding the PostgreSQL server the Postgres tests use, or saying how to start one."""

from __future__ import annotations

import asyncio
import os

import pytest

HOW_TO_START = (
    'start one with `eval "$(bash scripts/services.sh)"` (installs and starts PostgreSQL on '
    "127.0.0.1:55432 and exports PG_DSN), or point FLUJO_TEST_PG_DSN at a server"
)


async def postgres_dsn() -> str:
    """Return the test server's DSN; skip (fail under CI) when there is none reachable."""
    dsn = os.environ.get("FLUJO_TEST_PG_DSN") or os.environ.get("PG_DSN")
    problem = None
    if not dsn:
        problem = "no PostgreSQL DSN in FLUJO_TEST_PG_DSN or PG_DSN"
    else:
        problem = await _probe(dsn)
    if problem is None:
        assert dsn is not None
        return dsn
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI must run the PostgreSQL tests: {HOW_TO_START}")
    pytest.skip(f"{problem}; {HOW_TO_START}")


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
