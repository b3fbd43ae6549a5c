"""The one sync door: ``Flujo.run`` and ``Flujo.resume`` over their async twins.

Each call runs on a new event loop in the calling thread (inside a running loop,
on a thread of its own), so sync calls from many threads run at once, and that
loop ends with the call: ``release`` then closes what the call's loop opened (see
``flujo.application.opened_parts`` for what it leaves to other threads' runs).
The function keeps no state, so any number of threads may call it at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

R = TypeVar("R")


def run_sync(
    work: Coroutine[Any, Any, R], *, release: Callable[[], Awaitable[None]] | None = None
) -> R:
    """Run ``work`` to its end from sync code, then await ``release`` on the same loop."""
    # Imported here, like every asyncio import on the `import flujo` path: it is a third
    # of the import time, and the first run pays it anyway.
    import asyncio
    import concurrent.futures

    async def then_release() -> R:
        try:
            return await work
        finally:
            if release is not None:
                await release()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(then_release())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, then_release()).result()
