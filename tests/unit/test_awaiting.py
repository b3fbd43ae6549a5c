"""Provider calls under a deadline, and how a provider is recognised as versioned."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from flujo.application.core.awaiting import deadline
from flujo.application.core.hydration import _VERSIONED_METHODS
from flujo.domain.interfaces import Versioned, VersionedStateProvider, Write


async def answer_now(value: Any) -> Any:
    return value


async def answer_later(value: Any, delay: float = 0.0) -> Any:
    await asyncio.sleep(delay)
    await asyncio.sleep(0)
    return value


async def test_an_answer_without_waiting_is_returned() -> None:
    assert await deadline(answer_now(7), 1.0) == 7


async def test_an_answer_after_waits_is_returned() -> None:
    assert await deadline(answer_later(8), 1.0) == 8


async def test_no_deadline_awaits_plainly() -> None:
    assert await deadline(answer_later(9), None) == 9


async def test_a_future_is_awaited_under_the_deadline() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.set_result, 3)
    assert await deadline(future, 1.0) == 3


async def test_a_call_past_its_deadline_raises_timeout_and_is_stopped() -> None:
    stopped: list[str] = []

    async def hangs() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            stopped.append("cleaned up")

    with pytest.raises(TimeoutError):
        await deadline(hangs(), 0.05)
    assert stopped == ["cleaned up"]


async def test_failures_before_and_after_the_first_wait_propagate() -> None:
    async def fails_at_once() -> None:
        raise KeyError("now")

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(KeyError, match="now"):
        await deadline(fails_at_once(), 1.0)
    with pytest.raises(KeyError, match="later"):
        await deadline(fails_later(), 1.0)


async def test_cancelling_the_caller_cancels_the_call_not_a_timeout() -> None:
    started, stopped = asyncio.Event(), []

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        finally:
            stopped.append(True)

    task = asyncio.ensure_future(deadline(slow(), 5.0))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped == [True]


async def test_a_call_can_catch_a_cancellation_and_answer() -> None:
    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "kept going"
        return "slept"

    task = asyncio.ensure_future(deadline(stubborn(), 5.0))
    await asyncio.sleep(0.01)
    task.cancel()
    assert await task == "kept going"


class _Plain:
    async def load(self, key: str) -> Any:
        return None

    async def save(self, key: str, data: Any) -> None:
        return None


class _WithVersions(_Plain):
    async def load_versioned(self, key: str) -> Versioned[Any]:
        return Versioned(None, 0)

    async def save_versioned(self, writes: Sequence[Write[Any]]) -> list[int]:
        return []


def test_the_versioned_check_names_what_the_protocol_checks() -> None:
    from flujo.application.core.session import StateSession
    from flujo.infra.hashing import Blake3Hasher
    from flujo.infra.serialization import OrjsonSerializer
    from flujo.infra.telemetry import NullTelemetry

    session = StateSession(
        {}, serializer=OrjsonSerializer(), hasher=Blake3Hasher(), telemetry=NullTelemetry()
    )
    for provider in (_Plain(), _WithVersions()):
        expected = isinstance(provider, VersionedStateProvider)
        assert session.is_versioned(type(provider).__name__, provider) is expected
    assert all(hasattr(VersionedStateProvider, name) for name in _VERSIONED_METHODS)
