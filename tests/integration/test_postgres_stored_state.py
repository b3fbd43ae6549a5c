"""PostgresBackend against a real server: damaged rows and bad query arguments fail loudly.

PostgreSQL's columns enforce their types, so the damage is what they can hold: an
unknown status, a negative count, a time out of range, an unknown schema version.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from flujo import ConfigurationError, Flujo, Step
from flujo.domain.errors import StateCorruptError
from flujo.domain.models import DamagedRun, RunInfo
from flujo.state import PostgresBackend
from flujo.testing import DamagedStateContract
from tests.integration.postgres import postgres_dsn

Damage = Callable[..., Awaitable[None]]


def postgres_damage(dsn: str) -> Damage:
    """Write a raw value into a column of a stored header or step record."""

    async def damage(run_id: str, column: str, value: Any, index: int | None = None) -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            if index is None:
                sql = f"UPDATE flujo_runs SET {column} = $1 WHERE run_id = $2"
                await conn.execute(sql, value, run_id)
            else:
                column = "idx" if column == "index" else column
                sql = f"UPDATE flujo_steps SET {column} = $1 WHERE run_id = $2 AND idx = $3"
                await conn.execute(sql, value, run_id, index)
        finally:
            await conn.close()

    return damage


@pytest.fixture
async def dsn() -> str:
    return await postgres_dsn()  # each call starts from empty tables


class TestPostgresDamage(DamagedStateContract):
    @pytest.fixture
    async def backend(self, dsn: str) -> AsyncIterator[PostgresBackend]:
        backend = PostgresBackend(dsn)
        yield backend
        await backend.close()

    @pytest.fixture
    def damage(self, dsn: str) -> Damage:
        return postgres_damage(dsn)


RAN: list[int] = []


def note(data: int) -> int:
    RAN.append(data)
    return data + 1


def boom(data: int) -> int:
    raise RuntimeError("fails, so the run can be resumed")


@pytest.mark.parametrize(
    ("column", "value"),
    [("status", "bogus"), ("step_index", -2), ("created_at", 1e300), ("schema_version", 99)],
)
async def test_a_damaged_run_lists_as_damaged_and_never_resumes(
    dsn: str, column: str, value: Any
) -> None:
    failing = Step.from_callable(note, name="a") >> Step.from_callable(boom, name="b")
    fixed = Step.from_callable(note, name="a") >> Step.from_callable(note, name="b")
    async with (
        Flujo(failing, pipeline_name="pg", state_backend=PostgresBackend(dsn)) as first,
        Flujo(fixed, pipeline_name="pg", state_backend=PostgresBackend(dsn)) as second,
    ):
        await first.run_async(0, run_id="ok")
        await first.run_async(0, run_id="bad")
        await postgres_damage(dsn)("bad", column, value)
        listed = {info.run_id: info for info in await second.list_runs()}
        assert isinstance(listed["ok"], RunInfo)
        damaged = listed["bad"]
        assert isinstance(damaged, DamagedRun) and damaged.column == column
        RAN.clear()
        with pytest.raises(StateCorruptError) as caught:
            await second.resume_async("bad")
        assert RAN == []
        with pytest.raises(StateCorruptError):
            await second.get_run("bad")
        assert (await second.resume_async("ok")).status == "completed"
    assert (caught.value.run_id, caught.value.column) == ("bad", column)


async def test_the_backend_checks_its_query_arguments(dsn: str) -> None:
    backend = PostgresBackend(dsn)
    try:
        with pytest.raises(ConfigurationError, match="'bogus'"):
            await backend.list_runs(status="bogus", limit=5)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="limit"):
            await backend.list_runs(status=None, limit=0)
        with pytest.raises(ConfigurationError, match=r"write \('completed',\) for one"):
            await backend.prune(older_than=1e12, statuses="completed")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="finite Unix time"):
            await backend.prune(older_than=float("nan"), statuses=("completed",))
    finally:
        await backend.close()
