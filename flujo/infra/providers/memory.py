"""A state provider holding values in process memory."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["InMemoryStateProvider"]

T = TypeVar("T")


class InMemoryStateProvider(Generic[T]):
    """Keeps values in a dict, by reference: what ``save`` receives is what ``load`` returns.

    For tests and for data that need not outlive the process. ``data`` is the
    underlying dict, there to seed or inspect.
    """

    def __init__(self, initial: dict[str, T] | None = None) -> None:
        self.data: dict[str, T] = dict(initial or {})
        self.loads = 0
        """How many times ``load`` was called (for tests asserting hydrate-once)."""
        self.saves = 0
        """How many times ``save`` was called."""

    async def load(self, key: str) -> T | None:
        """Return the value under ``key``, or ``None``."""
        self.loads += 1
        return self.data.get(key)

    async def save(self, key: str, data: T) -> None:
        """Store ``data`` under ``key``."""
        self.saves += 1
        self.data[key] = data

    def __repr__(self) -> str:
        keys: Any = sorted(self.data)
        return f"InMemoryStateProvider(keys={keys})"
