"""Run state in PostgreSQL through asyncpg (install the ``postgres`` extra).

The database also holds the ``flujo_state`` table of the state providers
``PostgresBackend.provider()`` makes: they share the backend's pools, so
``checkpoint_with`` commits their compare-and-swap writes and a step record in
one transaction.
"""

from __future__ import annotations

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
from flujo.infra.pg_lane import Lane, close_lane
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
from flujo.infra.state.postgres_sql import (
    CREATE_RUN,
    CURRENT_RUN,
    DELETE_RUN,
    INSERT_NEW_RUN,
    INSERT_STEP,
    LEASE,
    PRUNE,
    SCHEMA,
    UPDATE_OWNED_RUN,
    UPSERT_RUN,
    step_row,
)
from flujo.infra.state.postgres_writes import CHECKPOINT, FINISH, write_record
from flujo.infra.state.rows import listed, run_record, run_row, step_record

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresBackend"]

R = TypeVar("R")

_PENDING_KEPT = 4096
"""At most this many pending records remembered (see ``PostgresBackend._pending``)."""


def _translated(what: str, exc: Exception) -> Exception:
    """Return the error to raise for ``exc``: a ``StateBackendError`` for the server's."""
    if isinstance(exc, OSError | TimeoutError):
        return StateBackendError(f"{what} failed (PostgreSQL unreachable): {exc}")
    if type(exc).__module__.startswith("asyncpg"):
        return StateBackendError(f"{what} failed: {exc}")
    return exc


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
    tables are made once per backend, by the first pool. Each loop's statements run
    on one connection the backend keeps from its pool (a ``Lane``: no acquire and
    release per statement); a statement that finds it busy, as when two runs share
    the loop, takes another connection from the pool.

    It is ``AtomicCheckpoints`` for the providers its ``provider()`` makes.
    """

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pools: PerLoop[asyncpg.Pool] = PerLoop(self._open, close_pool, terminate_pool)
        # A lane's connection is its pool's: terminating the pool drops it with the rest.
        self._lanes: PerLoop[Lane] = PerLoop(self._open_lane, close_lane)
        self._tables_made = False
        # Records this backend wrote pending, whose committed record replaces them: that
        # write goes straight to the upsert rather than failing the plain insert first.
        self._pending: set[tuple[str, int]] = set()

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
                    await conn.execute(SCHEMA + STATE_SCHEMA)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(726764)")
        except BaseException:
            await pool.close()
            raise
        self._tables_made = True
        return pool

    async def _open_lane(self) -> Lane:
        return Lane(await self._pools.get())

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
        args, where = step_row(step), described(self.dsn)

        async def commit(conn: asyncpg.Connection) -> list[int]:
            async with conn.transaction():
                versions = await write_rows(conn, rows, where)
                await conn.execute(INSERT_STEP, *args)
                return versions

        return await self._run(
            f"checkpoint of run {step.run_id!r} at step {step.index} with {len(rows)} value(s)",
            commit,
        )

    async def _run(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[R]]) -> R:
        try:
            return await (self._lanes.opened() or await self._lanes.get()).run(fn)
        except Exception as exc:
            translated = _translated(what, exc)
            if translated is exc:
                raise
            raise translated from exc

    async def create_run(self, run: RunRecord, *, replace: bool = False) -> None:
        """Insert a new run's header; ``replace`` deletes a stored run of that id, atomically."""
        args, what = run_row(run), f"creating run {run.run_id!r}"
        # Without replace a free id, the usual case, takes one plain insert; with replace
        # the id is most often stored already, and CREATE_RUN alone is one round trip.
        if not replace and await self._run(what, lambda c: c.fetchval(INSERT_NEW_RUN, *args)):
            return
        made, status, owner, until = await self._run(
            what, lambda c: c.fetchrow(CREATE_RUN, *args, replace, run.updated_at)
        )
        if made:
            return
        if status is None:  # created meanwhile by another process
            raise RunExistsError.stored(run.run_id, "running")
        if not replace:
            raise RunExistsError.stored(run.run_id, status)
        raise RunLeasedError.held(run.run_id, owner, until, run.updated_at)

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
        sql = f"{CURRENT_RUN} WHERE r.run_id = $1"
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
        stored = await self._run(f"loading run {run_id!r}", lambda p: p.fetchrow(LEASE, run_id))
        if stored is None:
            raise RunNotFoundError(f"no run {run_id!r} in PostgreSQL")
        raise RunLeasedError.held(run_id, stored["owner"], stored["lease_until"], now)

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        """Insert or replace a run header (with ``owner``: only while it holds the lease)."""
        args = run_row(run)
        if owner is None:
            await self._run(f"saving run {run.run_id!r}", lambda p: p.execute(UPSERT_RUN, *args))
            return
        written = await self._run(
            f"saving run {run.run_id!r}",
            lambda p: p.fetchval(f"{UPDATE_OWNED_RUN} RETURNING 1", *args, owner),
        )
        if written is None:
            await self._not_held(run.run_id, None)

    async def checkpoint(self, step: StepRecord) -> None:
        """Append the step record: one row (replacing a record the step had, if any)."""
        args, pending = step_row(step), self._pending
        replaces = False
        if step.pending:
            if len(pending) >= _PENDING_KEPT:
                pending.clear()  # forgotten ones take the insert's fallback: still correct
            pending.add((step.run_id, step.index))
        elif pending and (step.run_id, step.index) in pending:
            pending.discard((step.run_id, step.index))
            replaces = True
        try:  # not through _run: its message is made only when the checkpoint fails
            lane = self._lanes.opened() or await self._lanes.get()
            await lane.run(write_record, args, CHECKPOINT, replaces)
        except Exception as exc:
            translated = _translated(f"checkpoint of run {step.run_id!r} at step {step.index}", exc)
            if translated is exc:
                raise
            raise translated from exc

    async def finish_run(self, step: StepRecord, run: RunRecord, *, owner: str | None) -> None:
        """Append the last step record and save the final header: one statement."""
        what = f"finishing run {run.run_id!r} at step {step.index}"
        header, record = run_row(run), step_row(step)
        replaces = (step.run_id, step.index) in self._pending  # its pending record
        self._pending.discard((step.run_id, step.index))
        if owner is None:

            async def both(conn: asyncpg.Connection) -> None:
                async with conn.transaction():
                    await conn.execute(UPSERT_RUN, *header)
                    await conn.execute(INSERT_STEP, *record)

            await self._run(what, both)
            return
        finished = await self._run(
            what, lambda c: write_record(c, (*header, owner, *record), FINISH, replaces)
        )
        if not finished:
            await self._not_held(run.run_id, None)

    async def load_run(self, run_id: str) -> RunRecord | None:
        """Return the run header or ``None``."""
        sql = f"{CURRENT_RUN} WHERE r.run_id = $1"
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
            sql = f"SELECT * FROM ({CURRENT_RUN}) c ORDER BY updated_at DESC LIMIT $1"
            rows = await self._run("listing runs", lambda p: p.fetch(sql, limit))
        else:
            sql = (
                f"SELECT * FROM ({CURRENT_RUN} WHERE r.status = $1) c"
                " ORDER BY updated_at DESC LIMIT $2"
            )
            rows = await self._run("listing runs", lambda p: p.fetch(sql, status, limit))
        return listed(_fields(r) for r in rows)

    async def delete_run(self, run_id: str) -> None:
        """Remove a run and its steps (one statement)."""
        await self._run(f"deleting run {run_id!r}", lambda p: p.execute(DELETE_RUN, run_id))

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        """Delete old runs in ``statuses``; return how many."""
        older_than, statuses = check_cutoff(older_than), check_statuses(statuses)
        pruned = await self._run(
            "pruning runs", lambda p: p.fetchval(PRUNE, older_than, list(statuses))
        )
        return int(pruned)

    async def close(self) -> None:
        """Close the calling event loop's pool (the next call opens a new one); others stay."""
        await self._lanes.close()  # first: the pool's close waits for the lane's connection
        await self._pools.close()
