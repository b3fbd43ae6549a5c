"""PostgresBackend against a real server: the backend contract and a durable run."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import Field

from flujo import Flujo, PipelineContext, Step
from flujo.containers import FlujoContainer
from flujo.state import PostgresBackend
from flujo.testing import FinalCheckpointContract, StateBackendContract, make_run, make_step
from tests.integration.postgres import postgres_dsn


class TestPostgresBackend(StateBackendContract, FinalCheckpointContract):
    @pytest.fixture
    async def dsn(self) -> str:
        return await postgres_dsn()  # each call starts from empty tables

    @pytest.fixture
    async def backend(self, dsn: str) -> AsyncIterator[PostgresBackend]:
        backend = PostgresBackend(dsn)
        yield backend
        await backend.close()

    @pytest.fixture
    def backend_factory(self, dsn: str) -> Callable[[], PostgresBackend]:
        return functools.partial(PostgresBackend, dsn)


# The step table as flujo made it before step records could be pending.
STEPS_WITHOUT_PENDING = """
CREATE TABLE flujo_runs (
    run_id TEXT PRIMARY KEY, pipeline_name TEXT NOT NULL, pipeline_version TEXT NOT NULL,
    status TEXT NOT NULL, step_index INTEGER NOT NULL, input BYTEA NOT NULL,
    context BYTEA NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL, error TEXT, pause_message TEXT,
    schema_version INTEGER NOT NULL
);
CREATE TABLE flujo_steps (
    run_id TEXT NOT NULL REFERENCES flujo_runs (run_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, name TEXT NOT NULL, success BOOLEAN NOT NULL,
    result BYTEA NOT NULL, context BYTEA NOT NULL, recorded_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, idx)
);
"""


async def test_tables_made_before_pending_steps_get_the_column() -> None:
    import asyncpg

    dsn = await postgres_dsn()
    run, step = make_run("old"), make_step("old", 0)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(STEPS_WITHOUT_PENDING)
        await conn.execute(
            "INSERT INTO flujo_runs VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, 1)",
            run.run_id, run.pipeline_name, run.pipeline_version, run.status, run.step_index,
            run.input, run.context, run.created_at, run.updated_at,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO flujo_steps VALUES ($1, $2, $3, $4, $5, $6, $7)",
            step.run_id, step.index, step.name, step.success, step.result, step.context,
            step.recorded_at,
        )  # fmt: skip
    finally:
        await conn.close()
    backend = PostgresBackend(dsn)
    try:
        assert list(await backend.load_steps("old")) == [step]
        await backend.checkpoint(make_step("old", 1, pending=True))
        loaded = await backend.load_run("old")
        assert loaded is not None and loaded.step_index == 1
        # The old table's foreign key is gone, and a deleted run still takes its steps.
        assert await _foreign_keys(dsn) == 0
        await backend.delete_run("old")
        assert list(await backend.load_steps("old")) == []
    finally:
        await backend.close()


async def _foreign_keys(dsn: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT COUNT(*) FROM pg_constraint"
            " WHERE conrelid = to_regclass('flujo_steps') AND contype = 'f'"
        )
        return count
    finally:
        await conn.close()


@pytest.mark.parametrize("replace", [False, True])
async def test_steps_left_without_a_header_do_not_join_a_new_run_of_their_id(
    replace: bool,
) -> None:
    # Without a foreign key a stale owner's checkpoint can land after its run was
    # deleted; a new run of that id must start with no steps all the same.
    backend = PostgresBackend(await postgres_dsn())
    try:
        await backend.create_run(make_run("r"))
        await backend.delete_run("r")
        await backend.checkpoint(make_step("r", 0))  # the stale owner's, after the delete
        await backend.checkpoint(make_step("r", 1))
        await backend.create_run(make_run("r"), replace=replace)
        assert list(await backend.load_steps("r")) == []
        loaded = await backend.load_run("r")
        assert loaded is not None and loaded.step_index == 0
    finally:
        await backend.close()


async def test_replacing_a_run_deletes_its_steps() -> None:
    backend = PostgresBackend(await postgres_dsn())
    try:
        await backend.create_run(make_run("r", status="failed"))
        await backend.checkpoint(make_step("r", 0))
        await backend.create_run(make_run("r"), replace=True)
        assert list(await backend.load_steps("r")) == []
    finally:
        await backend.close()


async def test_a_record_another_backend_wrote_pending_is_committed_in_place() -> None:
    # This backend never saw the pending record (a resume in another process): its
    # plain insert meets the stored one and replaces it instead.
    dsn = await postgres_dsn()
    first, second = PostgresBackend(dsn), PostgresBackend(dsn)
    try:
        await first.create_run(make_run("r"))
        await first.checkpoint(make_step("r", 0, pending=True, result=b'{"p": 1}'))
        committed = make_step("r", 0, result=b'{"p": 2}')
        await second.checkpoint(committed)
        assert list(await first.load_steps("r")) == [committed]
        loaded = await first.load_run("r")
        assert loaded is not None and loaded.step_index == 1
    finally:
        await first.close()
        await second.close()


async def test_prune_deletes_the_steps_of_the_runs_it_deletes() -> None:
    backend = PostgresBackend(await postgres_dsn())
    try:
        await backend.create_run(make_run("old", status="completed", updated_at=10.0))
        await backend.checkpoint(make_step("old", 0))
        await backend.create_run(make_run("new", status="completed", updated_at=5000.0))
        await backend.checkpoint(make_step("new", 0))
        assert await backend.prune(older_than=100.0, statuses=["completed"]) == 1
        assert list(await backend.load_steps("old")) == []
        assert [s.index for s in await backend.load_steps("new")] == [0]
    finally:
        await backend.close()


class Counter(PipelineContext):
    seen: list[str] = Field(default_factory=list)


def note(data: int, *, context: Counter) -> int:
    context.seen.append(f"step{data}")
    return data + 1


def boom(data: int) -> int:
    raise RuntimeError("crash here")


async def test_run_fails_then_resumes_from_postgres() -> None:
    dsn = await postgres_dsn()
    container = FlujoContainer()
    container.config.from_dict({"state": {"uri": dsn}})
    failing = Step.from_callable(note, name="a") >> Step.from_callable(boom, name="b")
    first = Flujo(failing, context_model=Counter, container=container, pipeline_name="pg")
    result = await first.run_async(0)
    assert result.status == "failed"
    await first.aclose()

    fixed = Step.from_callable(note, name="a") >> Step.from_callable(note, name="b")
    container2 = FlujoContainer()
    container2.config.from_dict({"state": {"uri": dsn}})
    second = Flujo(fixed, context_model=Counter, container=container2, pipeline_name="pg")
    resumed = await second.resume_async(result.run_id)
    assert resumed.status == "completed"
    assert resumed.output == 2
    assert resumed.final_pipeline_context is not None
    assert resumed.final_pipeline_context.seen == ["step0", "step1"]
    info = await second.get_run(result.run_id)
    assert info.status == "completed" and [s.name for s in info.step_history] == ["a", "b"]
    await second.aclose()


async def test_state_uri_selects_postgres_backend() -> None:
    container = FlujoContainer()
    container.config.from_dict({"state": {"uri": await postgres_dsn()}})
    assert isinstance(container.state_backend(), PostgresBackend)
