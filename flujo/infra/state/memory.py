"""Run state kept in process memory (tests, and runs that need not survive the process)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from flujo.domain.errors import RunExistsError, RunLeasedError, RunNotFoundError
from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.domain.models import RunStatus

__all__ = ["InMemoryBackend"]


class InMemoryBackend:
    """A ``StateBackend`` holding records in dicts; lost when the process ends.

    Each method reads and changes its dicts without awaiting in between, so the
    compare-and-swap of a lease is atomic among the tasks of the event loop.
    """

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, dict[int, StepRecord]] = {}

    def _current(self, run: RunRecord) -> RunRecord:
        if run.status != "running":
            return run
        steps = self._steps.get(run.run_id, {})
        if not steps:
            return run
        return dataclasses.replace(
            run,
            step_index=sum(1 for s in steps.values() if s.success and not s.pending),
            updated_at=max(run.updated_at, *(s.recorded_at for s in steps.values())),
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
        stored = self._runs.get(run_id)
        if stored is None:
            raise RunNotFoundError(f"no run {run_id!r} in the in-memory state backend")
        if stored.owner is not None and (stored.lease_until or 0.0) > now:
            raise RunLeasedError.held(run_id, stored.owner, stored.lease_until, now)
        claimed = dataclasses.replace(stored, owner=owner, lease_until=lease_until)
        self._runs[run_id] = claimed
        return self._current(claimed)

    async def renew_lease(self, run_id: str, *, owner: str, lease_until: float) -> None:
        """Extend ``owner``'s lease while it still holds the run."""
        stored = self._held(run_id, owner, None)
        self._runs[run_id] = dataclasses.replace(stored, lease_until=lease_until)

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        """Insert or replace a run header (with ``owner``: only while it holds the lease)."""
        if owner is not None:
            self._held(run.run_id, owner, run.updated_at)
        self._runs[run.run_id] = run

    async def checkpoint(self, step: StepRecord) -> None:
        """Append the step record."""
        self._steps.setdefault(step.run_id, {})[step.index] = step

    async def load_run(self, run_id: str) -> RunRecord | None:
        """Return the run header or ``None``."""
        run = self._runs.get(run_id)
        return None if run is None else self._current(run)

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        """Return the run's steps in order."""
        steps = self._steps.get(run_id, {})
        return [steps[i] for i in sorted(steps)]

    async def list_runs(self, *, status: RunStatus | None, limit: int) -> Sequence[RunRecord]:
        """Return up to ``limit`` headers, most recently updated first."""
        runs = [
            self._current(r) for r in self._runs.values() if status is None or r.status == status
        ]
        runs.sort(key=lambda r: r.updated_at, reverse=True)
        return runs[:limit]

    async def delete_run(self, run_id: str) -> None:
        """Forget a run."""
        self._runs.pop(run_id, None)
        self._steps.pop(run_id, None)

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        """Delete old runs in ``statuses``; return how many."""
        doomed = [
            r.run_id
            for r in map(self._current, self._runs.values())
            if r.updated_at < older_than and r.status in statuses
        ]
        for run_id in doomed:
            await self.delete_run(run_id)
        return len(doomed)

    async def close(self) -> None:
        """Nothing to release."""
