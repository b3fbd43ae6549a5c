"""Run state kept in process memory (tests, and runs that need not survive the process)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from flujo.domain.errors import RunExistsError, RunLeasedError, RunNotFoundError
from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.domain.models import DamagedRun, RunStatus
from flujo.domain.run_queries import check_cutoff, check_limit, check_status, check_statuses
from flujo.infra.state.rows import listed, run_record, step_record

__all__ = ["InMemoryBackend"]


def _row(record: RunRecord | StepRecord) -> dict[str, object]:
    """Return ``record`` as a row: nothing checks the types of what ``save_run`` is given."""
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}


class InMemoryBackend:
    """A ``StateBackend`` holding records in dicts; lost when the process ends.

    Records are checked as they are read back, like a database's rows: one saved
    with a value that does not fit (an unknown status, say) is a ``StateCorruptError``.
    Each method reads and changes its dicts under one lock without awaiting in
    between, so the compare-and-swap of a lease is atomic among tasks, and runs on
    several threads (``runner.run()`` from a thread pool) may share it: a listing
    never sees a dict change under it.
    """

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, dict[int, StepRecord]] = {}
        self._lock = threading.Lock()

    def _current(self, run: RunRecord) -> RunRecord:
        """Return ``run`` with the progress of its step records (call under the lock)."""
        if run.status != "running":
            return run
        steps = self._steps.get(run.run_id, {})
        if not steps:
            return run
        times = [run.updated_at, *(s.recorded_at for s in steps.values())]
        return dataclasses.replace(
            run,
            step_index=sum(1 for s in steps.values() if s.success and not s.pending),
            updated_at=max(times, key=_time_key),  # a damaged time wins, and is reported
        )

    def _held(self, run_id: str, owner: str, now: float | None) -> RunRecord:
        """Return the stored header if ``owner`` holds it; raise otherwise."""
        stored = self._runs.get(run_id)
        if stored is None:
            raise RunNotFoundError(f"no run {run_id!r} in the in-memory state backend")
        if stored.owner != owner:
            raise RunLeasedError.held(run_id, stored.owner, stored.lease_until, now)
        return stored

    async def create_run(self, run: RunRecord, *, replace: bool = False) -> None:
        """Insert a new run's header; ``replace`` deletes a stored run of that id first."""
        with self._lock:
            stored = self._runs.get(run.run_id)
            if stored is not None:
                if not replace:
                    raise RunExistsError.stored(run.run_id, stored.status)
                if stored.owner is not None and (stored.lease_until or 0.0) > run.updated_at:
                    raise RunLeasedError.held(
                        run.run_id, stored.owner, stored.lease_until, run.updated_at
                    )
                self._steps.pop(run.run_id, None)
            self._runs[run.run_id] = run

    async def claim_run(
        self, run_id: str, *, owner: str, lease_until: float, now: float
    ) -> RunRecord:
        """Take the lease of a run that has no owner or whose lease expired."""
        with self._lock:
            stored = self._runs.get(run_id)
            if stored is None:
                raise RunNotFoundError(f"no run {run_id!r} in the in-memory state backend")
            run_record(_row(self._current(stored)), run_id)  # a damaged run is never claimed
            if stored.owner is not None and (stored.lease_until or 0.0) > now:
                raise RunLeasedError.held(run_id, stored.owner, stored.lease_until, now)
            claimed = dataclasses.replace(stored, owner=owner, lease_until=lease_until)
            self._runs[run_id] = claimed
            return self._current(claimed)

    async def renew_lease(self, run_id: str, *, owner: str, lease_until: float) -> None:
        """Extend ``owner``'s lease while it still holds the run."""
        with self._lock:
            stored = self._held(run_id, owner, None)
            self._runs[run_id] = dataclasses.replace(stored, lease_until=lease_until)

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        """Insert or replace a run header (with ``owner``: only while it holds the lease)."""
        with self._lock:
            if owner is not None:
                self._held(run.run_id, owner, run.updated_at)
            self._runs[run.run_id] = run

    async def checkpoint(self, step: StepRecord) -> None:
        """Append the step record."""
        with self._lock:
            self._steps.setdefault(step.run_id, {})[step.index] = step

    async def finish_run(self, step: StepRecord, run: RunRecord, *, owner: str | None) -> None:
        """Append the last step record and save the final header, atomically."""
        with self._lock:
            if owner is not None:
                self._held(run.run_id, owner, run.updated_at)  # raises before either lands
            self._steps.setdefault(step.run_id, {})[step.index] = step
            self._runs[run.run_id] = run

    async def load_run(self, run_id: str) -> RunRecord | None:
        """Return the run header or ``None``."""
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else run_record(_row(self._current(run)), run_id)

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        """Return the run's steps in order."""
        with self._lock:
            steps = self._steps.get(run_id, {})
            return [step_record(_row(steps[i]), run_id) for i in sorted(steps)]

    async def list_runs(
        self, *, status: RunStatus | None, limit: int
    ) -> Sequence[RunRecord | DamagedRun]:
        """Return up to ``limit`` headers, most recently updated first; damaged ones as such."""
        status, limit = check_status(status), check_limit(limit)
        with self._lock:
            runs = [
                self._current(r)
                for r in self._runs.values()
                if status is None or r.status == status
            ]
        # A time that is not a number sorts first, as text sorts after numbers in SQLite.
        runs.sort(key=lambda r: _time_key(r.updated_at), reverse=True)
        return listed(_row(r) for r in runs[:limit])

    async def delete_run(self, run_id: str) -> None:
        """Forget a run."""
        with self._lock:
            self._runs.pop(run_id, None)
            self._steps.pop(run_id, None)

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        """Delete old runs in ``statuses``; return how many."""
        older_than, statuses = check_cutoff(older_than), check_statuses(statuses)
        with self._lock:
            doomed = [
                r.run_id
                for r in map(self._current, self._runs.values())
                if r.status in statuses and _time_key(r.updated_at) < (1, older_than)
            ]
            for run_id in doomed:
                self._runs.pop(run_id, None)
                self._steps.pop(run_id, None)
        return len(doomed)

    async def close(self) -> None:
        """Nothing to release."""


def _time_key(value: object) -> tuple[int, float]:
    """Sort key of a stored time that a damaged value (not a number) cannot break."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return (1, float(value))
    return (2, 0.0)
