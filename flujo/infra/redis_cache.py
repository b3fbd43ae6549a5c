"""Step-result cache in Redis (install the ``redis`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flujo.domain.errors import ConfigurationError
from flujo.domain.interfaces import Serializer
from flujo.infra.loop_bound import PerLoop

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisCache"]


class RedisCache:
    """Keeps JSON-serialized results under ``prefix`` in Redis, with per-entry TTLs.

    Values come back as JSON data (pydantic models as dicts). A client belongs to
    the event loop that opened it, so each loop using the cache (``runner.run()``
    from several threads) gets its own, opened lazily; ``close()`` closes the
    calling loop's client only.
    """

    def __init__(self, url: str, serializer: Serializer, *, prefix: str = "flujo:cache:") -> None:
        if not url:
            raise ConfigurationError(
                "the redis cache needs cache.url, e.g. redis://127.0.0.1:6379/0"
            )
        self.url = url
        self.prefix = prefix
        self._serializer = serializer
        self._clients: PerLoop[Redis] = PerLoop(self._open, _close_client)

    async def _open(self) -> Redis:
        try:
            from redis.asyncio import Redis
        except ImportError as exc:
            raise ConfigurationError(
                "the redis cache needs the redis package: pip install 'flujo[redis]'"
            ) from exc
        return Redis.from_url(self.url)

    async def get(self, key: str) -> Any | None:
        """Return the value under ``key``, or ``None`` on a miss."""
        blob = await (await self._clients.get()).get(self.prefix + key)
        if blob is None:
            return None
        return self._serializer.loads(blob if isinstance(blob, bytes) else blob.encode())

    async def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        """Store ``value`` (``TypeError`` if it is not JSON-serializable)."""
        blob = self._serializer.dumps(value)
        expiry = None if ttl_s is None else max(1, int(ttl_s * 1000))
        await (await self._clients.get()).set(self.prefix + key, blob, px=expiry)

    async def clear(self) -> None:
        """Delete every entry under this cache's prefix (and nothing else)."""
        client = await self._clients.get()
        batch: list[Any] = []
        async for name in client.scan_iter(match=self.prefix + "*", count=500):
            batch.append(name)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)

    async def close(self) -> None:
        """Close the calling event loop's client (the next call opens a new one); others stay."""
        await self._clients.close()


async def _close_client(client: Redis) -> None:
    await client.aclose()
