"""Run state kept in process memory (tests, and runs that need not survive the process)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.domain.models import RunStatus

__all__ = ["InMemoryBackend"]


class InMemoryBackend:
    """A ``StateBackend`` holding records in dicts; lost when the process ends.

    Runs on several threads (``runner.run()`` from a thread pool) may share it:
    a lock makes each call one step, so a listing never sees a dict change under it.
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
        return dataclasses.replace(
            run,
            step_index=sum(1 for s in steps.values() if s.success and not s.pending),
            updated_at=max(run.updated_at, *(s.recorded_at for s in steps.values())),
        )

    async def save_run(self, run: RunRecord) -> None:
        """Insert or replace a run header."""
        with self._lock:
            self._runs[run.run_id] = run

    async def checkpoint(self, step: StepRecord) -> None:
        """Append the step record."""
        with self._lock:
            self._steps.setdefault(step.run_id, {})[step.index] = step

    async def load_run(self, run_id: str) -> RunRecord | None:
        """Return the run header or ``None``."""
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else self._current(run)

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        """Return the run's steps in order."""
        with self._lock:
            steps = self._steps.get(run_id, {})
            return [steps[i] for i in sorted(steps)]

    async def list_runs(self, *, status: RunStatus | None, limit: int) -> Sequence[RunRecord]:
        """Return up to ``limit`` headers, most recently updated first."""
        with self._lock:
            runs = [
                self._current(r)
                for r in self._runs.values()
                if status is None or r.status == status
            ]
        runs.sort(key=lambda r: r.updated_at, reverse=True)
        return runs[:limit]

    async def delete_run(self, run_id: str) -> None:
        """Forget a run."""
        with self._lock:
            self._forget(run_id)

    def _forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
        self._steps.pop(run_id, None)

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        """Delete old runs in ``statuses``; return how many."""
        with self._lock:
            doomed = [
                r.run_id
                for r in map(self._current, self._runs.values())
                if r.updated_at < older_than and r.status in statuses
            ]
            for run_id in doomed:
                self._forget(run_id)
        return len(doomed)

    async def close(self) -> None:
        """Nothing to release."""
