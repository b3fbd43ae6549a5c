"""SQLite run-state specifics (the shared contract runs in test_backend_contracts.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flujo.domain.errors import StateBackendError
from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.infra.sqlite_layout import LAYOUT_VERSION
from flujo.infra.state.sqlite import SQLiteBackend


def run_record(run_id: str = "r1", **changes: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "pipeline_name": "pipe",
        "pipeline_version": "v1",
        "status": "running",
        "step_index": 0,
        "input": b'{"in":1}',
        "context": b'{"run_id":"' + run_id.encode() + b'"}',
        "created_at": 100.0,
        "updated_at": 100.0,
    }
    fields.update(changes)
    return RunRecord(**fields)


def step_record(run_id: str, index: int, name: str | None = None) -> StepRecord:
    return StepRecord(
        run_id=run_id,
        index=index,
        name=name or f"s{index}",
        success=True,
        result=b'{"output":' + str(index).encode() + b"}",
        context=b'{"after":' + str(index).encode() + b"}",
        recorded_at=2.0,
    )


# --- SQLite specifics --------------------------------------------------------------------


async def test_sqlite_uses_wal_journal_mode(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    backend = SQLiteBackend(path)
    try:
        await backend.save_run(run_record())
    finally:
        await backend.close()
    conn = sqlite3.connect(path)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    assert mode.lower() == "wal"


async def test_sqlite_creates_missing_nested_folders(tmp_path: Path) -> None:
    path = tmp_path / "does" / "not" / "exist" / "x.db"
    backend = SQLiteBackend(path)
    assert not path.parent.exists()  # nothing is touched before first use
    try:
        await backend.save_run(run_record())
        assert path.is_file()
        assert await backend.load_run("r1") == run_record()
    finally:
        await backend.close()


async def test_sqlite_data_survives_a_new_backend_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    first = SQLiteBackend(path)
    await first.save_run(run_record())
    await first.checkpoint(step_record("r1", 0))
    await first.close()
    second = SQLiteBackend(path)
    try:
        loaded = await second.load_run("r1")
        assert loaded is not None and loaded.step_index == 1
        assert list(await second.load_steps("r1")) == [step_record("r1", 0)]
    finally:
        await second.close()


async def test_sqlite_failure_is_a_state_backend_error(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path)  # a folder, not a database file
    try:
        with pytest.raises(StateBackendError, match=str(tmp_path.name)):
            await backend.save_run(run_record())
    finally:
        await backend.close()


async def test_sqlite_file_of_another_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    backend = SQLiteBackend(path)
    try:
        with pytest.raises(StateBackendError, match="layout version 99"):
            await backend.load_run("r1")
    finally:
        await backend.close()


# The tables of layout 1, as flujo made them before step records could be pending.
LAYOUT_1 = """
CREATE TABLE flujo_runs (
    run_id TEXT PRIMARY KEY, pipeline_name TEXT NOT NULL, pipeline_version TEXT NOT NULL,
    status TEXT NOT NULL, step_index INTEGER NOT NULL, input BLOB NOT NULL,
    context BLOB NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, error TEXT,
    pause_message TEXT, schema_version INTEGER NOT NULL
);
CREATE INDEX flujo_runs_by_update ON flujo_runs (updated_at);
CREATE TABLE flujo_steps (
    run_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, success INTEGER NOT NULL,
    result BLOB NOT NULL, context BLOB NOT NULL, recorded_at REAL NOT NULL,
    PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


def write_layout_1_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(LAYOUT_1)
        conn.execute(
            "INSERT INTO flujo_runs VALUES ('r1', 'pipe', 'v1', 'running', 0, ?, ?, 100.0, 100.0,"
            " NULL, NULL, 1)",
            (b'{"in":1}', b'{"run_id":"r1"}'),
        )
        conn.execute(
            "INSERT INTO flujo_steps VALUES ('r1', 0, 's0', 1, ?, ?, 2.0)",
            (b'{"output":0}', b'{"after":0}'),
        )
        conn.commit()
    finally:
        conn.close()


async def test_sqlite_file_of_layout_1_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    write_layout_1_file(path)
    backend = SQLiteBackend(path)
    try:
        assert await backend.load_run("r1") == run_record(step_index=1, updated_at=100.0)
        assert list(await backend.load_steps("r1")) == [step_record("r1", 0)]
        await backend.checkpoint(dataclasses.replace(step_record("r1", 1), pending=True))
        loaded = await backend.load_run("r1")
        assert loaded is not None and loaded.step_index == 1
        assert [s.pending for s in await backend.load_steps("r1")] == [False, True]
    finally:
        await backend.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (LAYOUT_VERSION,)
    finally:
        conn.close()
    reopened = SQLiteBackend(path)  # a migrated file opens as any file of layout 2
    try:
        assert len(await reopened.load_steps("r1")) == 2
    finally:
        await reopened.close()


def test_sqlite_layout_1_file_opened_by_two_backends_at_once(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    write_layout_1_file(path)
    start = threading.Barrier(4)

    def open_and_load() -> list[StepRecord]:
        async def load() -> list[StepRecord]:
            backend = SQLiteBackend(path)
            try:
                start.wait(timeout=10)
                return list(await backend.load_steps("r1"))
            finally:
                await backend.close()

        return asyncio.run(load())

    with ThreadPoolExecutor(max_workers=4) as pool:
        loaded = [f.result(timeout=30) for f in [pool.submit(open_and_load) for _ in range(4)]]
    assert loaded == [[step_record("r1", 0)]] * 4
