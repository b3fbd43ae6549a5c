"""Awaiting provider calls: many at once without losing a failure, or one under a deadline."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any

__all__ = ["deadline", "gather_all", "why"]


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


async def deadline(call: Awaitable[Any], seconds: float | None) -> Any:
    """Await ``call``, raising ``TimeoutError`` after ``seconds`` (``None``: no deadline)."""
    if seconds is None:
        return await call
    import asyncio

    async with asyncio.timeout(seconds):
        return await call


def why(exc: BaseException, seconds: float | None) -> str:
    """Say why a provider call failed, naming the deadline setting when it timed out."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {seconds} s (state.load_timeout_s / state.save_timeout_s)"
    return f"{type(exc).__name__}: {exc}"
