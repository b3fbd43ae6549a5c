"""In-process step-result cache: a bounded LRU with optional time-to-live."""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from flujo.domain.errors import ConfigurationError

__all__ = ["InMemoryLRUCache"]


_IMMUTABLE = frozenset({str, bytes, int, float, bool, type(None), frozenset})
_JSON_SCALARS = frozenset({str, int, bool, type(None)})
_INT64 = 2**63


def _is_plain_json(value: Any) -> bool:
    """Whether ``value`` survives a JSON round trip unchanged, types included."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return kind is not int or -_INT64 <= value < _INT64
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        return all(type(k) is str and _is_plain_json(v) for k, v in value.items())
    if kind is list:
        return all(_is_plain_json(item) for item in value)
    return False


class _Entry:
    """A stored value: JSON bytes when that keeps it exact, else a private deep copy.

    Parsing the bytes on a hit makes a fresh copy several times faster than a walk.
    """

    __slots__ = ("blob", "obj")

    def __init__(self, value: Any) -> None:
        self.blob: bytes | None = None
        self.obj: Any = None
        if type(value) in _IMMUTABLE:
            self.obj = value  # shared: nobody can change it
        elif _is_plain_json(value):
            self.blob = orjson.dumps(value)
        else:
            self.obj = copy.deepcopy(value)

    def value(self) -> Any:
        """Return a copy of the stored value the caller may change freely."""
        if self.blob is not None:
            return orjson.loads(self.blob)
        if type(self.obj) in _IMMUTABLE:
            return self.obj
        return copy.deepcopy(self.obj)


class _Shared:
    """A stored value handed out as it is (``copy_values=False``)."""

    __slots__ = ("obj",)

    def __init__(self, value: Any) -> None:
        self.obj = value

    def value(self) -> Any:
        """Return the stored object itself."""
        return self.obj


class InMemoryLRUCache:
    """Keeps at most ``max_entries`` values; the least recently used goes first.

    With ``copy_values`` (the default) entries are copies, so neither the step that
    stored a value nor the one that got it can change what the next hit returns.
    Without it a hit returns the stored object itself, which is faster for large
    outputs and safe when steps never change their inputs in place. Runs on many
    threads may share it: a lock guards the entries.
    """

    def __init__(
        self,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        *,
        copy_values: bool = True,
    ) -> None:
        if max_entries <= 0:
            raise ConfigurationError(f"cache max_entries must be > 0, got {max_entries}")
        self._max = max_entries
        self._clock = clock
        self._entry: Callable[[Any], _Entry | _Shared] = _Entry if copy_values else _Shared
        self._data: OrderedDict[str, tuple[_Entry | _Shared, float | None]] = OrderedDict()
        self._lock = threading.Lock()  # runs on several threads' loops share one cache

    async def get(self, key: str) -> Any | None:
        """Return the live value under ``key``, or ``None``."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            value, expires = entry
            if expires is not None and self._clock() >= expires:
                del self._data[key]
                return None
            self._data.move_to_end(key)
        return value.value()  # with copy_values, a fresh copy the caller may change

    async def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        """Store ``value``; evict the oldest entry when full."""
        expires = None if ttl_s is None else self._clock() + ttl_s
        entry = self._entry(value)  # the copy is made outside the lock
        with self._lock:
            self._data[key] = (entry, expires)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    async def clear(self) -> None:
        """Remove every entry."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
