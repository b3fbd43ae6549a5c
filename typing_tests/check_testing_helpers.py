"""Static checks of flujo.testing's typed helpers, run by mypy in CI."""

from __future__ import annotations

from typing import assert_type

from flujo import Pipeline, Step
from flujo.providers import InMemoryStateProvider
from flujo.state import InMemoryBackend, SQLiteBackend
from flujo.testing import (
    Faults,
    FaultyAtomicBackend,
    FaultyProvider,
    FaultyStateBackend,
    FaultyVersionedProvider,
    with_step,
)


class PlainProvider:
    async def load(self, key: str) -> list[int] | None:
        return None

    async def save(self, key: str, data: list[int]) -> None:
        return None


# A versioned inner provider gives a versioned wrapper; a plain one a plain wrapper.
assert_type(FaultyProvider(InMemoryStateProvider[int]()), FaultyVersionedProvider[int])
assert_type(FaultyProvider(PlainProvider(), save=Faults.nth(1)), FaultyProvider[list[int]])

# A backend that commits provider writes with its checkpoints stays atomic.
assert_type(FaultyStateBackend(SQLiteBackend(":memory:")), FaultyAtomicBackend)
assert_type(FaultyStateBackend(InMemoryBackend(), checkpoint=Faults.always()), FaultyStateBackend)


def double(data: int) -> int:
    return data * 2


def to_text(data: int) -> str:
    return str(data)


pipeline = Step.from_callable(double) >> Step.from_callable(to_text)
assert_type(with_step(pipeline, "double", lambda data: data), Pipeline[int, str])
