"""Run-state backends: the same contract for the in-memory and the SQLite backend."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flujo.domain.errors import StateBackendError
from flujo.domain.interfaces import RunRecord, StateBackend, StepRecord
from flujo.infra.state.memory import InMemoryBackend
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
        result=b'{"output":' + str(index).encode() + b"}",
        context=b'{"after":' + str(index).encode() + b"}",
    )


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateBackend]:
    made: StateBackend = (
        InMemoryBackend() if request.param == "memory" else SQLiteBackend(tmp_path / "x.db")
    )
    yield made
    await made.close()


async def test_save_and_load_run_roundtrip(backend: StateBackend) -> None:
    record = run_record(error="boom", pause_message="waiting", status="paused", step_index=2)
    await backend.save_run(record)
    loaded = await backend.load_run("r1")
    assert loaded == record
    assert isinstance(loaded, RunRecord)
    assert isinstance(loaded.input, bytes) and isinstance(loaded.context, bytes)


async def test_save_run_replaces_the_header(backend: StateBackend) -> None:
    await backend.save_run(run_record())
    newer = run_record(status="completed", step_index=3, updated_at=200.0)
    await backend.save_run(newer)
    assert await backend.load_run("r1") == newer


async def test_load_run_of_an_unknown_id_is_none(backend: StateBackend) -> None:
    assert await backend.load_run("missing") is None
    assert list(await backend.load_steps("missing")) == []


async def test_checkpoint_appends_steps_in_order_and_moves_the_header(
    backend: StateBackend,
) -> None:
    header = run_record()
    await backend.save_run(header)
    for index in range(3):
        await backend.checkpoint(
            step_record("r1", index),
            status="running",
            step_index=index + 1,
            updated_at=101.0 + index,
        )
    steps = await backend.load_steps("r1")
    assert [s.index for s in steps] == [0, 1, 2]
    assert [s.name for s in steps] == ["s0", "s1", "s2"]
    assert list(steps) == [step_record("r1", i) for i in range(3)]
    loaded = await backend.load_run("r1")
    assert loaded is not None
    assert (loaded.status, loaded.step_index, loaded.updated_at) == ("running", 3, 103.0)
    # what the checkpoint does not move stays as saved
    assert (loaded.input, loaded.context, loaded.created_at) == (
        header.input,
        header.context,
        header.created_at,
    )


async def test_checkpoint_can_mark_a_run_failed(backend: StateBackend) -> None:
    await backend.save_run(run_record())
    await backend.checkpoint(step_record("r1", 0), status="failed", step_index=0, updated_at=5.0)
    loaded = await backend.load_run("r1")
    assert loaded is not None and loaded.status == "failed" and loaded.step_index == 0


async def test_steps_of_different_runs_are_kept_apart(backend: StateBackend) -> None:
    await backend.save_run(run_record("a"))
    await backend.save_run(run_record("b"))
    await backend.checkpoint(step_record("a", 0), status="running", step_index=1, updated_at=1)
    await backend.checkpoint(
        step_record("b", 0, "other"), status="running", step_index=1, updated_at=1
    )
    await backend.checkpoint(step_record("a", 1), status="running", step_index=2, updated_at=2)
    assert [s.name for s in await backend.load_steps("a")] == ["s0", "s1"]
    assert [s.name for s in await backend.load_steps("b")] == ["other"]


async def test_concurrent_checkpoints_are_all_stored(backend: StateBackend) -> None:
    ids = [f"run-{i}" for i in range(10)]
    await asyncio.gather(*(backend.save_run(run_record(i)) for i in ids))
    await asyncio.gather(
        *(
            backend.checkpoint(step_record(i, 0), status="running", step_index=1, updated_at=2)
            for i in ids
        )
    )
    for run_id in ids:
        assert [s.run_id for s in await backend.load_steps(run_id)] == [run_id]


async def test_delete_run_removes_header_and_steps(backend: StateBackend) -> None:
    await backend.save_run(run_record("gone"))
    await backend.save_run(run_record("kept"))
    await backend.checkpoint(step_record("gone", 0), status="running", step_index=1, updated_at=1)
    await backend.checkpoint(step_record("kept", 0), status="running", step_index=1, updated_at=1)
    await backend.delete_run("gone")
    assert await backend.load_run("gone") is None
    assert list(await backend.load_steps("gone")) == []
    assert await backend.load_run("kept") is not None
    assert len(await backend.load_steps("kept")) == 1


async def test_delete_of_an_unknown_run_is_not_an_error(backend: StateBackend) -> None:
    await backend.delete_run("never-existed")


async def test_close_then_reuse(backend: StateBackend) -> None:
    await backend.save_run(run_record("before"))
    await backend.close()
    assert await backend.load_run("before") == run_record("before")
    await backend.save_run(run_record("after"))
    await backend.close()
    await backend.close()  # closing twice is harmless
    assert await backend.load_run("after") == run_record("after")


async def test_list_runs_newest_first_with_filter_and_limit(backend: StateBackend) -> None:
    await backend.save_run(run_record("old", updated_at=1.0, status="completed"))
    await backend.save_run(run_record("mid", updated_at=2.0, status="failed"))
    await backend.save_run(run_record("new", updated_at=3.0, status="completed"))
    everything = await backend.list_runs(status=None, limit=10)
    assert [r.run_id for r in everything] == ["new", "mid", "old"]
    completed = await backend.list_runs(status="completed", limit=10)
    assert [r.run_id for r in completed] == ["new", "old"]
    assert [r.run_id for r in await backend.list_runs(status=None, limit=1)] == ["new"]


async def test_prune_deletes_old_runs_in_the_given_statuses(backend: StateBackend) -> None:
    await backend.save_run(run_record("old-done", updated_at=1.0, status="completed"))
    await backend.save_run(run_record("old-paused", updated_at=1.0, status="paused"))
    await backend.save_run(run_record("new-done", updated_at=50.0, status="completed"))
    await backend.checkpoint(
        step_record("old-done", 0), status="completed", step_index=1, updated_at=1.0
    )
    removed = await backend.prune(older_than=10.0, statuses=["completed"])
    assert removed == 1
    assert await backend.load_run("old-done") is None
    assert list(await backend.load_steps("old-done")) == []
    assert await backend.load_run("old-paused") is not None
    assert await backend.load_run("new-done") is not None


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
    await first.checkpoint(step_record("r1", 0), status="running", step_index=1, updated_at=2.0)
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
