"""What the shared providers (PostgreSQL, Redis) write and read back, checked at one boundary.

Values are orjson bytes; what a store returns is checked here before anything uses
it, so a damaged value is a ``StateCorruptError`` naming the provider, the key and
the field, and a value JSON cannot hold is a ``TypeError`` naming them before
anything is written. A lost compare-and-swap is a ``StateConflictError`` with the
same wording in every provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from flujo.domain.errors import StateConflictError, StateCorruptError
from flujo.infra.serialization import OrjsonSerializer
from flujo.infra.state.rows import Corrupt, blob, shown

__all__ = ["checked", "conflict", "encoded", "stored_json"]

R = TypeVar("R")

_SERIALIZER = OrjsonSerializer()


def _named(where: str, namespace: str, key: str) -> str:
    return f"{where}: key {key!r} (namespace {namespace!r})"


def encoded(where: str, namespace: str, key: str, data: Any) -> bytes:
    """Return ``data`` as JSON bytes; ``TypeError`` naming store and key if JSON cannot hold it."""
    try:
        return _SERIALIZER.dumps(data)
    except TypeError as exc:
        raise TypeError(
            f"{_named(where, namespace, key)}: the value cannot be stored as JSON ({exc}); "
            "store JSON data (dicts, lists, strings, numbers, booleans, None) or pydantic models"
        ) from exc


def checked(
    where: str, namespace: str, key: str, field: str, check: Callable[[object], R], value: object
) -> R:
    """Return ``check(value)``; a value that does not fit is a ``StateCorruptError``."""
    try:
        return check(value)
    except Corrupt as exc:
        raise StateCorruptError(
            f"{_named(where, namespace, key)} cannot be read: {field!r} holds {shown(value)}; "
            f"expected {exc.expected}",
            column=field,
            found=shown(value),
        ) from None


def stored_json(where: str, namespace: str, key: str, value: object) -> Any:
    """Return the JSON value in the stored bytes ``value``, or raise ``StateCorruptError``."""
    data = checked(where, namespace, key, "value", blob, value)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StateCorruptError(
            f"{_named(where, namespace, key)} cannot be read: 'value' holds {shown(data)}, "
            f"which is not JSON ({exc})",
            column="value",
            found=shown(data),
        ) from exc


def conflict(
    where: str, namespace: str, key: str, expected: int | None, found: int, writer: str | None
) -> StateConflictError:
    """Return the error of a write that expected ``expected`` and found ``found`` by ``writer``."""
    return StateConflictError(
        f"{_named(where, namespace, key)} was expected at version {expected} but is at "
        f"version {found}, written by {writer!r}; nothing of this save was stored"
    )
