"""The one sync door: ``Flujo.run`` and ``Flujo.resume`` over their async twins."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

R = TypeVar("R")


def run_sync(work: Coroutine[Any, Any, R]) -> R:
    """Run ``work`` to its end from sync code; inside a running loop, on a thread of its own."""
    # Imported here, like every asyncio import on the `import flujo` path: it is a third
    # of the import time, and the first run pays it anyway.
    import asyncio
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()
