"""Running a shipped leaf step where it was sent (a Ray worker): ``run_work``.

An ``ExecutorCore`` of its own over the shipped context, its references bound
to the shipped values, the step's whole attempt pipeline (retries, timeouts,
validators, fallback), and no provider, cache or save: what the step changed
goes back to the driver in the ``LeafOutcome`` (see ``remote_leaf``).
"""

from __future__ import annotations

from typing import Any

from flujo.application.core.entry import Entry
from flujo.application.core.executor_core import ExecutorCore
from flujo.domain.errors import StateError
from flujo.domain.leaf_work import LeafOutcome, LeafWork

__all__ = ["run_work"]


async def run_work(work: LeafWork) -> LeafOutcome:
    """Run ``work`` on an executor of its own (no providers, no cache); return the outcome."""
    executor = ExecutorCore(
        cache_backend=_NoCache(),  # the driver looked the cache up and fills it
        state_providers={provider_id: _NoProvider() for provider_id, _ in work.values},
        pipeline_name=work.pipeline_name,
        watch_in_place=work.watch_in_place,
    )
    session = executor.session
    session.deferred = True  # nothing is saved here: changes go back to the driver
    context = None
    if work.context_model is not None and work.context_json is not None:
        context = work.context_model.model_validate_json(work.context_json)
        for ident, (value, watch) in work.values.items():
            entry = session.entries[ident] = Entry(session, ident, session.providers[ident[0]], "")
            entry.value, entry.loaded, entry.watch = value, True, watch
        await session.hydrate(context)  # binds to the entries above: nothing is loaded
    result = await executor.execute(work.step, work.data, context=context, resources=work.resources)
    if not result.success or context is None:
        return LeafOutcome(result, None, {})
    changed = session.changed_in_place(context)
    writes = {entry.ident: entry.value for entry in changed}
    return LeafOutcome(result, context.model_dump_json().encode(), writes)


class _NoCache:
    """A cache that holds nothing: a worker's step never meets another run's results here."""

    async def get(self, key: str) -> Any | None:
        return None

    async def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        return None

    async def clear(self) -> None:
        return None


class _NoProvider:
    """The provider of a shipped value: the driver loads and saves, never the worker."""

    async def load(self, key: str) -> Any:
        raise StateError(f"a worker cannot load {key!r}: the driver ships every value")

    async def save(self, key: str, data: Any) -> None:
        raise StateError(f"a worker cannot save {key!r}: the driver saves every value")
