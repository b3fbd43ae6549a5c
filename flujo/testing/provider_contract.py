"""The behaviour every ``StateProvider`` must have, as a pytest base class."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flujo.domain.interfaces import StateProvider

__all__ = ["StateProviderContract"]


class StateProviderContract:
    """Subclass with a ``provider`` fixture returning a fresh, empty provider.

    The values used are JSON data (dicts, lists, strings, numbers, booleans,
    ``None`` inside containers), which every provider must store faithfully.
    """

    @pytest.fixture
    def provider(self) -> Any:
        """Override: return a fresh, empty provider."""
        raise NotImplementedError("define a `provider` fixture in your subclass")

    @pytest.mark.asyncio
    async def test_missing_key_loads_none(self, provider: StateProvider[Any]) -> None:
        assert await provider.load("never-saved") is None

    @pytest.mark.asyncio
    async def test_saved_value_loads_back_equal(self, provider: StateProvider[Any]) -> None:
        value = {"nodes": [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}], "ok": True}
        await provider.save("graph", value)
        assert await provider.load("graph") == value

    @pytest.mark.asyncio
    async def test_save_replaces_the_value(self, provider: StateProvider[Any]) -> None:
        await provider.save("k", [1, 2])
        await provider.save("k", [3])
        assert await provider.load("k") == [3]

    @pytest.mark.asyncio
    async def test_keys_are_independent(self, provider: StateProvider[Any]) -> None:
        await provider.save("a", {"v": "a"})
        await provider.save("b", {"v": "b"})
        assert await provider.load("a") == {"v": "a"}
        assert await provider.load("b") == {"v": "b"}

    @pytest.mark.asyncio
    async def test_unusual_keys_and_values(self, provider: StateProvider[Any]) -> None:
        key = "user/42:profile ü ' \" ;--"
        value = {"text": "línea\nnueva ✓", "n": -1.5, "none": None, "big": 2**53}
        await provider.save(key, value)
        assert await provider.load(key) == value

    @pytest.mark.asyncio
    async def test_concurrent_saves_of_different_keys(self, provider: StateProvider[Any]) -> None:
        await asyncio.gather(*(provider.save(f"k{n}", [n]) for n in range(25)))
        loaded = await asyncio.gather(*(provider.load(f"k{n}") for n in range(25)))
        assert loaded == [[n] for n in range(25)]
