"""One connection of an asyncpg pool kept out of it, for one event loop's sequential statements.

A statement through the pool pays for an acquire and a release (a shielded task,
an event-loop turn and the holder's bookkeeping): about 60 µs measured on
loopback, half again a checkpoint's round trip. A run writes its steps one after
another, so a ``Lane`` keeps one of the pool's connections and runs statements on
it directly. When a second caller on the same loop finds it busy (two runs at
once), that caller takes a connection from the pool as before instead of
queuing, unless the pool holds only one connection, which the lane holds.

The connection goes back to the pool after anything but a flujo error raised with
the connection idle: the pool's release rolls back a transaction left open, waits
out a cancelled statement and drops a connection that broke, and the next
statement takes a fresh one. A connection the server closed while idle (a
restart) is noticed before use and replaced the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from flujo.domain.errors import FlujoError

__all__ = ["Lane", "close_lane"]

R = TypeVar("R")


class Lane:
    """A pool's connection held for one event loop; busy, its callers use the pool."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._conn: Any = None
        self._lock = asyncio.Lock()
        # With one connection in the pool the lane holds it: a second caller must wait.
        self._shares = pool.get_max_size() > 1

    async def run(self, fn: Callable[[Any], Awaitable[R]]) -> R:
        """Return ``fn(connection)``: on the held connection, or a pooled one when it is busy."""
        if self._shares and self._lock.locked():
            async with self.pool.acquire() as conn:
                return await fn(conn)
        async with self._lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                conn = await self._take()
            try:
                return await fn(conn)
            except BaseException as exc:
                if not (
                    isinstance(exc, FlujoError)
                    and not conn.is_closed()
                    and not conn.is_in_transaction()
                ):
                    # The statement's own error matters more than a failed release.
                    with contextlib.suppress(Exception):
                        await self._give_back()
                raise

    async def _take(self) -> Any:
        await self._give_back()
        self._conn = await self.pool.acquire()
        return self._conn

    async def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.pool.release(conn)

    async def close(self) -> None:
        """Hand the held connection back to the pool (a later ``run`` takes one again)."""
        async with self._lock:
            await self._give_back()


async def close_lane(lane: Lane) -> None:
    """Hand ``lane``'s connection back to its pool, so the pool can close."""
    await lane.close()
