"""A versioned state provider holding values in process memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from flujo.domain.errors import StateConflictError
from flujo.domain.interfaces import Versioned, Write

__all__ = ["InMemoryStateProvider"]

T = TypeVar("T")


class InMemoryStateProvider(Generic[T]):
    """Keeps values in a dict, by reference: what ``save`` receives is what ``load`` returns.

    For tests and for data that need not outlive the process. ``data`` is the
    underlying dict, there to seed or inspect. It is a ``VersionedStateProvider``:
    a key's version is 0 while it is not in ``data``, 1 for a seeded key, and
    every save adds 1; versions and writer tags are kept beside ``data`` (changing
    ``data`` directly leaves them as they were).
    """

    def __init__(self, initial: dict[str, T] | None = None) -> None:
        self.data: dict[str, T] = dict(initial or {})
        self.loads = 0
        """How many times ``load`` or ``load_versioned`` was called (hydrate-once tests)."""
        self.saves = 0
        """How many values were stored, by ``save`` or as a write of ``save_versioned``."""
        self._versions: dict[str, int] = {}
        self._writers: dict[str, str | None] = {}

    def _stamp(self, key: str) -> tuple[int, str | None]:
        """Return the version and writer of ``key``: ``(0, None)`` when it is not stored."""
        if key not in self.data:
            return 0, None
        return self._versions.get(key, 1), self._writers.get(key)

    async def load(self, key: str) -> T | None:
        """Return the value under ``key``, or ``None``."""
        self.loads += 1
        return self.data.get(key)

    async def load_versioned(self, key: str) -> Versioned[T]:
        """Return the value, version and writer under ``key`` (version 0 if none)."""
        self.loads += 1
        version, writer = self._stamp(key)
        return Versioned(self.data.get(key), version, writer)

    async def save(self, key: str, data: T) -> None:
        """Store ``data`` under ``key``."""
        self._store(key, data, self._stamp(key)[0] + 1, None)

    async def save_versioned(self, writes: Sequence[Write[T]]) -> list[int]:
        """Apply ``writes`` in order, all or none; return the new versions.

        Raises ``StateConflictError`` naming the key, the expected and found
        versions and the found writer, having stored nothing.
        """
        planned: dict[str, tuple[int, str | None]] = {}  # what earlier writes of this call did
        versions: list[int] = []
        for write in writes:
            found, writer = planned.get(write.key) or self._stamp(write.key)
            if write.expected_version is not None and found != write.expected_version:
                raise StateConflictError(
                    f"in-memory state provider: key {write.key!r} was expected at version "
                    f"{write.expected_version} but is at version {found}, written by "
                    f"{writer!r}; nothing of this save was stored"
                )
            planned[write.key] = (found + 1, write.writer)
            versions.append(found + 1)
        for write, version in zip(writes, versions, strict=True):
            self._store(write.key, write.data, version, write.writer)
        return versions

    def _store(self, key: str, data: T, version: int, writer: str | None) -> None:
        self.saves += 1
        self.data[key] = data
        self._versions[key] = version
        self._writers[key] = writer

    def __repr__(self) -> str:
        keys: Any = sorted(self.data)
        return f"InMemoryStateProvider(keys={keys})"
