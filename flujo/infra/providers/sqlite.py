"""A versioned state provider storing JSON values in an embedded SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orjson

from flujo.domain.errors import StateConflictError, StateCorruptError, StateError
from flujo.domain.interfaces import Versioned, Write
from flujo.infra.serialization import OrjsonSerializer
from flujo.infra.sqlite_layout import LAYOUT_VERSION, MIGRATIONS, STATE_TABLE
from flujo.infra.sqlite_worker import SQLiteWorker, in_transaction, transaction
from flujo.infra.state.rows import Corrupt, blob, count, optional_text, shown

__all__ = ["SQLiteStateProvider", "StateRow", "write_rows"]

R = TypeVar("R")

_SELECT = "SELECT value, version, writer FROM flujo_state WHERE namespace = ? AND key = ?"
_SELECT_VERSION = "SELECT version, writer FROM flujo_state WHERE namespace = ? AND key = ?"
# A plain save is a write with no expected version and no writer tag: it bumps the version too.
_UPSERT = (
    "INSERT INTO flujo_state (namespace, key, value, version, writer) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
    " version = excluded.version, writer = excluded.writer"
)
_DELETE = "DELETE FROM flujo_state WHERE namespace = ? AND key = ?"


def _checked(
    where: str, namespace: str, key: str, column: str, check: Callable[[object], R], value: object
) -> R:
    """Return ``check(value)``; a value that does not fit is a ``StateCorruptError``."""
    try:
        return check(value)
    except Corrupt as exc:
        raise StateCorruptError(
            f"{where}: key {key!r} (namespace {namespace!r}) cannot be read: column {column!r} "
            f"holds {shown(value)}; expected {exc.expected}",
            column=column,
            found=shown(value),
        ) from None


def _stored_value(where: str, namespace: str, key: str, value: object) -> Any:
    """Return the JSON value stored in ``value``, or raise ``StateCorruptError``.

    flujo writes JSON bytes; JSON text is read too, as a table seeded by hand holds it.
    """
    data = (
        value if isinstance(value, str) else _checked(where, namespace, key, "value", blob, value)
    )
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StateCorruptError(
            f"{where}: key {key!r} (namespace {namespace!r}) cannot be read: column 'value' "
            f"holds {shown(data)}, which is not JSON ({exc})",
            column="value",
            found=shown(data),
        ) from exc


class StateRow(NamedTuple):
    """One compare-and-swap write, serialized, ready to be applied inside a transaction."""

    namespace: str
    key: str
    blob: bytes
    expected_version: int | None
    writer: str | None


def write_rows(conn: sqlite3.Connection, rows: Sequence[StateRow], where: str) -> list[int]:
    """Apply ``rows`` in order inside the caller's transaction; return the new versions.

    Raises ``StateConflictError`` at the first row whose stored version is not its
    expected one; the caller rolls the transaction back. ``where`` names the store
    in the message.
    """
    versions: list[int] = []
    for row in rows:
        found = conn.execute(_SELECT_VERSION, (row.namespace, row.key)).fetchone()
        version, writer = (0, None)
        if found is not None:
            version = _checked(where, row.namespace, row.key, "version", count, found[0])
            writer = _checked(where, row.namespace, row.key, "writer", optional_text, found[1])
        if row.expected_version is not None and version != row.expected_version:
            raise StateConflictError(
                f"{where}: key {row.key!r} (namespace {row.namespace!r}) was expected at "
                f"version {row.expected_version} but is at version {version}, written by "
                f"{writer!r}; nothing of this save was stored"
            )
        conn.execute(_UPSERT, (row.namespace, row.key, row.blob, version + 1, row.writer))
        versions.append(version + 1)
    return versions


class SQLiteStateProvider:
    """Stores each value as JSON (orjson, never pickle) in one SQLite file, WAL mode.

    ``namespace`` lets several providers share one file without sharing keys.
    Values come back as plain JSON data (dicts, lists, numbers, strings);
    pydantic models are stored as their JSON form. It is a ``VersionedStateProvider``:
    every save adds 1 to the key's version (0 when nothing is stored; ``delete``
    forgets the version too), and ``save_versioned`` compares and swaps in one
    ``BEGIN IMMEDIATE`` transaction, so it is safe across processes sharing the file.
    A provider made by ``SQLiteBackend.provider()`` shares that backend's connection.
    """

    def __init__(self, path: str | Path, *, namespace: str = "default") -> None:
        self.path = Path(path)
        self.namespace = namespace
        self._serializer = OrjsonSerializer()
        self._worker = SQLiteWorker(self.path, STATE_TABLE, LAYOUT_VERSION, migrations=MIGRATIONS)
        self._owns_worker = True

    @classmethod
    def _on(cls, worker: SQLiteWorker, *, namespace: str) -> SQLiteStateProvider:
        """Return a provider using ``worker``'s connection, which its owner closes."""
        provider = cls.__new__(cls)
        provider.path = worker.path
        provider.namespace = namespace
        provider._serializer = OrjsonSerializer()
        provider._worker = worker
        provider._owns_worker = False
        return provider

    def uses(self, worker: SQLiteWorker) -> bool:
        """Whether this provider's calls go through ``worker``'s connection."""
        return self._worker is worker

    def row(self, write: Write[Any]) -> StateRow:
        """Serialize ``write`` for this namespace (``TypeError`` if JSON cannot hold it)."""
        blob = self._serializer.dumps(write.data)
        return StateRow(self.namespace, write.key, blob, write.expected_version, write.writer)

    def describe(self) -> str:
        """Name this store in messages."""
        return f"SQLite state provider at {self.path}"

    async def _run(self, what: str, fn: Callable[[sqlite3.Connection], R]) -> R:
        try:
            # Every call works on a few keys: quick, inline when the connection is free.
            return await self._worker.run(fn, quick=True)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"{self.describe()}: {what} failed: {exc}") from exc

    async def load(self, key: str) -> Any | None:
        """Return the value stored under ``key``, or ``None``."""
        return (await self.load_versioned(key)).value

    async def load_versioned(self, key: str) -> Versioned[Any]:
        """Return the value, version and writer under ``key`` (version 0 if none)."""
        row = await self._run(
            f"loading {key!r}", lambda c: c.execute(_SELECT, (self.namespace, key)).fetchone()
        )
        if row is None:
            return Versioned(value=None, version=0)
        where, namespace = self.describe(), self.namespace
        return Versioned(
            value=_stored_value(where, namespace, key, row[0]),
            version=_checked(where, namespace, key, "version", count, row[1]),
            writer=_checked(where, namespace, key, "writer", optional_text, row[2]),
        )

    async def save(self, key: str, data: Any) -> None:
        """Store ``data`` under ``key`` (``TypeError`` if it is not JSON-serializable)."""
        rows = [StateRow(self.namespace, key, self._serializer.dumps(data), None, None)]
        where = self.describe()
        await self._run(
            f"saving {key!r}", lambda c: in_transaction(c, lambda c: write_rows(c, rows, where))
        )

    async def save_versioned(self, writes: Sequence[Write[Any]]) -> list[int]:
        """Apply ``writes`` in order, all or none, in one transaction; return the new versions.

        Raises ``StateConflictError`` naming the key, the expected and found versions
        and the found writer when a write's ``expected_version`` is not the stored one.
        """
        rows = [self.row(write) for write in writes]
        if not rows:
            return []
        where = self.describe()
        keys = ", ".join(repr(w.key) for w in writes)
        return await self._run(
            f"saving {keys}", lambda c: in_transaction(c, lambda c: write_rows(c, rows, where))
        )

    async def delete(self, key: str) -> None:
        """Remove the value under ``key``, if any (its version goes back to 0)."""
        await self._run(
            f"deleting {key!r}",
            lambda c: transaction(c, [(_DELETE, (self.namespace, key))]),
        )

    async def close(self) -> None:
        """Close the connection (a later call opens it again); a shared one is the backend's."""
        if self._owns_worker:
            await self._worker.close()
