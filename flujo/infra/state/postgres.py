"""Run state in PostgreSQL through asyncpg (install the ``postgres`` extra)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from flujo.domain.errors import ConfigurationError, StateBackendError
from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.domain.models import RunStatus
from flujo.infra.loop_bound import PerLoop

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresBackend"]

R = TypeVar("R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flujo_runs (
    run_id TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    pipeline_version TEXT NOT NULL,
    status TEXT NOT NULL,
    step_index INTEGER NOT NULL,
    input BYTEA NOT NULL,
    context BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    error TEXT,
    pause_message TEXT,
    schema_version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS flujo_runs_by_update ON flujo_runs (updated_at);
CREATE TABLE IF NOT EXISTS flujo_steps (
    run_id TEXT NOT NULL REFERENCES flujo_runs (run_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    success BOOLEAN NOT NULL,
    result BYTEA NOT NULL,
    context BYTEA NOT NULL,
    recorded_at DOUBLE PRECISION NOT NULL,
    pending BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (run_id, idx)
);
-- Tables made before step records could be pending get the column in place.
ALTER TABLE flujo_steps ADD COLUMN IF NOT EXISTS pending BOOLEAN NOT NULL DEFAULT FALSE;
"""

# Columns in RunRecord's field order, so a row is dataclasses.astuple(run).
_RUN_COLUMNS = ", ".join(field.name for field in dataclasses.fields(RunRecord))
_UPSERT_RUN = (
    f"INSERT INTO flujo_runs ({_RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
    " $11, $12) ON CONFLICT (run_id) DO UPDATE SET pipeline_name = EXCLUDED.pipeline_name,"
    " pipeline_version = EXCLUDED.pipeline_version, status = EXCLUDED.status,"
    " step_index = EXCLUDED.step_index, input = EXCLUDED.input, context = EXCLUDED.context,"
    " created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,"
    " error = EXCLUDED.error, pause_message = EXCLUDED.pause_message,"
    " schema_version = EXCLUDED.schema_version"
)
_INSERT_STEP = (
    "INSERT INTO flujo_steps (run_id, idx, name, success, result, context, recorded_at, pending)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (run_id, idx) DO UPDATE SET"
    " name = EXCLUDED.name, success = EXCLUDED.success, result = EXCLUDED.result,"
    " context = EXCLUDED.context, recorded_at = EXCLUDED.recorded_at,"
    " pending = EXCLUDED.pending"
)
# A running run's progress lives in its step records (the header is not rewritten per step).
_CURRENT_RUN = (
    "SELECT r.run_id, r.pipeline_name, r.pipeline_version, r.status,"
    " CASE WHEN r.status = 'running' THEN COALESCE("
    "(SELECT COUNT(*) FILTER (WHERE s.success AND NOT s.pending) FROM flujo_steps s"
    " WHERE s.run_id = r.run_id),"
    " r.step_index) ELSE r.step_index END AS step_index,"
    " r.input, r.context, r.created_at,"
    " CASE WHEN r.status = 'running' THEN GREATEST(r.updated_at, COALESCE("
    "(SELECT MAX(s.recorded_at) FROM flujo_steps s WHERE s.run_id = r.run_id), 0))"
    " ELSE r.updated_at END AS updated_at,"
    " r.error, r.pause_message, r.schema_version FROM flujo_runs r"
)


def _record(row: Any) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        pipeline_name=row["pipeline_name"],
        pipeline_version=row["pipeline_version"],
        status=row["status"],
        step_index=row["step_index"],
        input=bytes(row["input"]),
        context=bytes(row["context"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        error=row["error"],
        pause_message=row["pause_message"],
        schema_version=row["schema_version"],
    )


class PostgresBackend:
    """A ``StateBackend`` in PostgreSQL; tables are created on first use.

    asyncpg pools belong to the event loop that opened them, and ``runner.run()``
    runs each call on a loop of its own, so the backend keeps one pool per event
    loop, opened lazily by the first call on that loop. ``close()`` closes the
    calling loop's pool only: runs on other threads' loops keep theirs. Each pool
    holds one connection at first (``min_size``) and at most ``max_size``. The
    tables are made once per backend, by the first pool.
    """

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pools: PerLoop[asyncpg.Pool] = PerLoop(self._open, _close_pool, _terminate_pool)
        self._tables_made = False

    async def _open(self) -> asyncpg.Pool:
        try:
            import asyncpg
        except ImportError as exc:
            raise ConfigurationError(
                "PostgresBackend needs asyncpg: pip install 'flujo[postgres]'"
            ) from exc
        pool = await asyncpg.create_pool(self.dsn, min_size=self._min_size, max_size=self._max_size)
        if self._tables_made:
            return pool
        try:
            async with pool.acquire() as conn:
                # Serialised so concurrent processes do not race on CREATE TABLE.
                await conn.execute("SELECT pg_advisory_lock(726764)")
                try:
                    await conn.execute(_SCHEMA)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(726764)")
        except BaseException:
            await pool.close()
            raise
        self._tables_made = True
        return pool

    async def _run(self, what: str, fn: Callable[[asyncpg.Pool], Awaitable[R]]) -> R:
        try:
            return await fn(await self._pools.get())
        except (OSError, TimeoutError) as exc:
            raise StateBackendError(f"{what} failed (PostgreSQL unreachable): {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("asyncpg"):
                raise StateBackendError(f"{what} failed: {exc}") from exc
            raise

    async def save_run(self, run: RunRecord) -> None:
        """Insert or replace a run header."""
        args = dataclasses.astuple(run)
        await self._run(f"saving run {run.run_id!r}", lambda p: p.execute(_UPSERT_RUN, *args))

    async def checkpoint(self, step: StepRecord) -> None:
        """Append the step record: one row."""
        args = (
            step.run_id,
            step.index,
            step.name,
            step.success,
            step.result,
            step.context,
            step.recorded_at,
            step.pending,
        )
        await self._run(
            f"checkpoint of run {step.run_id!r} at step {step.index}",
            lambda p: p.execute(_INSERT_STEP, *args),
        )

    async def load_run(self, run_id: str) -> RunRecord | None:
        """Return the run header or ``None``."""
        sql = f"{_CURRENT_RUN} WHERE r.run_id = $1"
        row = await self._run(f"loading run {run_id!r}", lambda p: p.fetchrow(sql, run_id))
        return None if row is None else _record(row)

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        """Return the run's steps in order."""
        sql = (
            "SELECT run_id, idx, name, success, result, context, recorded_at, pending"
            " FROM flujo_steps WHERE run_id = $1 ORDER BY idx"
        )
        rows = await self._run(
            f"loading the steps of run {run_id!r}", lambda p: p.fetch(sql, run_id)
        )
        return [
            StepRecord(
                run_id=r["run_id"],
                index=r["idx"],
                name=r["name"],
                success=r["success"],
                result=bytes(r["result"]),
                context=bytes(r["context"]),
                recorded_at=r["recorded_at"],
                pending=r["pending"],
            )
            for r in rows
        ]

    async def list_runs(self, *, status: RunStatus | None, limit: int) -> Sequence[RunRecord]:
        """Return up to ``limit`` headers, most recently updated first."""
        if status is None:
            sql = f"SELECT * FROM ({_CURRENT_RUN}) c ORDER BY updated_at DESC LIMIT $1"
            rows = await self._run("listing runs", lambda p: p.fetch(sql, limit))
        else:
            sql = (
                f"SELECT * FROM ({_CURRENT_RUN} WHERE r.status = $1) c"
                " ORDER BY updated_at DESC LIMIT $2"
            )
            rows = await self._run("listing runs", lambda p: p.fetch(sql, status, limit))
        return [_record(r) for r in rows]

    async def delete_run(self, run_id: str) -> None:
        """Remove a run and its steps (the steps go by cascade)."""
        await self._run(
            f"deleting run {run_id!r}",
            lambda p: p.execute("DELETE FROM flujo_runs WHERE run_id = $1", run_id),
        )

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        """Delete old runs in ``statuses``; return how many."""
        sql = "DELETE FROM flujo_runs WHERE updated_at < $1 AND status = ANY($2::text[])"
        outcome = await self._run(
            "pruning runs", lambda p: p.execute(sql, older_than, list(statuses))
        )
        return int(str(outcome).rsplit(" ", 1)[-1])

    async def close(self) -> None:
        """Close the calling event loop's pool (the next call opens a new one); others stay."""
        await self._pools.close()


async def _close_pool(pool: asyncpg.Pool) -> None:
    await pool.close()


def _terminate_pool(pool: asyncpg.Pool) -> None:
    """Drop the connections of a pool whose event loop has ended."""
    pool.terminate()
