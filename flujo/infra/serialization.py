"""JSON serialization with orjson; pydantic models become their JSON form."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

__all__ = ["OrjsonSerializer"]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# Non-string dict keys cost orjson ~1.7x on every call, so they are allowed only on a retry.
_NON_STR_KEYS = _OPTIONS | orjson.OPT_NON_STR_KEYS
# Sorting keys costs ~1.4x on a 10 KB dict, so only canonical dumps (cache keys) pay it.
_CANONICAL = _OPTIONS | orjson.OPT_SORT_KEYS
_CANONICAL_NON_STR_KEYS = _CANONICAL | orjson.OPT_NON_STR_KEYS


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        # model_dump(mode="json") is this call behind ~1.3 µs of keyword handling.
        return type(obj).__pydantic_serializer__.to_python(obj, mode="json")
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)  # sorted so equal sets hash equally
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot serialize {type(obj).__qualname__} to JSON")


class OrjsonSerializer:
    """Serializer for plain data, dataclasses and pydantic models (never pickle)."""

    __slots__ = ()

    def dumps(self, obj: Any) -> bytes:
        """Serialize ``obj`` to JSON bytes; ``TypeError`` for values JSON cannot hold."""
        try:
            return orjson.dumps(obj, default=_default, option=_OPTIONS)
        except TypeError:
            return orjson.dumps(obj, default=_default, option=_NON_STR_KEYS)

    def dumps_canonical(self, obj: Any) -> bytes:
        """Serialize like ``dumps``, dict keys sorted at every depth: equal data, equal bytes."""
        try:
            return orjson.dumps(obj, default=_default, option=_CANONICAL)
        except TypeError:
            return orjson.dumps(obj, default=_default, option=_CANONICAL_NON_STR_KEYS)

    def loads(self, data: bytes) -> Any:
        """Parse JSON bytes."""
        return orjson.loads(data)
