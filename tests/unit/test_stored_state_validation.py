"""Stored state fails loudly: a damaged row is a StateCorruptError naming run and column.

Rows are damaged by hand, as a user with a SQL shell (or a bug) would: a blob stored
as text, a count as text or a fraction, a time out of range, an unknown status or
schema version, ``success='yes'``. Listing still works and shows the run as damaged;
reading or resuming it raises, and nothing runs again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from typer.testing import CliRunner

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.cli.app import app
from flujo.domain.errors import StateBackendError, StateCorruptError, StateError, StateLoadError
from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.domain.models import DamagedRun, RunInfo
from flujo.infra.state import rows
from flujo.providers import SQLiteStateProvider
from flujo.state import InMemoryBackend, SQLiteBackend
from flujo.testing import (
    DamagedStateContract,
    UntypedDamagedStateContract,
    make_run,
    make_step,
)

Damage = Callable[..., Awaitable[None]]


def sqlite_damage(path: Path) -> Damage:
    """Write a raw value into a column of a stored header or step record."""

    async def damage(run_id: str, column: str, value: Any, index: int | None = None) -> None:
        with sqlite3.connect(path) as conn:
            if index is None:
                conn.execute(
                    f"UPDATE flujo_runs SET {column} = ? WHERE run_id = ?", (value, run_id)
                )
            else:
                column = "idx" if column == "index" else column
                conn.execute(
                    f"UPDATE flujo_steps SET {column} = ? WHERE run_id = ? AND idx = ?",
                    (value, run_id, index),
                )
        conn.close()

    return damage


class TestSQLiteDamage(DamagedStateContract, UntypedDamagedStateContract):
    @pytest.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
        backend = SQLiteBackend(tmp_path / "runs.db")
        yield backend
        await backend.close()

    @pytest.fixture
    def damage(self, tmp_path: Path) -> Damage:
        return sqlite_damage(tmp_path / "runs.db")


class TestInMemoryDamage(DamagedStateContract, UntypedDamagedStateContract):
    @pytest.fixture
    def backend(self) -> InMemoryBackend:
        return InMemoryBackend()

    @pytest.fixture
    def damage(self, backend: InMemoryBackend) -> Damage:
        async def damage(run_id: str, column: str, value: Any, index: int | None = None) -> None:
            # Records are frozen dataclasses, whose fields nothing type-checks at runtime.
            if index is None:
                backend._runs[run_id] = dataclasses.replace(
                    backend._runs[run_id], **{column: value}
                )
            else:
                steps = backend._steps[run_id]
                steps[index] = dataclasses.replace(steps[index], **{column: value})

        return damage


# --- the one boundary ------------------------------------------------------------------


def test_every_record_field_is_checked() -> None:
    # A field added to a record without a check would be read back unchecked.
    assert list(rows._RUN_COLUMNS) == [f.name for f in dataclasses.fields(RunRecord)]
    assert list(rows._STEP_COLUMNS) == [f.name for f in dataclasses.fields(StepRecord)]


def test_a_good_row_reads_back_as_its_record() -> None:
    run, step = make_run("r1"), make_step("r1", 0)
    assert rows.run_record(dataclasses.asdict(run)) == run
    assert rows.step_record(dataclasses.asdict(step)) == step
    assert rows.step_record({**dataclasses.asdict(step), "success": 1, "pending": 0}) == step


def test_the_error_is_a_state_error_carrying_run_column_and_value() -> None:
    row = {**dataclasses.asdict(make_run("r1")), "status": "bogus"}
    with pytest.raises(StateCorruptError) as caught:
        rows.run_record(row)
    error = caught.value
    assert isinstance(error, StateBackendError) and isinstance(error, StateError)
    assert (error.run_id, error.column, error.found) == ("r1", "status", "'bogus' (str)")
    assert str(error) == (
        "stored state of run 'r1' cannot be read: column 'status' of its header holds "
        "'bogus' (str); expected one of 'running', 'paused', 'completed', 'failed', 'cancelled'"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.run_id, copy.column, copy.found) == (
        str(error),
        "r1",
        "status",
        "'bogus' (str)",
    )


def test_a_huge_damaged_value_is_shortened_in_the_message() -> None:
    row = {**dataclasses.asdict(make_run("r1")), "context": "x" * 10_000}
    with pytest.raises(StateCorruptError) as caught:
        rows.run_record(row)
    assert len(str(caught.value)) < 300 and "..." in caught.value.found


def test_a_run_whose_id_is_damaged_is_listed_by_what_it_holds() -> None:
    row = {**dataclasses.asdict(make_run("r1")), "run_id": b"\xff"}
    (listed,) = rows.listed([row])
    assert isinstance(listed, DamagedRun)
    assert (listed.run_id, listed.column) == ("b'\\xff' (bytes)", "run_id")


# --- through the runner: list, get, resume -----------------------------------------------


class Counter(PipelineContext):
    calls: list[str] = Field(default_factory=list)


RAN: list[str] = []


def note(data: int) -> int:
    RAN.append(f"step-{data}")
    return data + 1


def boom(data: int) -> int:
    raise RuntimeError("fails, so the run can be resumed")


# (where, column, value): the hand-damaged rows.
DAMAGE = [
    (None, "input", "a blob stored as text"),
    (None, "step_index", "a count stored as text"),
    (None, "step_index", 1.5),
    (None, "created_at", 1e300),
    (None, "status", "bogus"),
    (None, "schema_version", "1 as text"),
    (0, "success", "yes"),
    (0, "result", "a blob stored as text"),
]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


async def _stored_failed_run(database: Path) -> Flujo[Any, Any, Any]:
    pipeline = Step.from_callable(note, name="a") >> Step.from_callable(boom, name="b")
    runner = Flujo(pipeline, pipeline_name="p", state_backend=SQLiteBackend(database))
    assert (await runner.run_async(0, run_id="ok")).status == "failed"
    assert (await runner.run_async(0, run_id="bad")).status == "failed"
    return runner


@pytest.mark.parametrize(("index", "column", "value"), DAMAGE)
async def test_a_damaged_run_is_listed_as_damaged_and_the_others_still_list(
    database: Path, index: int | None, column: str, value: Any
) -> None:
    runner = await _stored_failed_run(database)
    await sqlite_damage(database)("bad", column, value, index)
    async with runner:
        listed = await runner.list_runs()
    by_id = {info.run_id: info for info in listed}
    assert isinstance(by_id["ok"], RunInfo) and by_id["ok"].status == "failed"
    if index is None:  # a step's damage shows when the steps are read
        damaged = by_id["bad"]
        assert isinstance(damaged, DamagedRun), damaged
        assert damaged.status == "damaged" and damaged.column == column
        assert "'bad'" in damaged.error and repr(column) in damaged.error


@pytest.mark.parametrize(("index", "column", "value"), DAMAGE)
async def test_get_run_of_a_damaged_run_names_run_and_column(
    database: Path, index: int | None, column: str, value: Any
) -> None:
    runner = await _stored_failed_run(database)
    await sqlite_damage(database)("bad", column, value, index)
    async with runner:
        with pytest.raises(StateCorruptError) as caught:
            await runner.get_run("bad")
        assert (await runner.get_run("ok")).status == "failed"
    assert caught.value.run_id == "bad" and caught.value.column == column
    assert "'bad'" in str(caught.value)


@pytest.mark.parametrize(("index", "column", "value"), DAMAGE)
async def test_a_damaged_run_never_resumes(
    database: Path, index: int | None, column: str, value: Any
) -> None:
    runner = await _stored_failed_run(database)
    await sqlite_damage(database)("bad", column, value, index)
    fixed = Step.from_callable(note, name="a") >> Step.from_callable(note, name="b")
    resumer = Flujo(fixed, pipeline_name="p", state_backend=SQLiteBackend(database))
    RAN.clear()
    async with resumer:
        with pytest.raises(StateCorruptError) as caught:
            await resumer.resume_async("bad")
        assert RAN == []  # nothing ran, and nothing was stored as completed
        with pytest.raises(StateCorruptError):
            await resumer.get_run("bad")
        resumed = await resumer.resume_async("ok")  # an intact run beside it resumes
    assert caught.value.run_id == "bad"
    assert resumed.status == "completed" and RAN == ["step-1"]
    await runner.aclose()


async def test_a_step_payload_that_is_not_json_names_the_column(database: Path) -> None:
    runner = await _stored_failed_run(database)
    await sqlite_damage(database)("bad", "result", b"\xff\x00", 0)
    async with runner:
        with pytest.raises(StateCorruptError) as caught:
            await runner.get_run("bad")
    assert (caught.value.run_id, caught.value.column) == ("bad", "result")
    assert "step 0 is not valid JSON" in str(caught.value)


async def test_an_in_memory_record_saved_with_an_unknown_status_is_damaged() -> None:
    backend = InMemoryBackend()
    runner = Flujo(Step.from_callable(note, name="a"), state_backend=backend)
    await runner.run_async(0, run_id="ok")
    await backend.save_run(dataclasses.replace(make_run("odd"), status="bogus"))  # type: ignore[arg-type]
    listed = await runner.list_runs()
    assert {type(info).__name__ for info in listed} == {"RunInfo", "DamagedRun"}
    with pytest.raises(StateCorruptError, match="'bogus'"):
        await runner.resume_async("odd")


@pytest.mark.parametrize(
    "payload", [b"not json", b"[]", b'{"writes": "x"}', b'{"writes": [{"key": 1}]}']
)
async def test_a_damaged_pending_record_is_reported_not_settled(payload: bytes) -> None:
    backend = InMemoryBackend()
    pipeline = Step.from_callable(note, name="a") >> Step.from_callable(note, name="b")
    runner = Flujo(pipeline, pipeline_name="p", state_backend=backend)
    await backend.save_run(make_run("r", pipeline_name="p"))
    pending = dataclasses.replace(make_step("r", 0, pending=True, result=payload), name="a")
    await backend.checkpoint(pending)
    RAN.clear()
    with pytest.raises(StateCorruptError, match="pending record of step 0") as caught:
        await runner.resume_async("r")
    assert (caught.value.run_id, caught.value.column, RAN) == ("r", "result", [])
    assert list(await backend.load_steps("r")) == [pending]  # left as it was


# --- the SQLite state provider -----------------------------------------------------------


PROVIDER_DAMAGE = [
    ("value", "text that is not JSON"),
    ("value", b"not json"),
    ("value", 12),
    ("version", "two"),
    ("version", -1),
    ("writer", b"\x00"),
]


@pytest.mark.parametrize(("column", "value"), PROVIDER_DAMAGE)
async def test_a_damaged_provider_value_is_a_state_corrupt_error(
    tmp_path: Path, column: str, value: Any
) -> None:
    path = tmp_path / "state.db"
    provider = SQLiteStateProvider(path)
    await provider.save("k", [1, 2])
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE flujo_state SET {column} = ? WHERE key = 'k'", (value,))
    conn.close()
    try:
        with pytest.raises(StateCorruptError) as caught:
            await provider.load_versioned("k")
        assert caught.value.column == column and "'k'" in str(caught.value)
        if column != "value":  # a compare-and-swap reads the version and writer too
            with pytest.raises(StateCorruptError):
                await provider.save("k", [3])
    finally:
        await provider.close()


class Ledger(PipelineContext):
    booked: ContextReference[list[int]] = ContextReference(provider_id="ledger", key="booked")


async def test_a_run_over_a_damaged_provider_value_fails_to_load_naming_it(
    tmp_path: Path,
) -> None:
    provider = SQLiteStateProvider(tmp_path / "ledger.db")
    await provider.save("booked", [1])
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        conn.execute("UPDATE flujo_state SET value = 'oops' WHERE key = 'booked'")
    conn.close()
    runner = Flujo(
        Step.from_callable(note, name="a"),
        context_model=Ledger,
        state_backend=InMemoryBackend(),
        state_providers={"ledger": provider},
    )
    with pytest.raises(StateLoadError) as caught:
        await runner.run_async(0)  # JSON text would be read: 'oops' is not JSON
    assert isinstance(caught.value.__cause__, StateCorruptError)
    assert "booked" in str(caught.value)
    await provider.close()


# --- the command line --------------------------------------------------------------------


def test_flujo_runs_list_shows_a_damaged_run_and_show_says_why(database: Path) -> None:
    async def store() -> None:
        runner = await _stored_failed_run(database)
        await runner.aclose()
        await sqlite_damage(database)("bad", "status", "bogus")

    asyncio.run(store())
    env = {"COLUMNS": "250", "FLUJO_STATE_URI": f"sqlite://{database}"}  # an absolute path

    listed = CliRunner().invoke(app, ["runs", "list"], env=env)
    assert listed.exit_code == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "bad" in line)
    assert "damaged" in row and "status" in row
    assert any("ok" in line and "failed" in line for line in listed.stdout.splitlines())

    shown = CliRunner().invoke(app, ["runs", "show", "bad"], env=env)
    assert shown.exit_code == 1 and "Traceback" not in shown.stderr
    lines = [line for line in shown.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "StateCorruptError" in lines[0] and "'status'" in lines[0]
