"""One connection of an asyncpg pool kept out of it, for one event loop's sequential statements.

A statement through the pool pays for an acquire and a release (a shielded task,
an event-loop turn and the holder's bookkeeping): about 60 µs measured on
loopback, which made a checkpoint cost half as much again as its round trip
(~125 µs) on an otherwise idle machine. A run writes its steps one after
another, so a ``Lane`` keeps one of the pool's connections and runs statements on
it directly. When a second caller on the same loop finds it busy (two runs at
once), that caller takes a connection from the pool as before instead of
queuing. A pool of one connection is not held: its other users (the state
providers sharing it) would wait forever.

The connection goes back to the pool after anything but a flujo error raised with
the connection idle: the pool's release rolls back a transaction left open, waits
out a cancelled statement and drops a connection that broke, and the next
statement takes a fresh one. A connection the server closed while idle (a
restart) is noticed before use and replaced the same way (the pool has already
taken such a connection back: its proxy answers nothing any more). One left idle
for ``STALE_S`` is closed and replaced too, as the pool closes its own idle
connections after that long: a firewall may have dropped it without a word, and a
statement sent on it would hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from flujo.domain.errors import FlujoError

__all__ = ["STALE_S", "Lane", "close_lane"]

R = TypeVar("R")

STALE_S = 300.0
"""Seconds idle after which the held connection is replaced (asyncpg's pools: the same)."""


class Lane:
    """A pool's connection held for one event loop; busy, its callers use the pool."""

    def __init__(self, pool: Any, *, stale_s: float = STALE_S) -> None:
        self.pool = pool
        self._stale_s = stale_s
        self._conn: Any = None  # the pool's proxy, handed back to it
        self._raw: Any = None  # the connection behind it, which statements use
        self._used = 0.0  # time.monotonic() of the held connection's last statement
        # Set while no statement (nor close) uses the held connection: a flag a statement
        # flips, not a lock to acquire and release (a coroutine and a wake-up check each).
        self._free = asyncio.Event()
        self._free.set()
        # Holding a pool's only connection would stall every other user of the pool.
        self._holds = pool.get_max_size() > 1

    async def run(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """Return ``fn(connection, *args)``: on the held connection, or a pooled one if busy."""
        free = self._free
        if not self._holds or not free.is_set():
            async with self.pool.acquire() as conn:
                return await fn(conn, *args)
        free.clear()
        try:
            conn, now = self._raw, time.monotonic()
            if conn is None or now - self._used > self._stale_s or not _idle(conn):
                conn = await self._take()
            self._used = now
            try:
                return await fn(conn, *args)
            except BaseException as exc:
                if not (isinstance(exc, FlujoError) and _idle(conn)):
                    # The statement's own error matters more than a failed release.
                    with contextlib.suppress(Exception):
                        await self._give_back()
                raise
        finally:
            free.set()

    @property
    def connection(self) -> Any:
        """The connection statements run on now (``None`` before the first): for measurements."""
        return self._raw

    async def _take(self) -> Any:
        conn, self._conn, self._raw = self._raw, None, None
        if conn is not None:
            # Dropped, not handed back: the pool would give the same one again. Terminated,
            # not closed: a dropped connection would leave a polite close waiting.
            with contextlib.suppress(Exception):  # one the pool took back is gone already
                conn.terminate()
        self._conn = await self.pool.acquire()
        self._raw = _unwrapped(self._conn)
        return self._raw

    async def _give_back(self) -> None:
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            await self.pool.release(conn)

    async def close(self) -> None:
        """Hand the held connection back to the pool (a later ``run`` takes one again)."""
        free = self._free
        while not free.is_set():  # a statement under way: it ends first
            await free.wait()
        free.clear()
        try:
            await self._give_back()
        finally:
            free.set()


def _unwrapped(proxy: Any) -> Any:
    """Return the connection behind a pool's proxy (the proxy itself if it has none).

    Every call through the proxy checks that it is still acquired and forwards: three
    calls per statement, ~3% of a checkpoint's CPU measured. The lane holds the proxy
    until it hands it back, and the pool gives a connection it took back (one the
    server closed) to nobody, so the connection behind it is only ever the lane's;
    ``_idle`` sees a closed one and the lane replaces it.
    """
    return getattr(proxy, "_con", None) or proxy


def _idle(conn: Any) -> bool:
    """Whether ``conn`` is open and outside any transaction, so the next statement may use it."""
    try:
        return not conn.is_closed() and not conn.is_in_transaction()
    except _released():  # the pool took it back when the server closed it
        return False


def _released() -> type[Exception]:
    """Return asyncpg's error for a connection its pool took back (imported only when raised)."""
    import asyncpg

    error: type[Exception] = asyncpg.InterfaceError
    return error


async def close_lane(lane: Lane) -> None:
    """Hand ``lane``'s connection back to its pool, so the pool can close."""
    await lane.close()
