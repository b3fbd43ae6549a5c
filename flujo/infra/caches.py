"""In-process step-result cache: a bounded LRU with optional time-to-live."""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from flujo.domain.errors import ConfigurationError

__all__ = ["InMemoryLRUCache"]


_IMMUTABLE = (str, bytes, int, float, bool, type(None), frozenset)


def _copy(value: Any) -> Any:
    """Deep-copy what can change; immutable values (common: text) are shared as they are."""
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, dict) and len(value) == 1 and "output" in value:
        inner = value["output"]  # the executor's wrapper: copy only what it wraps
        return value if isinstance(inner, _IMMUTABLE) else {"output": copy.deepcopy(inner)}
    return copy.deepcopy(value)


class InMemoryLRUCache:
    """Keeps at most ``max_entries`` values; the least recently used goes first.

    Entries are deep copies, so neither the step that stored a value nor the one that
    got it can change what the next hit returns.
    """

    def __init__(self, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic):
        if max_entries <= 0:
            raise ConfigurationError(f"cache max_entries must be > 0, got {max_entries}")
        self._max = max_entries
        self._clock = clock
        self._data: OrderedDict[str, tuple[Any, float | None]] = OrderedDict()

    async def get(self, key: str) -> Any | None:
        """Return the live value under ``key``, or ``None``."""
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and self._clock() >= expires:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return _copy(value)  # callers may mutate what they get; the entry must not change

    async def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        """Store ``value``; evict the oldest entry when full."""
        expires = None if ttl_s is None else self._clock() + ttl_s
        self._data[key] = (_copy(value), expires)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def clear(self) -> None:
        """Remove every entry."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
