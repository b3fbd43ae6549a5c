"""The built-in state providers: ``InMemoryStateProvider`` and ``SQLiteStateProvider``."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from flujo import ContextReference, Flujo, PipelineContext, StateProvider, Step
from flujo.domain.errors import StateConflictError
from flujo.domain.interfaces import Versioned, VersionedStateProvider, Write
from flujo.infra.sqlite_layout import LAYOUT_VERSION
from flujo.providers import InMemoryStateProvider, SQLiteStateProvider

NESTED = {
    "nodes": [{"id": 1, "label": "ä", "tags": ["x", "y"]}, {"id": 2, "weight": 0.5}],
    "meta": {"version": 3, "ok": True, "none": None},
}


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def open_provider(
    sqlite_path: Path,
) -> AsyncIterator[Callable[..., SQLiteStateProvider]]:
    """Make providers on the test's file; all of them are closed after the test."""
    made: list[SQLiteStateProvider] = []

    def make(namespace: str = "default", path: Path | None = None) -> SQLiteStateProvider:
        provider = SQLiteStateProvider(path or sqlite_path, namespace=namespace)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


def stored_rows(path: Path) -> list[tuple[str, str, bytes]]:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        rows = conn.execute("SELECT namespace, key, value FROM flujo_state").fetchall()
    conn.close()
    return rows


# --- InMemoryStateProvider ------------------------------------------------------


async def test_in_memory_load_of_a_missing_key_is_none() -> None:
    assert await InMemoryStateProvider().load("nope") is None


async def test_in_memory_roundtrip_overwrite_and_seed() -> None:
    provider: InMemoryStateProvider[Any] = InMemoryStateProvider({"seeded": [1]})

    assert await provider.load("seeded") == [1]
    await provider.save("k", NESTED)
    assert await provider.load("k") == NESTED
    await provider.save("k", {"replaced": True})
    assert await provider.load("k") == {"replaced": True}
    assert provider.loads == 3 and provider.saves == 2


async def test_in_memory_versions_beside_the_data_and_counters() -> None:
    value = ["by", "reference"]
    provider: InMemoryStateProvider[Any] = InMemoryStateProvider({"seeded": [1]})

    assert await provider.load_versioned("seeded") == Versioned([1], 1, None)
    assert await provider.save_versioned([Write("k", value, 0, "a"), Write("j", 2, 0, "w")]) == [
        1,
        1,
    ]
    assert (await provider.load_versioned("k")).value is value
    assert provider.data == {"seeded": [1], "k": value, "j": 2}
    with pytest.raises(StateConflictError):
        await provider.save_versioned([Write("j", 3, 1, "w"), Write("k", [], 0, "run/b")])
    assert (provider.loads, provider.saves) == (2, 2)  # a conflicting call stores nothing


async def test_in_memory_conflict_names_key_versions_and_writer() -> None:
    provider: InMemoryStateProvider[Any] = InMemoryStateProvider()
    await provider.save_versioned([Write("k", 1, 0, "run-1/step-a")])

    with pytest.raises(StateConflictError) as caught:
        await provider.save_versioned([Write("k", 2, 0, "run-2/step-a")])

    message = str(caught.value)
    assert "'k'" in message and "expected at version 0" in message
    assert "at version 1" in message and "'run-1/step-a'" in message


def test_built_in_providers_match_the_protocol(tmp_path: Path) -> None:
    for provider in (InMemoryStateProvider(), SQLiteStateProvider(tmp_path / "never-opened.db")):
        assert isinstance(provider, StateProvider)
        assert isinstance(provider, VersionedStateProvider)


# --- SQLiteStateProvider ----------------------------------------------------------


async def test_sqlite_load_of_a_missing_key_is_none(
    open_provider: Callable[..., SQLiteStateProvider],
) -> None:
    assert await open_provider().load("nope") is None


async def test_sqlite_roundtrip_of_nested_json(
    open_provider: Callable[..., SQLiteStateProvider],
) -> None:
    provider = open_provider()

    await provider.save("graph", NESTED)

    assert await provider.load("graph") == NESTED


async def test_sqlite_overwrite_replaces_the_value(
    open_provider: Callable[..., SQLiteStateProvider], sqlite_path: Path
) -> None:
    provider = open_provider()

    await provider.save("k", [1, 2])
    await provider.save("k", {"now": "a dict"})

    assert await provider.load("k") == {"now": "a dict"}
    assert len(stored_rows(sqlite_path)) == 1


async def test_sqlite_namespaces_isolate_keys_in_one_file(
    open_provider: Callable[..., SQLiteStateProvider], sqlite_path: Path
) -> None:
    alpha = open_provider("alpha")
    beta = open_provider("beta")

    await alpha.save("shared-key", "from alpha")
    assert await beta.load("shared-key") is None
    await beta.save("shared-key", "from beta")

    assert await alpha.load("shared-key") == "from alpha"
    assert await beta.load("shared-key") == "from beta"
    assert sorted((ns, key) for ns, key, _ in stored_rows(sqlite_path)) == [
        ("alpha", "shared-key"),
        ("beta", "shared-key"),
    ]


async def test_sqlite_file_uses_wal_journal_mode(
    open_provider: Callable[..., SQLiteStateProvider], sqlite_path: Path
) -> None:
    await open_provider().save("k", 1)

    conn = sqlite3.connect(sqlite_path)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    assert mode.lower() == "wal"


async def test_sqlite_stores_values_as_json_never_pickle(
    open_provider: Callable[..., SQLiteStateProvider], sqlite_path: Path
) -> None:
    await open_provider().save("graph", NESTED)

    [(namespace, key, blob)] = stored_rows(sqlite_path)
    assert (namespace, key) == ("default", "graph")
    raw = bytes(blob) if not isinstance(blob, str) else blob.encode()
    assert not raw.startswith(b"\x80")  # a pickle protocol 2+ header
    assert json.loads(raw) == NESTED


async def test_sqlite_rejects_values_json_cannot_hold(
    open_provider: Callable[..., SQLiteStateProvider], sqlite_path: Path
) -> None:
    provider = open_provider()
    await provider.save("k", "kept")

    with pytest.raises(TypeError):
        await provider.save("k", object())
    with pytest.raises(TypeError):
        await provider.save("other", {"fn": print})

    assert await provider.load("k") == "kept"
    assert await provider.load("other") is None


async def test_sqlite_close_then_reuse(
    open_provider: Callable[..., SQLiteStateProvider],
) -> None:
    provider = open_provider()
    await provider.save("k", [1])

    await provider.close()
    await provider.close()  # closing twice is harmless

    assert await provider.load("k") == [1]
    await provider.save("k", [1, 2])
    assert await provider.load("k") == [1, 2]


async def test_sqlite_values_outlive_the_provider_object(
    open_provider: Callable[..., SQLiteStateProvider],
) -> None:
    first = open_provider()
    await first.save("k", {"durable": True})
    await first.close()

    assert await open_provider().load("k") == {"durable": True}


async def test_sqlite_delete_removes_only_that_key(
    open_provider: Callable[..., SQLiteStateProvider],
) -> None:
    provider = open_provider()
    await provider.save("a", 1)
    await provider.save("b", 2)

    await provider.delete("a")
    await provider.delete("never-there")

    assert await provider.load("a") is None
    assert await provider.load("b") == 2


async def test_sqlite_conflict_names_key_versions_and_writer(
    open_provider: Callable[..., SQLiteStateProvider], sqlite_path: Path
) -> None:
    provider = open_provider("ns")
    await provider.save_versioned([Write("k", 1, 0, "run-1/step-a")])

    with pytest.raises(StateConflictError) as caught:
        await provider.save_versioned([Write("other", 1, 0, "w"), Write("k", 2, 0, "run-2/a")])

    message = str(caught.value)
    assert str(sqlite_path) in message and "'k'" in message and "'ns'" in message
    assert "expected at version 0" in message and "at version 1" in message
    assert "'run-1/step-a'" in message
    assert await provider.load("other") is None


async def test_sqlite_versions_are_per_namespace(
    open_provider: Callable[..., SQLiteStateProvider],
) -> None:
    alpha, beta = open_provider("alpha"), open_provider("beta")
    await alpha.save("k", "a1")
    await alpha.save("k", "a2")

    assert await beta.save_versioned([Write("k", "b1", 0, "beta")]) == [1]
    assert await alpha.load_versioned("k") == Versioned("a2", 2, None)


async def test_sqlite_delete_forgets_the_version(
    open_provider: Callable[..., SQLiteStateProvider],
) -> None:
    provider = open_provider()
    await provider.save_versioned([Write("k", 1, 0, "w")])
    await provider.delete("k")

    assert await provider.load_versioned("k") == Versioned(None, 0, None)


async def test_sqlite_unserializable_write_stores_nothing(
    open_provider: Callable[..., SQLiteStateProvider],
) -> None:
    provider = open_provider()
    with pytest.raises(TypeError):
        await provider.save_versioned([Write("a", 1, 0, "w"), Write("b", object(), 0, "w")])

    assert await provider.load_versioned("a") == Versioned(None, 0, None)


def write_layout_1_file(path: Path) -> None:
    """Make a provider file as flujo wrote it before values had versions."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(
            "CREATE TABLE flujo_state (namespace TEXT NOT NULL, key TEXT NOT NULL,"
            " value BLOB NOT NULL, PRIMARY KEY (namespace, key)); PRAGMA user_version = 1;"
        )
        conn.execute(
            "INSERT INTO flujo_state VALUES ('default', 'graph', ?)", (json.dumps(NESTED),)
        )
        conn.commit()
    finally:
        conn.close()


async def test_sqlite_file_of_layout_1_is_migrated_in_place(
    open_provider: Callable[..., SQLiteStateProvider], sqlite_path: Path
) -> None:
    write_layout_1_file(sqlite_path)
    provider = open_provider()

    assert await provider.load("graph") == NESTED
    assert await provider.load_versioned("graph") == Versioned(NESTED, 1, None)
    assert await provider.save_versioned([Write("graph", [], 1, "run/step")]) == [2]
    await provider.close()
    with contextlib.closing(sqlite3.connect(sqlite_path)) as conn, conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (LAYOUT_VERSION,)
    conn.close()
    assert await open_provider().load_versioned("graph") == Versioned([], 2, "run/step")


class NotesContext(PipelineContext):
    notes: ContextReference[list[str]] = ContextReference(provider_id="notes", key="run-notes")


def note_step(text: str) -> Step[Any, Any]:
    async def add_note(data: Any, *, context: NotesContext) -> list[str]:
        notes = [*(context.notes.get() or []), text]
        context.notes.set(notes)
        return notes

    return Step.from_callable(add_note, name="add-note")


async def test_flujo_runs_persist_through_sqlite_across_runners(
    open_provider: Callable[..., SQLiteStateProvider],
) -> None:
    first = Flujo(
        note_step("first run"),
        context_model=NotesContext,
        state_providers={"notes": open_provider()},
        persist_state=False,
    )
    result_one = await first.run_async(None)
    assert result_one.success, result_one.feedback

    # A new runner with a new provider object on the same file sees the change.
    second = Flujo(
        note_step("second run"),
        context_model=NotesContext,
        state_providers={"notes": open_provider()},
        persist_state=False,
    )
    result_two = await second.run_async(None)

    assert result_two.success, result_two.feedback
    assert result_two.output == ["first run", "second run"]
    assert await open_provider().load("run-notes") == ["first run", "second run"]
