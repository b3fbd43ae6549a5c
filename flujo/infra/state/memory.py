"""Run state kept in process memory (tests, and runs that need not survive the process)."""

from __future__ import annotations

from collections.abc import Sequence

from flujo.domain.interfaces import RunRecord, StepRecord

__all__ = ["InMemoryBackend"]


class InMemoryBackend:
    """A ``StateBackend`` holding records in dicts; lost when the process ends."""

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, dict[int, StepRecord]] = {}

    async def save_run(self, run: RunRecord) -> None:
        """Insert or replace a run header."""
        self._runs[run.run_id] = run

    async def checkpoint(self, run: RunRecord, step: StepRecord) -> None:
        """Store the header and append the step (atomic: nothing awaits in between)."""
        self._steps.setdefault(step.run_id, {})[step.index] = step
        self._runs[run.run_id] = run

    async def load_run(self, run_id: str) -> RunRecord | None:
        """Return the run header or ``None``."""
        return self._runs.get(run_id)

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        """Return the run's steps in order."""
        steps = self._steps.get(run_id, {})
        return [steps[i] for i in sorted(steps)]

    async def delete_run(self, run_id: str) -> None:
        """Forget a run."""
        self._runs.pop(run_id, None)
        self._steps.pop(run_id, None)

    async def close(self) -> None:
        """Nothing to release."""
