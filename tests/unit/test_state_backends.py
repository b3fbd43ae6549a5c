"""SQLite run-state specifics (the shared contract runs in test_backend_contracts.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flujo.domain.errors import StateBackendError
from flujo.domain.interfaces import RunRecord, StepRecord
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
