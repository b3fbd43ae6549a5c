"""A state provider storing JSON values in an embedded SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from flujo.domain.errors import StateError
from flujo.infra.serialization import OrjsonSerializer
from flujo.infra.sqlite_worker import SQLiteWorker, transaction

__all__ = ["SQLiteStateProvider"]

R = TypeVar("R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flujo_state (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""
_UPSERT = "INSERT OR REPLACE INTO flujo_state (namespace, key, value) VALUES (?, ?, ?)"
_DELETE = "DELETE FROM flujo_state WHERE namespace = ? AND key = ?"


class SQLiteStateProvider:
    """Stores each value as JSON (orjson, never pickle) in one SQLite file, WAL mode.

    ``namespace`` lets several providers share one file without sharing keys.
    Values come back as plain JSON data (dicts, lists, numbers, strings);
    pydantic models are stored as their JSON form.
    """

    def __init__(self, path: str | Path, *, namespace: str = "default") -> None:
        self.path = Path(path)
        self.namespace = namespace
        self._serializer = OrjsonSerializer()
        self._worker = SQLiteWorker(self.path, _SCHEMA, version=1)

    async def _run(self, what: str, fn: Callable[[sqlite3.Connection], R]) -> R:
        try:
            return await self._worker.run(fn)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"SQLite state provider at {self.path}: {what} failed: {exc}") from exc

    async def load(self, key: str) -> Any | None:
        """Return the value stored under ``key``, or ``None``."""
        row = await self._run(
            f"loading {key!r}",
            lambda c: c.execute(
                "SELECT value FROM flujo_state WHERE namespace = ? AND key = ?",
                (self.namespace, key),
            ).fetchone(),
        )
        return None if row is None else orjson.loads(row[0])

    async def save(self, key: str, data: Any) -> None:
        """Store ``data`` under ``key`` (``TypeError`` if it is not JSON-serializable)."""
        blob = self._serializer.dumps(data)
        await self._run(
            f"saving {key!r}",
            lambda c: transaction(
                c,
                [
                    (
                        _UPSERT,
                        (self.namespace, key, blob),
                    )
                ],
            ),
        )

    async def delete(self, key: str) -> None:
        """Remove the value under ``key``, if any."""
        await self._run(
            f"deleting {key!r}",
            lambda c: transaction(
                c,
                [
                    (
                        "DELETE FROM flujo_state WHERE namespace = ? AND key = ?",
                        (self.namespace, key),
                    )
                ],
            ),
        )

    async def close(self) -> None:
        """Close the connection; a later call opens it again."""
        await self._worker.close()
