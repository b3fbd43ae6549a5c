"""Awaiting provider calls: many at once without losing a failure, or one under a deadline."""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator, Iterable
from types import CoroutineType
from typing import Any

__all__ = ["at_once", "deadline", "gather_all", "why"]


async def gather_all(work: Iterable[Awaitable[Any]]) -> list[Any]:
    """Await everything concurrently; raise the first failure once all have ended."""
    calls = list(work)
    if len(calls) == 1:
        return [await calls[0]]  # one call needs no task of its own
    import asyncio  # not at module level: see sync_door.run_sync

    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


def at_once(call: Awaitable[Any]) -> tuple[bool, Any]:
    """Run ``call`` up to its first wait: ``(True, result)`` if it answered, else ``(False, rest)``.

    ``rest`` is what to await for the answer (``call`` itself unless it is a coroutine).
    A provider that answers at once (one in memory) then needs no timer and no task:
    arming a deadline costs more than many such calls.
    """
    if type(call) is not CoroutineType:
        return False, call
    try:
        waiting = call.send(None)
    except StopIteration as answered:
        return True, answered.value
    return False, _Resumed(call, waiting)


async def deadline(call: Awaitable[Any], seconds: float | None) -> Any:
    """Await ``call``, raising ``TimeoutError`` after ``seconds`` (``None``: no deadline)."""
    if seconds is None:
        return await call
    answered, rest = at_once(call)
    if answered:
        return rest
    import asyncio

    async with asyncio.timeout(seconds):
        return await rest


class _Resumed:
    """A coroutine already started, awaited from where it waits (PEP 380's ``yield from``)."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting = self._coro, self._waiting
        while True:
            try:
                sent = yield waiting
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation (the deadline's too) goes in
                try:
                    waiting = coro.throw(exc)
                except StopIteration as answered:
                    return answered.value
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration as answered:
                    return answered.value


def why(exc: BaseException, seconds: float | None) -> str:
    """Say why a provider call failed, naming the deadline setting when it timed out."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {seconds} s (state.load_timeout_s / state.save_timeout_s)"
    return f"{type(exc).__name__}: {exc}"
