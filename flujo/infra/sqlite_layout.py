"""The tables of flujo's SQLite files, and how a file of an older layout is brought up to date.

One file may hold the run-state tables (``SQLiteBackend``) and the table of state
providers (``SQLiteStateProvider``), and ``PRAGMA user_version`` is one number per
file, so it numbers the layout of the whole file: a migration brings every flujo
table the file holds to the new layout, adding only the columns that are missing.

Layout 1: ``flujo_runs``, ``flujo_steps`` and ``flujo_state (namespace, key, value)``.
Layout 2: ``flujo_steps.pending``; ``flujo_state.version`` and ``flujo_state.writer``.
Layout 3: ``flujo_runs.owner``, ``flujo_runs.lease_until`` (the run's lease) and
``flujo_runs.owed`` (saves a run still owes its providers).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping

__all__ = ["LAYOUT_VERSION", "MIGRATIONS", "RUN_TABLES", "STATE_TABLE"]

LAYOUT_VERSION = 3
"""The layout this flujo writes; a file of an older layout is migrated in place."""

RUN_TABLES = """
CREATE TABLE IF NOT EXISTS flujo_runs (
    run_id TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    pipeline_version TEXT NOT NULL,
    status TEXT NOT NULL,
    step_index INTEGER NOT NULL,
    input BLOB NOT NULL,
    context BLOB NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    error TEXT,
    pause_message TEXT,
    schema_version INTEGER NOT NULL,
    owner TEXT,
    lease_until REAL,
    owed BLOB
);
CREATE INDEX IF NOT EXISTS flujo_runs_by_update ON flujo_runs (updated_at);
CREATE TABLE IF NOT EXISTS flujo_steps (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    success INTEGER NOT NULL,
    result BLOB NOT NULL,
    context BLOB NOT NULL,
    recorded_at REAL NOT NULL,
    pending INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
"""
"""The run headers and step records of ``SQLiteBackend``."""

STATE_TABLE = """
CREATE TABLE IF NOT EXISTS flujo_state (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    writer TEXT,
    PRIMARY KEY (namespace, key)
);
"""
"""The values of ``SQLiteStateProvider``: one row per key, with its version and writer tag."""


def _columns(conn: sqlite3.Connection, table: str) -> set[str] | None:
    """Return the column names of ``table``, or ``None`` if the file has no such table."""
    rows = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return {row[1] for row in rows} if rows else None


def _to_layout_2(conn: sqlite3.Connection) -> None:
    """Add the pending flag of step records and the version and writer of provider values."""
    steps = _columns(conn, "flujo_steps")
    if steps is not None and "pending" not in steps:
        conn.execute("ALTER TABLE flujo_steps ADD COLUMN pending INTEGER NOT NULL DEFAULT 0")
    state = _columns(conn, "flujo_state")
    if state is not None and "version" not in state:
        conn.execute("ALTER TABLE flujo_state ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
        # Version 0 means "nothing stored": a value already there is at version 1.
        conn.execute("UPDATE flujo_state SET version = 1")
    if state is not None and "writer" not in state:
        conn.execute("ALTER TABLE flujo_state ADD COLUMN writer TEXT")


def _to_layout_3(conn: sqlite3.Connection) -> None:
    """Add the lease of a run header (nobody owns a run stored before) and its owed saves."""
    runs = _columns(conn, "flujo_runs")
    if runs is None:
        return
    for column, kind in (("owner", "TEXT"), ("lease_until", "REAL"), ("owed", "BLOB")):
        if column not in runs:
            conn.execute(f"ALTER TABLE flujo_runs ADD COLUMN {column} {kind}")


MIGRATIONS: Mapping[int, Callable[[sqlite3.Connection], None]] = {
    1: _to_layout_2,
    2: _to_layout_3,
}
"""``MIGRATIONS[n]`` takes a file from layout ``n`` to ``n + 1``, in the caller's transaction."""
