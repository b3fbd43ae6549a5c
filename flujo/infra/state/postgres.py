"""Run state in PostgreSQL through asyncpg (install the ``postgres`` extra).

The database also holds the ``flujo_state`` table of the state providers
``PostgresBackend.provider()`` makes: they share the backend's pools, so
``checkpoint_with`` commits their compare-and-swap writes and a step record in
one transaction.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from flujo.domain.errors import (
    ConfigurationError,
    RunExistsError,
    RunLeasedError,
    RunNotFoundError,
    StateBackendError,
    StateSaveError,
)
from flujo.domain.interfaces import RunRecord, StepRecord, Write
from flujo.domain.models import DamagedRun, RunStatus
from flujo.domain.run_queries import check_cutoff, check_limit, check_status, check_statuses
from flujo.infra.loop_bound import PerLoop
from flujo.infra.pg_pool import create_pool
from flujo.infra.providers.postgres import (
    STATE_SCHEMA,
    PostgresStateProvider,
    StateRow,
    close_pool,
    described,
    terminate_pool,
    write_rows,
)
from flujo.infra.state.rows import listed, run_record, run_row, step_record

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
-- Tables made before step records could be pending, or runs had leases and owed saves,
-- get the columns in place (nobody owns an older run). Only a missing column is added:
-- ALTER TABLE locks the table out even when IF NOT EXISTS finds the column, which would
-- deadlock with the runs another backend writes meanwhile.
DO $$
DECLARE
    wanted TEXT[][] := ARRAY[
        ['flujo_steps', 'pending', 'BOOLEAN NOT NULL DEFAULT FALSE'],
        ['flujo_runs', 'owner', 'TEXT'],
        ['flujo_runs', 'lease_until', 'DOUBLE PRECISION'],
        ['flujo_runs', 'owed', 'BYTEA']
    ];
    i INTEGER;
BEGIN
    FOR i IN 1 .. array_length(wanted, 1) LOOP
        IF NOT EXISTS (
            SELECT 1 FROM information_schema.columns
            WHERE table_schema = current_schema()
              AND table_name = wanted[i][1] AND column_name = wanted[i][2]
        ) THEN
            EXECUTE format(
                'ALTER TABLE %I ADD COLUMN %I ' || wanted[i][3], wanted[i][1], wanted[i][2]
            );
        END IF;
    END LOOP;
END $$;
"""

# Columns in RunRecord's field order, so a row is rows.run_row(run).
_RUN_COLUMNS = ", ".join(field.name for field in dataclasses.fields(RunRecord))
_RUN_FIELDS = [field.name for field in dataclasses.fields(RunRecord)]
_INSERT_RUN = (
    f"INSERT INTO flujo_runs ({_RUN_COLUMNS})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(_RUN_FIELDS) + 1))})"
)
_UPSERT_RUN = (
    f"{_INSERT_RUN} ON CONFLICT (run_id) DO UPDATE SET"
    f" {', '.join(f'{name} = EXCLUDED.{name}' for name in _RUN_FIELDS[1:])}"
)
# The whole header, written only while the owner (the last parameter) still holds the run.
_UPDATE_OWNED_RUN = (
    "UPDATE flujo_runs SET"
    f" {', '.join(f'{name} = ${n}' for n, name in enumerate(_RUN_FIELDS[1:], start=2))}"
    f" WHERE run_id = $1 AND owner = ${len(_RUN_FIELDS) + 1}"
)
_LEASE = "SELECT status, owner, lease_until FROM flujo_runs WHERE run_id = $1"
# Columns in StepRecord's field order, so a row is _step_row(step) (astuple, without its deep copy).
_step_row = operator.attrgetter(*(field.name for field in dataclasses.fields(StepRecord)))
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
    " r.error, r.pause_message, r.schema_version, r.owner, r.lease_until, r.owed"
    " FROM flujo_runs r"
)


def _fields(row: Any) -> dict[str, object]:
    """Return an asyncpg record as a mapping of record field names to stored values."""
    values: dict[str, object] = dict(row.items())
    if "idx" in values:
        values["index"] = values.pop("idx")
    return values


class PostgresBackend:
    """A ``StateBackend`` in PostgreSQL; tables are created on first use.

    asyncpg pools belong to the event loop that opened them, and ``runner.run()``
    runs each call on a loop of its own, so the backend keeps one pool per event
    loop, opened lazily by the first call on that loop. ``close()`` closes the
    calling loop's pool only: runs on other threads' loops keep theirs. Each pool
    holds one connection at first (``min_size``) and at most ``max_size``. The
    tables are made once per backend, by the first pool.

    It is ``AtomicCheckpoints`` for the providers its ``provider()`` makes.
    """

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pools: PerLoop[asyncpg.Pool] = PerLoop(self._open, close_pool, terminate_pool)
        self._tables_made = False

    async def _open(self) -> asyncpg.Pool:
        try:
            import asyncpg  # noqa: F401  # installed: said here, where it is missing
        except ImportError as exc:
            raise ConfigurationError(
                "PostgresBackend needs asyncpg: pip install 'flujo[postgres]'"
            ) from exc
        pool = await create_pool(self.dsn, min_size=self._min_size, max_size=self._max_size)
        if self._tables_made:
            return pool
        try:
            async with pool.acquire() as conn:
                # Serialised so concurrent processes do not race on CREATE TABLE.
                await conn.execute("SELECT pg_advisory_lock(726764)")
                try:
                    await conn.execute(_SCHEMA + STATE_SCHEMA)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(726764)")
        except BaseException:
            await pool.close()
            raise
        self._tables_made = True
        return pool

    def provider(self, *, namespace: str = "default") -> PostgresStateProvider:
        """Return a state provider in this database that shares this backend's pools.

        Its values live in the same ``flujo_state`` table a ``PostgresStateProvider``
        on this database uses; its ``close()`` does nothing (the backend owns the
        pools). ``holds()`` is true for it, so a step's saves to it commit with the
        step's checkpoint in one transaction.
        """
        return PostgresStateProvider._on(self._pools, self.dsn, namespace=namespace)

    def holds(self, provider: object) -> bool:
        """Whether ``provider`` came from ``self.provider()``, so it shares these pools.

        A ``PostgresStateProvider`` built from a DSN has pools of its own and cannot
        join this backend's transactions, even on the same database: it is not held.
        """
        return isinstance(provider, PostgresStateProvider) and provider.uses(self._pools)

    async def checkpoint_with(
        self, step: StepRecord, writes: Sequence[tuple[object, Write[Any]]]
    ) -> list[int]:
        """Write ``step`` and every ``(provider, write)`` in one transaction; new versions.

        Every write is compare-and-swap as in ``save_versioned``: on a mismatch
        nothing is written, neither the record nor any value, and it raises
        ``StateConflictError``. A provider this backend does not hold is a
        ``StateBackendError``, and a value JSON cannot hold a ``StateSaveError`` naming
        the key (its ``TypeError`` chained), both raised before anything is written:
        the engine fails the step on a ``StateError``, where a bare ``TypeError``
        would escape the run.
        """
        rows: list[StateRow] = []
        for provider, write in writes:
            if not isinstance(provider, PostgresStateProvider) or not self.holds(provider):
                raise StateBackendError(
                    f"checkpoint of run {step.run_id!r} at step {step.index}: {provider!r} "
                    "does not share the pools of this PostgreSQL backend; only providers "
                    "made by its provider() can join its transaction"
                )
            try:
                rows.append(provider.row(write))
            except TypeError as exc:
                raise StateSaveError(str(exc)) from exc
        args, where = _step_row(step), described(self.dsn)

        async def commit(pool: asyncpg.Pool) -> list[int]:
            async with pool.acquire() as conn, conn.transaction():
                versions = await write_rows(conn, rows, where)
                await conn.execute(_INSERT_STEP, *args)
                return versions

        return await self._run(
            f"checkpoint of run {step.run_id!r} at step {step.index} with {len(rows)} value(s)",
            commit,
        )

    async def _run(self, what: str, fn: Callable[[asyncpg.Pool], Awaitable[R]]) -> R:
        try:
            return await fn(await self._pools.get())
        except (OSError, TimeoutError) as exc:
            raise StateBackendError(f"{what} failed (PostgreSQL unreachable): {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("asyncpg"):
                raise StateBackendError(f"{what} failed: {exc}") from exc
            raise

    async def create_run(self, run: RunRecord, *, replace: bool = False) -> None:
        """Insert a new run's header; ``replace`` deletes a stored run of that id, atomically."""
        args = run_row(run)

        async def create(pool: asyncpg.Pool) -> None:
            async with pool.acquire() as conn, conn.transaction():
                stored = await conn.fetchrow(f"{_LEASE} FOR UPDATE", run.run_id)
                if stored is not None:
                    if not replace:
                        raise RunExistsError.stored(run.run_id, stored["status"])
                    owner, until = stored["owner"], stored["lease_until"]
                    if owner is not None and (until or 0.0) > run.updated_at:
                        raise RunLeasedError.held(run.run_id, owner, until, run.updated_at)
                    # The old run's steps go with its header, by cascade.
                    await conn.execute("DELETE FROM flujo_runs WHERE run_id = $1", run.run_id)
                inserted = await conn.fetchval(
                    f"{_INSERT_RUN} ON CONFLICT (run_id) DO NOTHING RETURNING 1", *args
                )
                if inserted is None:  # created meanwhile by another process
                    raise RunExistsError.stored(run.run_id, "running")

        await self._run(f"creating run {run.run_id!r}", create)

    async def claim_run(
        self, run_id: str, *, owner: str, lease_until: float, now: float
    ) -> RunRecord:
        """Take the lease of a run that has no owner or whose lease expired (one statement)."""
        await self.load_run(run_id)  # a damaged run is never claimed (StateCorruptError)
        claim = (
            "UPDATE flujo_runs SET owner = $2, lease_until = $3 WHERE run_id = $1"
            " AND (owner IS NULL OR COALESCE(lease_until, 0) <= $4) RETURNING 1"
        )
        claimed = await self._run(
            f"claiming run {run_id!r}",
            lambda p: p.fetchval(claim, run_id, owner, lease_until, now),
        )
        if claimed is None:
            await self._not_held(run_id, now)
        sql = f"{_CURRENT_RUN} WHERE r.run_id = $1"
        row = await self._run(f"loading run {run_id!r}", lambda p: p.fetchrow(sql, run_id))
        if row is None:
            raise RunNotFoundError(f"no run {run_id!r} in PostgreSQL (deleted as it was claimed)")
        return run_record(_fields(row), run_id)

    async def renew_lease(self, run_id: str, *, owner: str, lease_until: float) -> None:
        """Extend ``owner``'s lease while it still holds the run (one statement)."""
        renew = (
            "UPDATE flujo_runs SET lease_until = $3 WHERE run_id = $1 AND owner = $2 RETURNING 1"
        )
        renewed = await self._run(
            f"renewing the lease of run {run_id!r}",
            lambda p: p.fetchval(renew, run_id, owner, lease_until),
        )
        if renewed is None:
            await self._not_held(run_id, None)

    async def _not_held(self, run_id: str, now: float | None) -> None:
        """Raise why a write guarded by an owner matched no row."""
        stored = await self._run(f"loading run {run_id!r}", lambda p: p.fetchrow(_LEASE, run_id))
        if stored is None:
            raise RunNotFoundError(f"no run {run_id!r} in PostgreSQL")
        raise RunLeasedError.held(run_id, stored["owner"], stored["lease_until"], now)

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        """Insert or replace a run header (with ``owner``: only while it holds the lease)."""
        args = run_row(run)
        if owner is None:
            await self._run(f"saving run {run.run_id!r}", lambda p: p.execute(_UPSERT_RUN, *args))
            return
        written = await self._run(
            f"saving run {run.run_id!r}",
            lambda p: p.fetchval(f"{_UPDATE_OWNED_RUN} RETURNING 1", *args, owner),
        )
        if written is None:
            await self._not_held(run.run_id, None)

    async def checkpoint(self, step: StepRecord) -> None:
        """Append the step record: one row."""
        args = _step_row(step)
        await self._run(
            f"checkpoint of run {step.run_id!r} at step {step.index}",
            lambda p: p.execute(_INSERT_STEP, *args),
        )

    async def load_run(self, run_id: str) -> RunRecord | None:
        """Return the run header or ``None``."""
        sql = f"{_CURRENT_RUN} WHERE r.run_id = $1"
        row = await self._run(f"loading run {run_id!r}", lambda p: p.fetchrow(sql, run_id))
        return None if row is None else run_record(_fields(row), run_id)

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        """Return the run's steps in order."""
        sql = (
            "SELECT run_id, idx, name, success, result, context, recorded_at, pending"
            " FROM flujo_steps WHERE run_id = $1 ORDER BY idx"
        )
        rows = await self._run(
            f"loading the steps of run {run_id!r}", lambda p: p.fetch(sql, run_id)
        )
        return [step_record(_fields(r), run_id) for r in rows]

    async def list_runs(
        self, *, status: RunStatus | None, limit: int
    ) -> Sequence[RunRecord | DamagedRun]:
        """Return up to ``limit`` headers, most recently updated first; damaged ones as such."""
        status, limit = check_status(status), check_limit(limit)
        if status is None:
            sql = f"SELECT * FROM ({_CURRENT_RUN}) c ORDER BY updated_at DESC LIMIT $1"
            rows = await self._run("listing runs", lambda p: p.fetch(sql, limit))
        else:
            sql = (
                f"SELECT * FROM ({_CURRENT_RUN} WHERE r.status = $1) c"
                " ORDER BY updated_at DESC LIMIT $2"
            )
            rows = await self._run("listing runs", lambda p: p.fetch(sql, status, limit))
        return listed(_fields(r) for r in rows)

    async def delete_run(self, run_id: str) -> None:
        """Remove a run and its steps (the steps go by cascade)."""
        await self._run(
            f"deleting run {run_id!r}",
            lambda p: p.execute("DELETE FROM flujo_runs WHERE run_id = $1", run_id),
        )

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        """Delete old runs in ``statuses``; return how many."""
        older_than, statuses = check_cutoff(older_than), check_statuses(statuses)
        sql = "DELETE FROM flujo_runs WHERE updated_at < $1 AND status = ANY($2::text[])"
        outcome = await self._run(
            "pruning runs", lambda p: p.execute(sql, older_than, list(statuses))
        )
        return int(str(outcome).rsplit(" ", 1)[-1])

    async def close(self) -> None:
        """Close the calling event loop's pool (the next call opens a new one); others stay."""
        await self._pools.close()
