"""Run state in an embedded SQLite file (WAL mode), on a dedicated worker thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from flujo.domain.errors import StateBackendError
from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.infra.sqlite_worker import SQLiteWorker, transaction

__all__ = ["SQLiteBackend"]

R = TypeVar("R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flujo_runs (
    run_id TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    pipeline_version TEXT NOT NULL,
    status TEXT NOT NULL,
    step_index INTEGER NOT NULL,
    context BLOB NOT NULL,
    output BLOB NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    schema_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS flujo_steps (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    result BLOB NOT NULL,
    PRIMARY KEY (run_id, idx)
);
"""

_UPSERT_RUN = (
    "INSERT OR REPLACE INTO flujo_runs (run_id, pipeline_name, pipeline_version, status,"
    " step_index, context, output, created_at, updated_at, schema_version)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_STEP = "INSERT OR REPLACE INTO flujo_steps (run_id, idx, name, result) VALUES (?, ?, ?, ?)"
_SELECT_RUN = (
    "SELECT run_id, pipeline_name, pipeline_version, status, step_index, context, output,"
    " created_at, updated_at, schema_version FROM flujo_runs WHERE run_id = ?"
)


def _run_row(run: RunRecord) -> tuple[object, ...]:
    return (
        run.run_id,
        run.pipeline_name,
        run.pipeline_version,
        run.status,
        run.step_index,
        run.context,
        run.output,
        run.created_at,
        run.updated_at,
        run.schema_version,
    )


class SQLiteBackend:
    """A ``StateBackend`` in one SQLite file; the file and its folder are made on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._worker = SQLiteWorker(self.path, _SCHEMA)

    async def _run(self, what: str, fn: Callable[[sqlite3.Connection], R]) -> R:
        try:
            return await self._worker.run(fn)
        except (sqlite3.Error, OSError) as exc:
            raise StateBackendError(f"{what} failed ({self.path}): {exc}") from exc

    async def save_run(self, run: RunRecord) -> None:
        """Insert or replace a run header."""
        await self._run(
            f"saving run {run.run_id!r}",
            lambda c: transaction(c, [(_UPSERT_RUN, _run_row(run))]),
        )

    async def checkpoint(self, run: RunRecord, step: StepRecord) -> None:
        """Append the step and store the header in one transaction."""
        statements = [
            (_INSERT_STEP, (step.run_id, step.index, step.name, step.result)),
            (_UPSERT_RUN, _run_row(run)),
        ]
        await self._run(
            f"checkpoint of run {run.run_id!r} at step {step.index}",
            lambda c: transaction(c, statements),
        )

    async def load_run(self, run_id: str) -> RunRecord | None:
        """Return the run header or ``None``."""
        row = await self._run(
            f"loading run {run_id!r}", lambda c: c.execute(_SELECT_RUN, (run_id,)).fetchone()
        )
        if row is None:
            return None
        return RunRecord(
            run_id=row[0],
            pipeline_name=row[1],
            pipeline_version=row[2],
            status=row[3],
            step_index=row[4],
            context=bytes(row[5]),
            output=bytes(row[6]),
            created_at=row[7],
            updated_at=row[8],
            schema_version=row[9],
        )

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        """Return the run's steps in order."""
        rows = await self._run(
            f"loading the steps of run {run_id!r}",
            lambda c: c.execute(
                "SELECT run_id, idx, name, result FROM flujo_steps WHERE run_id = ? ORDER BY idx",
                (run_id,),
            ).fetchall(),
        )
        return [StepRecord(run_id=r[0], index=r[1], name=r[2], result=bytes(r[3])) for r in rows]

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

    async def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        await self._worker.close()
