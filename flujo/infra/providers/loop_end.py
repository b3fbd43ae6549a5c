"""Closing a provider's connections of one event loop when that loop ends.

A runner closes its state backend and cache as each ``runner.run()`` call ends, but
not its state providers: whoever made a provider closes it. A provider bound to an
event loop (an asyncpg pool, a redis client) cannot be closed by its maker once
``runner.run()`` returned, as the call's loop is gone; its sockets would stay open
until garbage collection, with a ``ResourceWarning``, and its server connections
with them. ``asyncio.run`` finalizes every live async generator of its loop
(``loop.shutdown_asyncgens()``) before closing the loop, while the loop still runs:
an async generator parked on that loop is how a provider hears of the end in time
to close its connections properly. A loop ended otherwise (``loop.close()`` without
``shutdown_asyncgens``) leaves them to the next loop's call, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable

__all__ = ["LoopEnd"]


class LoopEnd:
    """Calls ``close()`` on each event loop it was ``watch()``-ed on, as that loop ends."""

    def __init__(self, close: Callable[[], Awaitable[None]]) -> None:
        self._close = close
        # The loop holds its async generators weakly: these references keep them alive.
        self._watchers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        self._guard = threading.Lock()  # loops on several threads watch at once

    async def watch(self) -> None:
        """Call ``close()`` on the running loop as it ends (once per loop, however often asked)."""
        loop = asyncio.get_running_loop()
        with self._guard:
            if loop in self._watchers:
                return
            for ended in [other for other in self._watchers if other.is_closed()]:
                del self._watchers[ended]  # ended without finalizing its generators
            watcher = self._watchers[loop] = self._until_end(loop)
        await anext(watcher)  # started, so the loop knows it; parked at its yield

    async def _until_end(self, loop: asyncio.AbstractEventLoop) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._guard:
                self._watchers.pop(loop, None)
            with contextlib.suppress(Exception):  # the loop is ending: nobody to tell
                await self._close()
