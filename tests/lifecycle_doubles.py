"""Doubles for run lifecycle tests: a process that dies, a store that fails, short leases.

``Mortal`` wraps a state backend the way a process holds its connection: once
``kill()`` is called every call raises ``ProcessDied`` (a ``BaseException``,
which nothing in flujo handles), so nothing the dead "process" would still
write reaches the store — its header stays ``running`` with its lease, as after
a real crash. ``switch`` providers are ``flujo.testing.FaultyProvider`` over an
in-memory store, taken down and brought back with ``inject`` and ``heal``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.domain.interfaces import RunRecord, StateBackend, StepRecord
from flujo.domain.models import RunStatus
from flujo.providers import InMemoryStateProvider
from flujo.testing import FaultyProvider, FaultyVersionedProvider, in_memory_container
from tests.helpers import DictStateProvider

LEASE_S = 0.4
HEARTBEAT_S = 0.05


class ProcessDied(BaseException):
    """The process driving a run died: nothing after this point runs or is written."""


def short_lease(container: Any, lease_s: float = LEASE_S, heartbeat_s: float = HEARTBEAT_S) -> Any:
    """Give ``container`` short lease settings (tests wait for expiry in a fraction of a second)."""
    container.config.from_dict({"state": {"lease_s": lease_s, "heartbeat_s": heartbeat_s}})
    return container


def memory_container(lease_s: float = LEASE_S, heartbeat_s: float = HEARTBEAT_S) -> Any:
    """An all-in-memory container with short leases."""
    return short_lease(in_memory_container(), lease_s, heartbeat_s)


class Mortal:
    """A ``StateBackend`` over ``inner`` that stops answering once ``kill()`` is called."""

    def __init__(self, inner: StateBackend, *, die_after_checkpoints: int | None = None) -> None:
        self.inner = inner
        self.dead = False
        self.checkpoints = 0
        self.die_after_checkpoints = die_after_checkpoints

    def kill(self) -> None:
        self.dead = True

    def _alive(self) -> None:
        if self.dead:
            raise ProcessDied("the process is gone")

    async def create_run(self, run: RunRecord, *, replace: bool = False) -> None:
        self._alive()
        await self.inner.create_run(run, replace=replace)

    async def claim_run(
        self, run_id: str, *, owner: str, lease_until: float, now: float
    ) -> RunRecord:
        self._alive()
        return await self.inner.claim_run(run_id, owner=owner, lease_until=lease_until, now=now)

    async def renew_lease(self, run_id: str, *, owner: str, lease_until: float) -> None:
        self._alive()
        await self.inner.renew_lease(run_id, owner=owner, lease_until=lease_until)

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        self._alive()
        await self.inner.save_run(run, owner=owner)

    async def checkpoint(self, step: StepRecord) -> None:
        self._alive()
        await self.inner.checkpoint(step)
        if not step.pending:
            self.checkpoints += 1
            if self.checkpoints == self.die_after_checkpoints:
                self.kill()
                raise ProcessDied(f"died after checkpoint {self.checkpoints}")

    async def load_run(self, run_id: str) -> RunRecord | None:
        self._alive()
        return await self.inner.load_run(run_id)

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        self._alive()
        return await self.inner.load_steps(run_id)

    async def list_runs(self, *, status: RunStatus | None, limit: int) -> Sequence[RunRecord]:
        self._alive()
        return await self.inner.list_runs(status=status, limit=limit)

    async def delete_run(self, run_id: str) -> None:
        self._alive()
        await self.inner.delete_run(run_id)

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        self._alive()
        return await self.inner.prune(older_than=older_than, statuses=statuses)

    async def close(self) -> None:
        """Nothing of its own to release; the inner backend outlives the dead process."""


def switch(data: dict[str, Any] | None = None) -> FaultyVersionedProvider[Any]:
    """A versioned in-memory provider that, like an external store, hands out and keeps copies.

    ``inject(load=Faults.always())`` or ``inject(save=...)`` takes it down, ``heal()``
    brings it back; ``inner.data`` is what it holds.
    """
    return FaultyProvider(InMemoryStateProvider[Any](copy.deepcopy(data or {})), copy_values=True)


def plain_switch(data: dict[str, Any] | None = None) -> FaultyProvider[Any]:
    """Like ``switch``, but a plain provider: no versions, no compare-and-swap."""
    return FaultyProvider(DictStateProvider(copy.deepcopy(data or {})), copy_values=True)


class Journal(PipelineContext):
    log: ContextReference[list[int]] = ContextReference(provider_id="journal", key="log")


def appender(index: int, *, delay_s: float = 0.0, in_place: bool = False) -> Step[int, int]:
    """A step that appends ``index`` to the journal (``set()``, or in place) and adds 1."""

    async def append(data: int, *, context: Journal) -> int:
        if delay_s:
            await asyncio.sleep(delay_s)
        entries = context.log.get()
        if in_place and entries is not None:
            entries.append(index)
        else:
            context.log.set([*(entries or []), index])
        return data + 1

    return Step.from_callable(append, name=f"append{index}")


def journal_runner(
    steps: Sequence[Step[Any, Any]],
    provider: Any,
    *,
    container: Any = None,
    state_backend: StateBackend | None = None,
    hooks: Sequence[Any] = (),
) -> Flujo[int, int, Journal]:
    """A runner of ``steps`` over a ``Journal`` context with ``provider`` as ``journal``."""
    return Flujo(
        steps[0] if len(steps) == 1 else _pipeline(steps),
        context_model=Journal,
        state_providers={"journal": provider},
        container=container if container is not None else memory_container(),
        state_backend=state_backend,
        pipeline_name="journal",
        hooks=list(hooks),
    )


def _pipeline(steps: Sequence[Step[Any, Any]]) -> Any:
    from flujo import Pipeline

    return Pipeline(list(steps))
