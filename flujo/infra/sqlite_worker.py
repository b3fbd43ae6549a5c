"""One SQLite connection served by one dedicated worker thread.

Each call runs a whole function (usually one transaction) on the worker, so a
checkpoint costs one thread hop and concurrent callers never interleave inside
a transaction. The worker belongs to a ``ThreadPoolExecutor``, whose idle
threads end at interpreter exit even if the owner was never closed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

__all__ = ["SQLiteWorker", "transaction"]

R = TypeVar("R")


class SQLiteWorker:
    """Runs functions of a ``sqlite3.Connection`` on its own thread, opening it lazily."""

    def __init__(self, path: Path, schema: str, version: int) -> None:
        self.path = path
        self._schema = schema
        self._version = version
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.executescript(self._schema)
                found = conn.execute("PRAGMA user_version").fetchone()[0]
                if found == 0:
                    conn.execute(f"PRAGMA user_version = {int(self._version)}")
                elif found != self._version:
                    raise sqlite3.DatabaseError(
                        f"the file has layout version {found}, this flujo reads version "
                        f"{self._version}; use another file"
                    )
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _call(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        return fn(self._open())

    async def run(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        """Run ``fn(connection)`` on the worker thread and return its result."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flujo-sqlite")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    async def close(self) -> None:
        """Close the connection and stop the thread; a later ``run`` starts afresh."""
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def close_connection() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        await asyncio.get_running_loop().run_in_executor(executor, close_connection)
        executor.shutdown(wait=False)


def transaction(conn: sqlite3.Connection, statements: list[tuple[str, tuple[object, ...]]]) -> None:
    """Run ``statements`` as one transaction, rolling back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            conn.execute(sql, params)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
