"""One connection pool (or client) per event loop, for parts whose connections belong to a loop.

An asyncpg pool or a redis client may only be used on the event loop that opened
it, and ``runner.run()`` gives each call an event loop of its own, so a part
called from several threads at once holds one per loop. ``PerLoop`` opens it
lazily on the loop that asks (concurrent first calls on one loop share one) and
closes only the calling loop's: pools of other loops stay with the runs using
them. A loop that ended without closing its pool cannot close it any more; the
next call from another loop drops it, trying a synchronous ``abandon`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["PerLoop"]

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class _Slot(Generic[T]):
    """What one loop holds: its value once opened, and the lock its first callers share."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    value: T | None = None


class PerLoop(Generic[T]):
    """Holds one ``T`` per running event loop, made by ``open`` on first use there."""

    def __init__(
        self,
        open: Callable[[], Awaitable[T]],
        close: Callable[[T], Awaitable[None]],
        abandon: Callable[[T], None] = lambda value: None,
    ) -> None:
        self._open = open
        self._close = close
        self._abandon = abandon
        self._slots: dict[asyncio.AbstractEventLoop, _Slot[T]] = {}
        self._guard = threading.Lock()  # loops on several threads add and drop slots

    def __len__(self) -> int:
        """How many event loops hold a value now."""
        return sum(1 for slot in list(self._slots.values()) if slot.value is not None)

    def opened(self) -> T | None:
        """Return the running loop's value if it has one (no coroutine: the common case)."""
        slot = self._slots.get(asyncio.get_running_loop())
        return None if slot is None else slot.value

    async def get(self) -> T:
        """Return the running loop's value, opening it if this loop has none."""
        loop = asyncio.get_running_loop()
        while True:
            slot = self._slots.get(loop)
            if slot is not None and slot.value is not None:
                return slot.value
            if slot is None:
                slot = self._slot(loop)
            async with slot.lock:
                if self._slots.get(loop) is not slot:
                    continue  # closed while this call waited: start over with a new slot
                if slot.value is None:
                    slot.value = await self._open()
                return slot.value

    def _slot(self, loop: asyncio.AbstractEventLoop) -> _Slot[T]:
        with self._guard:
            slot = self._slots.get(loop)
            if slot is None:
                slot = self._slots[loop] = _Slot()
            ended = self._take_ended()
        self._drop(ended)
        return slot

    def _take_ended(self) -> list[_Slot[T]]:
        """Remove the slots of loops that have closed (call under the guard)."""
        ended = [loop for loop in self._slots if loop.is_closed()]
        return [self._slots.pop(loop) for loop in ended]

    def _drop(self, slots: list[_Slot[T]]) -> None:
        for slot in slots:
            if slot.value is not None:
                # Its loop is gone, so it cannot be closed properly; release what can be.
                with contextlib.suppress(Exception):
                    self._abandon(slot.value)

    async def close(self) -> None:
        """Close the running loop's value (a later ``get`` opens a new one); others stay."""
        loop = asyncio.get_running_loop()
        with self._guard:
            slot = self._slots.pop(loop, None)
            ended = self._take_ended()
        self._drop(ended)
        if slot is None:
            return
        async with slot.lock:  # an open under way on this loop finishes first
            value, slot.value = slot.value, None
        if value is not None:
            await self._close(value)
