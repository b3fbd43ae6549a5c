"""Finding the Redis server the Redis tests use, or saying how to start one."""

from __future__ import annotations

import asyncio
import os

import pytest

HOW_TO_START = (
    'start one with `eval "$(bash scripts/services.sh)"` (installs and starts redis-server on '
    "127.0.0.1:56379 and exports REDIS_URL), or point FLUJO_TEST_REDIS_URL at a server"
)


async def redis_url() -> str:
    """Return the test server's URL; skip (fail under CI) when there is none reachable."""
    url = os.environ.get("FLUJO_TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    if not url:
        problem: str | None = "no Redis URL in FLUJO_TEST_REDIS_URL or REDIS_URL"
    else:
        problem = await _probe(url)
    if problem is None:
        assert url is not None
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI must run the Redis tests: {HOW_TO_START}")
    pytest.skip(f"{problem}; {HOW_TO_START}")


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
