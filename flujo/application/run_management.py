"""Managing stored runs: listing, inspecting and pruning them (``Flujo.list_runs`` ...)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from flujo.application.core.resume import run_info, run_infos
from flujo.domain.errors import RunNotFoundError
from flujo.domain.interfaces import Serializer, StateBackend
from flujo.domain.models import DamagedRun, RunInfo, RunStatus
from flujo.domain.run_queries import check_age, check_limit, check_status, check_statuses

__all__ = ["PRUNED_BY_DEFAULT", "get_run", "list_runs", "prune"]

PRUNED_BY_DEFAULT: tuple[RunStatus, ...] = ("completed", "failed", "cancelled")
"""The statuses ``prune`` deletes unless told otherwise: runs that ended."""


async def list_runs(
    backend: StateBackend, serializer: Serializer, *, status: RunStatus | None, limit: int
) -> list[RunInfo | DamagedRun]:
    """Return stored runs, most recently updated first; one that cannot be read as damaged."""
    status, limit = check_status(status), check_limit(limit)
    records = await backend.list_runs(status=status, limit=limit)
    return run_infos(records, serializer)


async def get_run(backend: StateBackend, serializer: Serializer, run_id: str) -> RunInfo:
    """Return one stored run with its step results (``RunNotFoundError`` if unknown)."""
    record = await backend.load_run(run_id)
    if record is None:
        raise RunNotFoundError(f"no run {run_id!r} in this runner's state backend")
    steps = await backend.load_steps(run_id)
    return run_info(record, serializer, steps)


async def prune(
    backend: StateBackend,
    clock: Callable[[], float],
    *,
    older_than: timedelta | float,
    statuses: Sequence[RunStatus],
) -> int:
    """Delete runs in ``statuses`` not updated for ``older_than`` (seconds or timedelta)."""
    seconds, chosen = check_age(older_than), check_statuses(statuses)
    return await backend.prune(older_than=clock() - seconds, statuses=chosen)
