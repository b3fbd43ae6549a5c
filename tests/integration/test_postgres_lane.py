"""The connection PostgreSQL statements keep per event loop (``Lane``), against a real server.

The server comes from ``FLUJO_TEST_PG_DSN`` (or ``PG_DSN``); without one these tests
skip naming it, except under CI, where they fail. Each test works in a schema of its
own, and kills only connections it opened (they carry an application name of its own).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flujo import Flujo, Step
from flujo.domain.errors import (
    RunExistsError,
    RunLeasedError,
    StateBackendError,
    StateConflictError,
)
from flujo.domain.interfaces import RunRecord, Write
from flujo.infra.pg_lane import Lane
from flujo.infra.pg_pool import create_pool
from flujo.state import PostgresBackend
from flujo.testing import make_run, make_step
from tests.integration.pg_schema import Schema, server_dsn, with_settings

PID = "SELECT pg_backend_pid()"
WAIT_S = 10.0


@pytest.fixture
async def schema() -> AsyncIterator[Schema]:
    made = await Schema(await server_dsn()).create()
    yield made
    await made.drop()


@pytest.fixture
def app() -> str:
    """An application name only this test's connections carry."""
    return f"flujo-lane-{uuid.uuid4().hex[:12]}"


async def _pool(schema: Schema, app: str, max_size: int = 4) -> Any:
    return await create_pool(
        with_settings(schema.dsn, application_name=app), min_size=1, max_size=max_size
    )


async def _kill(schema: Schema, pid: int) -> None:
    """Terminate one server process and wait until it is gone (``timeout`` in ms)."""
    await schema.execute("SELECT pg_terminate_backend($1::int, 5000)", pid)


async def _kill_all(schema: Schema, app: str) -> int:
    """Terminate every connection named ``app``; return how many."""
    rows = await schema.fetch(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1",
        app,
    )
    return len(rows)


async def _ends(schema: Schema, pid: int) -> bool:
    """Whether server process ``pid`` is gone within ``WAIT_S`` (it ends as it reads the close)."""
    for _ in range(int(WAIT_S / 0.05)):
        if not await schema.fetch("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_statements_run_on_one_kept_connection(schema: Schema, app: str) -> None:
    pool = await _pool(schema, app)
    lane = Lane(pool)
    try:
        pids = {await lane.run(lambda c: c.fetchval(PID)) for _ in range(5)}
        assert len(pids) == 1
    finally:
        await lane.close()
        await asyncio.wait_for(pool.close(), WAIT_S)  # the lane gave its connection back


async def test_a_statement_that_loses_its_connection_fails_and_the_next_gets_a_new_one(
    schema: Schema, app: str
) -> None:
    pool = await _pool(schema, app)
    lane = Lane(pool)
    try:
        before = await lane.run(lambda c: c.fetchval(PID))
        with pytest.raises(Exception) as info:  # the server ends the session mid-statement
            await lane.run(lambda c: c.fetchval("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert type(info.value).__module__.startswith("asyncpg") or isinstance(info.value, OSError)
        after = await lane.run(lambda c: c.fetchval(PID))
        assert after != before
        assert await lane.run(lambda c: c.fetchval("SELECT 41 + 1")) == 42
    finally:
        await lane.close()
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_a_connection_the_server_dropped_while_idle_is_replaced_before_use(
    schema: Schema, app: str
) -> None:
    pool = await _pool(schema, app)
    lane = Lane(pool)
    try:
        before = await lane.run(lambda c: c.fetchval(PID))
        await _kill(schema, before)  # as a server restart would
        await asyncio.sleep(0.2)  # the loop reads the end of the connection meanwhile
        after = await lane.run(lambda c: c.fetchval(PID))  # no error: a new connection
        assert after != before
    finally:
        await lane.close()
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_a_connection_left_idle_too_long_is_replaced(schema: Schema, app: str) -> None:
    pool = await _pool(schema, app)
    lane = Lane(pool, stale_s=0.1)
    try:
        first = await lane.run(lambda c: c.fetchval(PID))
        assert await lane.run(lambda c: c.fetchval(PID)) == first  # used again at once: kept
        await asyncio.sleep(0.3)
        replaced = await lane.run(lambda c: c.fetchval(PID))
        assert replaced != first
        assert await _ends(schema, first)  # terminated, not left open in the pool
    finally:
        await lane.close()
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_a_busy_lane_sends_a_second_caller_to_the_pool(schema: Schema, app: str) -> None:
    pool = await _pool(schema, app)
    lane = Lane(pool)
    slow = "SELECT pg_backend_pid() FROM pg_sleep(0.2)"
    try:
        pids = await asyncio.gather(*(lane.run(lambda c: c.fetchval(slow)) for _ in range(3)))
        assert len(set(pids)) == 3  # nobody queued behind the lane's connection
        assert await lane.run(lambda c: c.fetchval(PID)) == pids[0]  # the lane kept its own
    finally:
        await lane.close()
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_a_one_connection_pool_is_not_held(schema: Schema, app: str) -> None:
    # The backend's providers share its pool: with one connection, holding it would stall them.
    backend = PostgresBackend(schema.dsn, max_size=1)
    provider = backend.provider()
    try:
        await backend.save_run(make_run("r"))
        await backend.checkpoint(make_step("r", 0))
        await asyncio.wait_for(provider.save("k", "v"), WAIT_S)
        slow = [backend.checkpoint(make_step("r", i)) for i in range(1, 4)]
        await asyncio.wait_for(asyncio.gather(*slow, provider.load("k")), WAIT_S)
        assert [s.index for s in await backend.load_steps("r")] == [0, 1, 2, 3]
    finally:
        await backend.close()


async def in_transaction(conn: Any) -> bool:
    return bool(conn.is_in_transaction())


async def test_a_transaction_left_open_by_an_error_is_rolled_back(schema: Schema, app: str) -> None:
    await schema.execute("CREATE TABLE lane_t (n INT)")
    pool = await _pool(schema, app)
    lane = Lane(pool)

    async def half_done(conn: Any) -> None:
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO lane_t VALUES (1)")
        raise StateConflictError("a flujo error, raised inside the transaction")

    try:
        with pytest.raises(StateConflictError):
            await lane.run(half_done)
        assert await lane.run(in_transaction) is False
        await lane.run(lambda c: c.execute("INSERT INTO lane_t VALUES (2)"))
        assert await schema.fetch("SELECT n FROM lane_t") == [(2,)]  # 2 committed, 1 not
    finally:
        await lane.close()
        await asyncio.wait_for(pool.close(), WAIT_S)


async def test_a_cancelled_statement_leaves_the_lane_usable(schema: Schema, app: str) -> None:
    pool = await _pool(schema, app)
    lane = Lane(pool)
    try:
        task = asyncio.create_task(lane.run(lambda c: c.execute("SELECT pg_sleep(30)")))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        answer = lane.run(lambda c: c.fetchval("SELECT 41 + 1"))
        assert await asyncio.wait_for(answer, WAIT_S) == 42
    finally:
        await lane.close()
        await asyncio.wait_for(pool.close(), WAIT_S)


# --- through the backend ----------------------------------------------------------------------


def inc(x: int) -> int:
    return x + 1


async def slow_inc(x: int) -> int:
    await asyncio.sleep(0.005)  # lets the other run's statements in between
    return x + 1


async def test_two_runs_at_once_on_one_loop_and_one_backend(schema: Schema) -> None:
    backend = PostgresBackend(schema.dsn)
    pipeline = Step.from_callable(slow_inc, name="s0")
    for i in range(1, 10):
        pipeline = pipeline >> Step.from_callable(slow_inc, name=f"s{i}")
    runner = Flujo(pipeline, state_backend=backend)
    try:
        results = await asyncio.gather(
            *(runner.run_async(0, run_id=f"both{n}", replace=True) for n in range(2))
        )
        assert [r.status for r in results] == ["completed", "completed"]
        assert [r.output for r in results] == [10, 10]
        for n in range(2):
            stored = await backend.load_run(f"both{n}")
            assert stored is not None and stored.status == "completed"
            assert [s.index for s in await backend.load_steps(f"both{n}")] == list(range(10))
    finally:
        await runner.aclose()


async def test_a_checkpoint_after_the_server_dropped_the_connection_lands(
    schema: Schema, app: str
) -> None:
    backend = PostgresBackend(with_settings(schema.dsn, application_name=app))
    try:
        await backend.save_run(make_run("r"))
        await backend.checkpoint(make_step("r", 0))
        assert await _kill_all(schema, app) >= 1  # every connection of the backend
        await asyncio.sleep(0.2)
        await backend.checkpoint(make_step("r", 1))
        assert [s.index for s in await backend.load_steps("r")] == [0, 1]
    finally:
        await backend.close()


async def test_a_checkpoint_on_a_connection_lost_mid_statement_is_a_backend_error(
    schema: Schema, app: str
) -> None:
    backend = PostgresBackend(with_settings(schema.dsn, application_name=app))
    try:
        await backend.save_run(make_run("r"))
        await backend.checkpoint(make_step("r", 0))
        # Kill the connection while a statement holds it: the write fails, mapped.
        blocker = await _pool(schema, f"{app}-blocker", max_size=1)
        try:
            async with blocker.acquire() as conn, conn.transaction():
                await conn.execute("LOCK TABLE flujo_steps IN EXCLUSIVE MODE")
                write = asyncio.create_task(backend.checkpoint(make_step("r", 1)))
                await asyncio.sleep(0.2)  # the checkpoint now waits on the lock
                await _kill_all(schema, app)
                with pytest.raises(StateBackendError, match="checkpoint of run 'r' at step 1"):
                    await asyncio.wait_for(write, WAIT_S)
        finally:
            await blocker.close()
        await backend.checkpoint(make_step("r", 2))  # the next write gets a new connection
        assert [s.index for s in await backend.load_steps("r")] == [0, 2]
    finally:
        await backend.close()


async def test_after_a_conflict_the_next_checkpoint_commits(schema: Schema) -> None:
    backend = PostgresBackend(schema.dsn)
    provider = backend.provider()
    try:
        await backend.save_run(make_run("r"))
        await provider.save_versioned([Write("k", "first", 0, None)])
        with pytest.raises(StateConflictError):
            await backend.checkpoint_with(make_step("r", 0), [(provider, Write("k", "x", 0, None))])
        await backend.checkpoint(make_step("r", 0))
        # Seen from another connection: committed, not held in a transaction left open.
        assert await schema.fetch("SELECT idx FROM flujo_steps WHERE run_id = 'r'") == [(0,)]
    finally:
        await backend.close()


async def test_close_waits_for_a_statement_under_way_then_the_backend_opens_again(
    schema: Schema, app: str
) -> None:
    backend = PostgresBackend(schema.dsn)
    await backend.save_run(make_run("r"))
    blocker = await _pool(schema, app, max_size=1)
    try:
        async with blocker.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE flujo_steps IN EXCLUSIVE MODE")
            write = asyncio.create_task(backend.checkpoint(make_step("r", 0)))
            await asyncio.sleep(0.2)  # the checkpoint holds the lane, waiting on the lock
            closing = asyncio.create_task(backend.close())
            await asyncio.sleep(0.2)
            assert not closing.done() and not write.done()
        await asyncio.wait_for(write, WAIT_S)  # it landed: close did not cut it off
        await asyncio.wait_for(closing, WAIT_S)
    finally:
        await blocker.close()
    await backend.checkpoint(make_step("r", 1))  # a new pool and lane on this loop
    try:
        assert [s.index for s in await backend.load_steps("r")] == [0, 1]
    finally:
        await backend.close()


def _leased(run_id: str, owner: str) -> RunRecord:
    import dataclasses

    return dataclasses.replace(make_run(run_id), owner=owner, lease_until=5000.0)


async def test_two_backends_replacing_one_run_at_once_exactly_one_wins(schema: Schema) -> None:
    racers = [PostgresBackend(schema.dsn), PostgresBackend(schema.dsn)]
    try:
        for n in range(10):
            await racers[0].save_run(make_run(f"race{n}", status="failed"))
            await racers[0].checkpoint(make_step(f"race{n}", 0))
        for n in range(10):
            outcomes = await asyncio.gather(
                *(
                    b.create_run(_leased(f"race{n}", f"racer{i}"), replace=True)
                    for i, b in enumerate(racers)
                ),
                return_exceptions=True,
            )
            won = [i for i, outcome in enumerate(outcomes) if outcome is None]
            assert len(won) == 1, outcomes
            lost = outcomes[1 - won[0]]
            assert isinstance(lost, RunExistsError | RunLeasedError), lost
            stored = await racers[0].load_run(f"race{n}")
            assert stored is not None and stored.owner == f"racer{won[0]}"
            assert list(await racers[0].load_steps(f"race{n}")) == []
    finally:
        for b in racers:
            await b.close()


async def test_pools_plan_once_per_statement_unless_the_dsn_says_otherwise(schema: Schema) -> None:
    # Generic plans: the CTE statements are not planned again on every execution.
    pool = await create_pool(schema.dsn, min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    finally:
        await pool.close()
    chosen = await create_pool(
        with_settings(schema.dsn, plan_cache_mode="auto"), min_size=1, max_size=2
    )
    try:
        assert await chosen.fetchval("SHOW plan_cache_mode") == "auto"
    finally:
        await chosen.close()
