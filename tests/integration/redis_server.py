"""Finding the Redis server the Redis tests use, or saying how to start one."""

from __future__ import annotations

import asyncio

from tests.integration.servers import require_server

HOW_TO_START = (
    'start one with `eval "$(bash scripts/services.sh)"` (installs and starts redis-server on '
    "127.0.0.1:56379 and exports REDIS_URL), or point FLUJO_TEST_REDIS_URL at a server"
)


async def redis_url() -> str:
    """Return the test server's address; skip (fail under CI) when there is none reachable."""
    return await require_server(
        "Redis", ("FLUJO_TEST_REDIS_URL", "REDIS_URL"), _probe, HOW_TO_START
    )


async def _probe(url: str) -> str | None:
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=2)
    try:
        await asyncio.wait_for(client.ping(), timeout=5)
    except Exception as exc:
        return f"Redis at {url} is not reachable ({type(exc).__name__}: {exc})"
    finally:
        await client.aclose()
    return None
