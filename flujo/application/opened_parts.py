"""What a runner's runs opened, and when each part is closed: threads and event loops.

``runner.run()`` runs each call on an event loop of its own, in the calling
thread, so runs from many threads go on at once, each on its loop. One loop per
call, rather than one loop owned by the runner for all threads, because a sync
step runs inline on its loop: eight threads whose runs block 50 ms in a sync step
take about 70 ms with a loop each and about 410 ms sharing one (measured). The
price is a connection per loop for loop-bound parts: an asyncpg pool opens in
about 11 ms on loopback, paid once per sync call.

So the parts (state backend, cache) come in two kinds:

- bound to a loop (an asyncpg pool, a redis client): the part keeps one set of
  connections per loop and its ``close()`` closes the calling loop's. A sync
  call's loop ends with the call, so the call closes them as it ends, whatever
  other threads do; a run on another thread never loses its pool.
- ``SharedAcrossLoops`` (the SQLite connection on its worker thread): serves
  every loop; it is closed when no run of the runner is in flight, by the last
  one to end, so it is never closed under another thread's run.

``aclose()`` follows the same rule from the caller's loop: it closes what runs on
that loop opened, and the shared parts once no run is in flight (at once if none
is, else when the last one ends).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

__all__ = ["OpenedParts", "in_flight"]

P = ParamSpec("P")
R = TypeVar("R")


def _loop() -> AbstractEventLoop | None:
    import asyncio  # not at module level: see sync_door.run_sync

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None  # resolved outside any run (a test looking at the parts)


def _shared(part: object) -> bool:
    # What isinstance(part, SharedAcrossLoops) asks (its marker is True), without the
    # runtime-protocol check: microseconds, paid by every run for every part it uses.
    return getattr(part, "shared_across_loops", False) is True


class OpenedParts:
    """The parts a runner's runs used that may hold connections, by event loop."""

    def __init__(self) -> None:
        self._guard = threading.Lock()  # runs on many threads add parts and end
        self._by_loop: dict[AbstractEventLoop | None, dict[int, object]] = {}
        self._shared: dict[int, object] = {}
        self._in_flight = 0
        self._owed = False
        """A release found runs in flight: the last one to end closes the shared parts."""

    def add(self, part: object) -> None:
        """Remember ``part``, used by a run on the running loop, for a later release."""
        if getattr(part, "close", None) is None:
            return  # nothing to close (an in-memory cache): nothing to remember, every run
        with self._guard:
            if _shared(part):
                self._shared[id(part)] = part
            else:
                self._by_loop.setdefault(_loop(), {})[id(part)] = part

    async def during(self, work: Awaitable[R]) -> R:
        """Await ``work`` counted as in flight; the last to end closes what a release owes."""
        with self._guard:
            self._in_flight += 1
        try:
            return await work
        finally:
            with self._guard:
                self._in_flight -= 1
                owed = self._take_shared() if self._in_flight == 0 and self._owed else []
            await _close_all(owed)

    async def release(self) -> None:
        """Close what runs on the calling loop opened; the shared parts once none is in flight."""
        loop = _loop()
        with self._guard:
            parts = self._by_loop.pop(loop, {})
            # Loops that ended unreleased: their parts' close() drops what they left.
            for ended in [k for k in self._by_loop if k is None or k.is_closed()]:
                parts.update(self._by_loop.pop(ended))
            if self._in_flight == 0:
                shared = self._take_shared()
            else:
                shared, self._owed = [], bool(self._shared)
        await _close_all([*parts.values(), *shared])

    def _take_shared(self) -> list[object]:
        """Remove and return the shared parts (call under the guard)."""
        shared, self._shared, self._owed = list(self._shared.values()), {}, False
        return shared


async def _close_all(parts: list[object]) -> None:
    """Close every part; a failure is raised once all were tried."""
    failure: BaseException | None = None
    for part in parts:
        close = getattr(part, "close", None)
        if close is None:
            continue
        try:
            outcome = close()
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class _HoldsParts(Protocol):
    _opened: OpenedParts


S = TypeVar("S", bound=_HoldsParts)


def in_flight(
    method: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Count each call of a runner's async ``method`` as in flight while it runs."""

    @functools.wraps(method)
    async def counted(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._opened.during(method(self, *args, **kwargs))

    return counted
