"""One SQLite connection on a worker thread; quick calls run inline when it is free.

Nothing that can block runs on the event loop. The connection is opened on the
worker thread (opening may wait for a locked file, or migrate it), and so are
calls that grow with the store (pruning, listing), waiting for a lock (the worker
retries for up to ``timeout_s``), WAL checkpoints (which may fsync) and closing.

A checkpoint, though, is a few tens of microseconds of SQLite work; handing it
to a thread and waking the event loop afterwards costs more than the work. So a
call its caller marks ``quick`` (bounded work: one run's row, one key) runs
inline when the connection is open and free: it cannot wait there, since the
connection's busy timeout is 0 and a locked file sends the call to the worker.

The connection serves every event loop and thread at once (``runner.run()`` from
several threads): one lock guards it, and the worker belongs to a
``ThreadPoolExecutor`` whose idle thread ends at interpreter exit even if the
owner was never closed. ``close()`` may be called while other loops' calls are
under way: those finish first, and a later call opens the connection again.

A file whose ``PRAGMA user_version`` is older than the owner's layout is migrated
in place, in one transaction, by the owner's ``migrations``; a newer one is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from flujo.infra.private_files import prepare_private_file

__all__ = ["SQLiteWorker", "in_transaction", "transaction"]

R = TypeVar("R")

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_CHECKPOINT_EVERY = 1000
"""Calls between two WAL checkpoints (about what SQLite's own autocheckpoint would do).

Automatic checkpoints are off because they may fsync on the event loop; this one runs on
the worker, holding the connection so that it completes and the WAL starts over."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    # Extended codes (SQLITE_BUSY_SNAPSHOT, _RECOVERY, ...) keep the primary code in the low byte.
    return code is not None and code & 0xFF in _BUSY


class SQLiteWorker:
    """Runs functions of one ``sqlite3.Connection``, opened lazily, one call at a time."""

    def __init__(
        self,
        path: Path,
        schema: str,
        version: int,
        timeout_s: float = 30.0,
        *,
        migrations: Mapping[int, Callable[[sqlite3.Connection], None]] | None = None,
    ) -> None:
        self.path = path
        self._schema = schema
        self._version = version
        self._migrations = dict(migrations or {})
        self._timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        """Held by whoever uses the connection, on the worker or inline."""
        self._guard = threading.Lock()
        """Makes handing work to the executor and replacing it (in ``close``) one step."""
        self._calls = 0
        self._closer: weakref.finalize[Any, Any] | None = None

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            prepare_private_file(self.path)  # folders 0700, the file 0600
            # timeout=0: a locked file fails fast, and the caller decides how to wait.
            conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            try:
                self._setup(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            # A caller that never closes (no aclose()) leaves this to the collector: the
            # connection is closed when the worker goes, without a ResourceWarning.
            self._closer = weakref.finalize(self, _close_quietly, conn)
        return self._conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint=0")
                conn.executescript(self._schema)
                self._check_layout(conn)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def _check_layout(self, conn: sqlite3.Connection) -> None:
        """Stamp a new file, migrate an older layout in place, refuse any other."""
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found == self._version:
            return
        if found == 0:
            conn.execute(f"PRAGMA user_version = {int(self._version)}")
            return
        if not 0 < found < self._version or any(
            v not in self._migrations for v in range(found, self._version)
        ):
            raise sqlite3.DatabaseError(
                f"the file has layout version {found}, this flujo reads version "
                f"{self._version}; use another file"
            )

        def migrate(conn: sqlite3.Connection) -> None:
            # Read again under the write lock: another connection may have migrated it.
            now = conn.execute("PRAGMA user_version").fetchone()[0]
            if now >= self._version:
                return
            for version in range(now, self._version):
                self._migrations[version](conn)
            conn.execute(f"PRAGMA user_version = {int(self._version)}")

        in_transaction(conn, migrate)

    def _submit(self, fn: Callable[..., R], *args: object) -> Future[R]:
        with self._guard:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="flujo-sqlite"
                )
            return self._executor.submit(fn, *args)

    async def run(self, fn: Callable[[sqlite3.Connection], R], *, quick: bool = False) -> R:
        """Run ``fn(connection)`` on the worker thread, or inline if ``quick`` and possible.

        ``quick`` promises bounded work (a statement on one run's rows or one key):
        it runs inline when the connection is open and no other call holds it.
        """
        if quick and self._conn is not None and self._lock.acquire(blocking=False):
            try:
                conn = self._conn  # read again under the lock: a close may have won
                if conn is not None:
                    try:
                        result = fn(conn)
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc):
                            raise
                    else:
                        self._count_call()
                        return result
            finally:
                self._lock.release()
        return await asyncio.wrap_future(self._submit(self._call_waiting, fn))

    def _call_waiting(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        deadline = time.monotonic() + self._timeout_s
        delay = 0.001
        with self._lock:
            conn = self._open()
            while True:
                try:
                    result = fn(conn)
                    break
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() > deadline:
                        raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        self._count_call()
        return result

    def _count_call(self) -> None:
        self._calls += 1
        if self._calls % _CHECKPOINT_EVERY == 0:
            self._submit(self._checkpoint_wal)

    def _checkpoint_wal(self) -> None:
        with self._lock:
            if self._conn is not None:
                # A passive checkpoint that cannot run now runs next time.
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def close(self) -> None:
        """Checkpoint the WAL, close the connection and stop the thread, all off the loop.

        Calls handed to the worker before it finish first; a later call opens the
        connection again on a new worker.
        """
        with self._guard:
            executor, self._executor = self._executor, None
        if executor is None:
            return  # the connection is only ever opened on a worker: none is open

        def close_connection() -> None:
            with self._lock:
                conn, self._conn = self._conn, None
                closer, self._closer = self._closer, None
                if closer is not None:
                    closer.detach()
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    conn.close()

        try:
            # Shielded: a cancelled close still closes, or the connection would outlive it.
            await asyncio.shield(asyncio.wrap_future(executor.submit(close_connection)))
        finally:
            executor.shutdown(wait=False)


def _close_quietly(conn: sqlite3.Connection) -> None:
    """Close a connection its owner left open (at collection or at interpreter exit)."""
    with contextlib.suppress(sqlite3.Error):
        conn.close()


def in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], R]) -> R:
    """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction, rolling back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def transaction(conn: sqlite3.Connection, statements: list[tuple[str, tuple[object, ...]]]) -> None:
    """Run ``statements`` as one transaction, rolling back on any error."""

    def run_all(conn: sqlite3.Connection) -> None:
        for sql, params in statements:
            conn.execute(sql, params)

    in_transaction(conn, run_all)
