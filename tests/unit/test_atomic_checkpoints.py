"""SQLiteBackend commits a co-located provider's writes and a step record in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flujo.domain.errors import StateBackendError, StateConflictError, StateSaveError
from flujo.domain.interfaces import AtomicCheckpoints, Versioned, Write
from flujo.providers import InMemoryStateProvider, SQLiteStateProvider
from flujo.state import InMemoryBackend, SQLiteBackend
from flujo.testing import make_run, make_step


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
async def backend(path: Path) -> AsyncIterator[SQLiteBackend]:
    backend = SQLiteBackend(path)
    await backend.save_run(make_run("r1"))
    yield backend
    await backend.close()


def stored_state(path: Path) -> list[tuple[str, str, int, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT namespace, key, version, writer FROM flujo_state ORDER BY namespace, key"
        ).fetchall()
    finally:
        conn.close()


def test_only_the_sqlite_backend_offers_atomic_checkpoints(tmp_path: Path) -> None:
    assert isinstance(SQLiteBackend(tmp_path / "x.db"), AtomicCheckpoints)
    assert not isinstance(InMemoryBackend(), AtomicCheckpoints)


async def test_holds_only_providers_made_by_the_backend(
    backend: SQLiteBackend, path: Path, tmp_path: Path
) -> None:
    other = SQLiteBackend(tmp_path / "other.db")
    standalone = SQLiteStateProvider(path)  # same file, its own connection
    try:
        assert backend.holds(backend.provider())
        assert backend.holds(backend.provider(namespace="kg"))
        assert not backend.holds(standalone)
        assert not backend.holds(other.provider())
        assert not backend.holds(InMemoryStateProvider())
        assert not backend.holds(object())
    finally:
        await standalone.close()
        await other.close()


async def test_checkpoint_with_writes_the_record_and_the_values(
    backend: SQLiteBackend, path: Path
) -> None:
    notes, graph = backend.provider(), backend.provider(namespace="kg")
    await notes.save("log", ["old"])
    step = make_step("r1", 0)

    versions = await backend.checkpoint_with(
        step,
        [
            (notes, Write("log", ["old", "new"], 1, "r1/step0")),
            (graph, Write("g", {"n": 1}, 0, "r1/step0")),
        ],
    )

    assert versions == [2, 1]
    assert list(await backend.load_steps("r1")) == [step]
    loaded = await backend.load_run("r1")
    assert loaded is not None and loaded.step_index == 1
    assert await notes.load_versioned("log") == Versioned(["old", "new"], 2, "r1/step0")
    standalone = SQLiteStateProvider(path, namespace="kg")  # the same table, seen from outside
    try:
        assert await standalone.load_versioned("g") == Versioned({"n": 1}, 1, "r1/step0")
    finally:
        await standalone.close()


async def test_a_conflict_writes_neither_the_record_nor_any_value(
    backend: SQLiteBackend, path: Path
) -> None:
    provider = backend.provider()
    await provider.save_versioned([Write("taken", "kept", 0, "r0/step0")])
    await backend.checkpoint(make_step("r1", 0, pending=True))
    before = stored_state(path)

    with pytest.raises(StateConflictError, match=r"'taken'.*version 0.*version 1.*'r0/step0'"):
        await backend.checkpoint_with(
            make_step("r1", 0),
            [
                (provider, Write("fresh", "no", 0, "r1/step0")),
                (provider, Write("taken", "no", 0, "r1/step0")),
            ],
        )

    assert list(await backend.load_steps("r1")) == [make_step("r1", 0, pending=True)]
    assert stored_state(path) == before == [("default", "taken", 1, "r0/step0")]
    loaded = await backend.load_run("r1")
    assert loaded is not None and loaded.step_index == 0


async def test_a_value_json_cannot_hold_writes_nothing(backend: SQLiteBackend, path: Path) -> None:
    provider = backend.provider()
    with pytest.raises(StateSaveError, match=r"'k'.*cannot be stored as JSON") as caught:
        await backend.checkpoint_with(
            make_step("r1", 0), [(provider, Write("k", object(), None, "w"))]
        )
    assert isinstance(caught.value.__cause__, TypeError)
    assert list(await backend.load_steps("r1")) == []
    assert stored_state(path) == []


async def test_a_provider_the_backend_does_not_hold_is_refused(
    backend: SQLiteBackend, path: Path
) -> None:
    held, foreign = backend.provider(), InMemoryStateProvider[Any]()
    with pytest.raises(StateBackendError, match="does not share the connection"):
        await backend.checkpoint_with(
            make_step("r1", 0), [(held, Write("a", 1, 0, "w")), (foreign, Write("b", 1, 0, "w"))]
        )
    assert list(await backend.load_steps("r1")) == []
    assert stored_state(path) == [] and foreign.data == {}


async def test_checkpoint_with_no_writes_is_a_checkpoint(backend: SQLiteBackend) -> None:
    assert await backend.checkpoint_with(make_step("r1", 0), []) == []
    assert list(await backend.load_steps("r1")) == [make_step("r1", 0)]


async def test_the_backend_owns_the_shared_connection(backend: SQLiteBackend) -> None:
    provider = backend.provider()
    await provider.save("k", 1)
    await provider.close()  # does nothing: the backend's connection stays open
    assert await backend.load_run("r1") is not None
    await backend.close()  # the next call of either opens the connection again
    assert await provider.load_versioned("k") == Versioned(1, 1, None)
    assert await backend.load_run("r1") is not None


async def test_a_layout_1_file_holding_both_kinds_of_table_migrates_whoever_opens_it(
    path: Path,
) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE flujo_runs (run_id TEXT PRIMARY KEY, pipeline_name TEXT NOT NULL,"
        " pipeline_version TEXT NOT NULL, status TEXT NOT NULL, step_index INTEGER NOT NULL,"
        " input BLOB NOT NULL, context BLOB NOT NULL, created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL, error TEXT, pause_message TEXT,"
        " schema_version INTEGER NOT NULL);"
        "CREATE TABLE flujo_steps (run_id TEXT NOT NULL, idx INTEGER NOT NULL,"
        " name TEXT NOT NULL, success INTEGER NOT NULL, result BLOB NOT NULL,"
        " context BLOB NOT NULL, recorded_at REAL NOT NULL, PRIMARY KEY (run_id, idx))"
        " WITHOUT ROWID;"
        "CREATE TABLE flujo_state (namespace TEXT NOT NULL, key TEXT NOT NULL,"
        " value BLOB NOT NULL, PRIMARY KEY (namespace, key));"
        "INSERT INTO flujo_state VALUES ('default', 'k', '[1]');"
        "PRAGMA user_version = 1;"
    )
    conn.close()
    standalone = SQLiteStateProvider(path)  # the provider opens the file first
    try:
        assert await standalone.load_versioned("k") == Versioned([1], 1, None)
    finally:
        await standalone.close()
    backend = SQLiteBackend(path)
    try:
        await backend.save_run(make_run("r1"))
        await backend.checkpoint(make_step("r1", 0, pending=True))
        assert [s.pending for s in await backend.load_steps("r1")] == [True]
    finally:
        await backend.close()
