"""Step-result cache in Redis (install the ``redis`` extra)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from flujo.domain.errors import ConfigurationError
from flujo.domain.interfaces import Serializer

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisCache"]


class RedisCache:
    """Keeps JSON-serialized results under ``prefix`` in Redis, with per-entry TTLs.

    Values come back as JSON data (pydantic models as dicts). A client is opened
    lazily on the running event loop; another loop gets its own client.
    """

    def __init__(self, url: str, serializer: Serializer, *, prefix: str = "flujo:cache:") -> None:
        if not url:
            raise ConfigurationError(
                "the redis cache needs cache.url, e.g. redis://127.0.0.1:6379/0"
            )
        self.url = url
        self.prefix = prefix
        self._serializer = serializer
        self._client: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _redis(self) -> Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            try:
                from redis.asyncio import Redis
            except ImportError as exc:
                raise ConfigurationError(
                    "the redis cache needs the redis package: pip install 'flujo[redis]'"
                ) from exc
            self._client, self._loop = Redis.from_url(self.url), loop
        return self._client

    async def get(self, key: str) -> Any | None:
        """Return the value under ``key``, or ``None`` on a miss."""
        blob = await self._redis().get(self.prefix + key)
        if blob is None:
            return None
        return self._serializer.loads(blob if isinstance(blob, bytes) else blob.encode())

    async def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        """Store ``value`` (``TypeError`` if it is not JSON-serializable)."""
        blob = self._serializer.dumps(value)
        expiry = None if ttl_s is None else max(1, int(ttl_s * 1000))
        await self._redis().set(self.prefix + key, blob, px=expiry)

    async def clear(self) -> None:
        """Delete every entry under this cache's prefix (and nothing else)."""
        client = self._redis()
        batch: list[Any] = []
        async for name in client.scan_iter(match=self.prefix + "*", count=500):
            batch.append(name)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)

    async def close(self) -> None:
        """Close the client; the next call opens a new one."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()
