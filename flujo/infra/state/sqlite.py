"""Run state in an embedded SQLite file (WAL mode), on a dedicated worker thread.

The file also holds the table of the state providers ``SQLiteBackend.provider()``
makes: they share the backend's one connection, so ``checkpoint_with`` commits
their compare-and-swap writes and a step record in one transaction.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from flujo.domain.errors import (
    RunExistsError,
    RunLeasedError,
    RunNotFoundError,
    StateBackendError,
    StateSaveError,
)
from flujo.domain.interfaces import RunRecord, StepRecord, Write
from flujo.domain.models import DamagedRun, RunStatus
from flujo.domain.run_queries import check_cutoff, check_limit, check_status, check_statuses
from flujo.infra.providers.sqlite import SQLiteStateProvider, StateRow, write_rows
from flujo.infra.sqlite_layout import LAYOUT_VERSION, MIGRATIONS, RUN_TABLES, STATE_TABLE
from flujo.infra.sqlite_worker import SQLiteWorker, in_transaction, transaction
from flujo.infra.state.rows import listed, run_record, run_row, step_record

__all__ = ["SQLiteBackend"]

R = TypeVar("R")

# Columns in RunRecord's field order, so a row is rows.run_row(run).
_RUN_COLUMNS = ", ".join(field.name for field in dataclasses.fields(RunRecord))
# A running run's progress lives in its step records (the header is not rewritten per step).
_CURRENT_RUN = (
    "SELECT r.run_id, r.pipeline_name, r.pipeline_version, r.status,"
    " CASE WHEN r.status = 'running' THEN COALESCE("
    "(SELECT SUM(s.success AND NOT s.pending) FROM flujo_steps s WHERE s.run_id = r.run_id),"
    " r.step_index)"
    " ELSE r.step_index END AS step_index,"
    " r.input, r.context, r.created_at,"
    " CASE WHEN r.status = 'running' THEN max(r.updated_at, COALESCE("
    "(SELECT MAX(s.recorded_at) FROM flujo_steps s WHERE s.run_id = r.run_id), 0))"
    " ELSE r.updated_at END AS current_update,"
    " r.error, r.pause_message, r.schema_version, r.owner, r.lease_until, r.owed"
    " FROM flujo_runs r"
)
_UPSERT_RUN = (
    f"INSERT OR REPLACE INTO flujo_runs ({_RUN_COLUMNS})"
    f" VALUES ({', '.join('?' * len(dataclasses.fields(RunRecord)))})"
)
# The whole header, written only while ``owner`` still holds the run (the last parameter).
_UPDATE_OWNED_RUN = (
    "UPDATE flujo_runs SET"
    f" {', '.join(f'{field.name} = ?' for field in dataclasses.fields(RunRecord)[1:])}"
    " WHERE run_id = ? AND owner = ?"
)
_LEASE = "SELECT status, owner, lease_until FROM flujo_runs WHERE run_id = ?"
_INSERT_STEP = (
    "INSERT OR REPLACE INTO flujo_steps"
    " (run_id, idx, name, success, result, context, recorded_at, pending)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_STEPS = (
    "SELECT run_id, idx, name, success, result, context, recorded_at, pending FROM flujo_steps"
    " WHERE run_id = ? ORDER BY idx"
)


def _step_row(step: StepRecord) -> tuple[object, ...]:
    """Return the ``flujo_steps`` row of a step record."""
    return (
        step.run_id,
        step.index,
        step.name,
        int(step.success),
        step.result,
        step.context,
        step.recorded_at,
        int(step.pending),
    )


# Result columns named otherwise than the record fields they hold.
_FIELDS = {"current_update": "updated_at", "idx": "index"}


def _fetch(cursor: sqlite3.Cursor) -> list[dict[str, object]]:
    """Return the cursor's rows as mappings of record field names to stored values."""
    names = [_FIELDS.get(d[0], d[0]) for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class SQLiteBackend:
    """A ``StateBackend`` in one SQLite file; the file and its folder are made on first use.

    A file of an older layout is migrated in place on first use; a newer one is refused.
    It is ``AtomicCheckpoints`` for the providers its ``provider()`` makes, and
    ``SharedAcrossLoops``: its one connection serves every thread and event loop.
    """

    shared_across_loops = True
    """Its connection is not bound to an event loop: a runner closes it once no run uses it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._worker = SQLiteWorker(
            self.path, RUN_TABLES + STATE_TABLE, LAYOUT_VERSION, migrations=MIGRATIONS
        )

    def provider(self, *, namespace: str = "default") -> SQLiteStateProvider:
        """Return a state provider in this file that shares this backend's connection.

        Its values live in the same ``flujo_state`` table a ``SQLiteStateProvider``
        on this path uses; its ``close()`` does nothing (the backend owns the
        connection). ``holds()`` is true for it, so a step's saves to it commit
        with the step's checkpoint in one transaction.
        """
        return SQLiteStateProvider._on(self._worker, namespace=namespace)

    def holds(self, provider: object) -> bool:
        """Whether ``provider`` came from ``self.provider()``, so it shares this connection.

        A ``SQLiteStateProvider`` built on the same path has a connection of its
        own and cannot join this backend's transactions: it is not held.
        """
        return isinstance(provider, SQLiteStateProvider) and provider.uses(self._worker)

    async def checkpoint_with(
        self, step: StepRecord, writes: Sequence[tuple[object, Write[Any]]]
    ) -> list[int]:
        """Write ``step`` and every ``(provider, write)`` in one transaction; new versions.

        Every write is compare-and-swap as in ``save_versioned``: on a mismatch
        nothing is written, neither the record nor any value, and it raises
        ``StateConflictError``. A provider this backend does not hold is a
        ``StateBackendError``, raised before anything is written.
        """
        rows: list[StateRow] = []
        for provider, write in writes:
            if not isinstance(provider, SQLiteStateProvider) or not self.holds(provider):
                raise StateBackendError(
                    f"checkpoint of run {step.run_id!r} at step {step.index}: {provider!r} "
                    f"does not share the connection of the SQLite backend at {self.path}; "
                    "only providers made by its provider() can join its transaction"
                )
            try:
                rows.append(provider.row(write))
            except (TypeError, ValueError) as exc:  # not JSON: a failed save, as anywhere else
                raise StateSaveError(
                    f"checkpoint of run {step.run_id!r} at step {step.index}: the value for key "
                    f"{write.key!r} of the SQLite state provider at {self.path} cannot be "
                    f"stored as JSON ({exc}); nothing was written"
                ) from exc
        step_row = _step_row(step)
        where = f"SQLite state provider at {self.path}"

        def commit(conn: sqlite3.Connection) -> list[int]:
            versions = write_rows(conn, rows, where)
            conn.execute(_INSERT_STEP, step_row)
            return versions

        return await self._run(
            f"checkpoint of run {step.run_id!r} at step {step.index} with {len(rows)} value(s)",
            lambda c: in_transaction(c, commit),
            quick=True,
        )

    async def _run(
        self, what: str, fn: Callable[[sqlite3.Connection], R], *, quick: bool = False
    ) -> R:
        """Run ``fn`` on the connection; ``quick`` (one run's rows) may run it inline."""
        try:
            return await self._worker.run(fn, quick=quick)
        except (sqlite3.Error, OSError) as exc:
            raise StateBackendError(f"{what} failed ({self.path}): {exc}") from exc

    async def create_run(self, run: RunRecord, *, replace: bool = False) -> None:
        """Insert a new run's header; ``replace`` deletes a stored run of that id, atomically."""
        row = run_row(run)

        def create(conn: sqlite3.Connection) -> None:
            stored = conn.execute(_LEASE, (run.run_id,)).fetchone()
            if stored is not None:
                status, owner, until = stored
                if not replace:
                    raise RunExistsError.stored(run.run_id, status)
                if owner is not None and (until or 0.0) > run.updated_at:
                    raise RunLeasedError.held(run.run_id, owner, until, run.updated_at)
                conn.execute("DELETE FROM flujo_steps WHERE run_id = ?", (run.run_id,))
            conn.execute(_UPSERT_RUN, row)

        # Quick: one run's rows; a locked file still sends it to the worker, which waits.
        await self._run(
            f"creating run {run.run_id!r}", lambda c: in_transaction(c, create), quick=True
        )

    async def claim_run(
        self, run_id: str, *, owner: str, lease_until: float, now: float
    ) -> RunRecord:
        """Take the lease of a run that has no owner or whose lease expired (one transaction)."""
        sql = f"{_CURRENT_RUN} WHERE r.run_id = ?"

        def claim(conn: sqlite3.Connection) -> Any:
            rows = _fetch(conn.execute(sql, (run_id,)))
            if not rows:
                raise RunNotFoundError(f"no run {run_id!r} in the SQLite file {self.path}")
            checked = run_record(rows[0], run_id)  # a damaged run is never claimed
            holder, until = checked.owner, checked.lease_until
            if holder is not None and (until or 0.0) > now:
                raise RunLeasedError.held(run_id, holder, until, now)
            conn.execute(
                "UPDATE flujo_runs SET owner = ?, lease_until = ? WHERE run_id = ?",
                (owner, lease_until, run_id),
            )
            return _fetch(conn.execute(sql, (run_id,)))[0]

        row = await self._run(f"claiming run {run_id!r}", lambda c: in_transaction(c, claim))
        return run_record(row, run_id)

    async def renew_lease(self, run_id: str, *, owner: str, lease_until: float) -> None:
        """Extend ``owner``'s lease while it still holds the run (one statement)."""
        renewed = await self._run(
            f"renewing the lease of run {run_id!r}",
            lambda c: (
                c.execute(
                    "UPDATE flujo_runs SET lease_until = ? WHERE run_id = ? AND owner = ?",
                    (lease_until, run_id, owner),
                ).rowcount
            ),
            quick=True,
        )
        if not renewed:
            await self._not_held(run_id)

    async def _not_held(self, run_id: str) -> None:
        """Raise why a write guarded by an owner matched no row."""
        stored = await self._run(
            f"loading run {run_id!r}", lambda c: c.execute(_LEASE, (run_id,)).fetchone()
        )
        if stored is None:
            raise RunNotFoundError(f"no run {run_id!r} in the SQLite file {self.path}")
        raise RunLeasedError.held(run_id, stored[1], stored[2], None)

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        """Insert or replace a run header (with ``owner``: only while it holds the lease)."""
        row = run_row(run)
        if owner is None:
            await self._run(
                f"saving run {run.run_id!r}", lambda c: c.execute(_UPSERT_RUN, row), quick=True
            )
            return
        params = (*row[1:], run.run_id, owner)
        written = await self._run(
            f"saving run {run.run_id!r}",
            lambda c: c.execute(_UPDATE_OWNED_RUN, params).rowcount,
            quick=True,
        )
        if not written:
            await self._not_held(run.run_id)

    async def checkpoint(self, step: StepRecord) -> None:
        """Append the step record: one row, one transaction."""
        row = _step_row(step)
        await self._run(
            f"checkpoint of run {step.run_id!r} at step {step.index}",
            lambda c: c.execute(_INSERT_STEP, row),
            quick=True,
        )

    async def finish_run(self, step: StepRecord, run: RunRecord, *, owner: str | None) -> None:
        """Append the last step record and save the final header in one transaction."""
        record, header = _step_row(step), run_row(run)

        def finish(conn: sqlite3.Connection) -> bool:
            if owner is None:
                conn.execute(_UPSERT_RUN, header)
            elif not conn.execute(_UPDATE_OWNED_RUN, (*header[1:], run.run_id, owner)).rowcount:
                return False  # not the lease holder: the record is not written either
            conn.execute(_INSERT_STEP, record)
            return True

        finished = await self._run(
            f"finishing run {run.run_id!r} at step {step.index}",
            lambda c: in_transaction(c, finish),
            quick=True,
        )
        if not finished:
            await self._not_held(run.run_id)

    async def load_run(self, run_id: str) -> RunRecord | None:
        """Return the run header or ``None``."""
        sql = f"{_CURRENT_RUN} WHERE r.run_id = ?"
        rows = await self._run(
            f"loading run {run_id!r}", lambda c: _fetch(c.execute(sql, (run_id,))), quick=True
        )
        return run_record(rows[0], run_id) if rows else None

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        """Return the run's steps in order."""
        rows = await self._run(
            f"loading the steps of run {run_id!r}",
            lambda c: _fetch(c.execute(_SELECT_STEPS, (run_id,))),
        )
        return [step_record(row, run_id) for row in rows]

    async def list_runs(
        self, *, status: RunStatus | None, limit: int
    ) -> Sequence[RunRecord | DamagedRun]:
        """Return up to ``limit`` headers, most recently updated first; damaged ones as such."""
        status, limit = check_status(status), check_limit(limit)
        where, params = ("WHERE r.status = ?", (status, limit)) if status else ("", (limit,))
        sql = f"{_CURRENT_RUN} {where} ORDER BY current_update DESC LIMIT ?"
        rows = await self._run("listing runs", lambda c: _fetch(c.execute(sql, params)))
        return listed(rows)

    async def delete_run(self, run_id: str) -> None:
        """Remove a run and its steps."""
        await self._run(
            f"deleting run {run_id!r}",
            lambda c: transaction(
                c,
                [
                    ("DELETE FROM flujo_steps WHERE run_id = ?", (run_id,)),
                    ("DELETE FROM flujo_runs WHERE run_id = ?", (run_id,)),
                ],
            ),
        )

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        """Delete old runs in ``statuses``; return how many."""
        older_than, statuses = check_cutoff(older_than), check_statuses(statuses)
        marks = ", ".join("?" * len(statuses))
        chosen = f"SELECT run_id FROM flujo_runs WHERE updated_at < ? AND status IN ({marks})"
        params = (older_than, *statuses)

        def prune(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"DELETE FROM flujo_steps WHERE run_id IN ({chosen})", params)
                count = conn.execute(
                    f"DELETE FROM flujo_runs WHERE run_id IN ({chosen})", params
                ).rowcount
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return int(count)

        if not statuses:
            return 0
        return await self._run("pruning runs", prune)

    async def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        await self._worker.close()
