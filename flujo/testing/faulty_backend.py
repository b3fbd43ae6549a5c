"""``FaultyStateBackend``: any run-state backend, with failures and hangs injected on schedule.

Each ``StateBackend`` method but ``close`` is an operation with a ``Faults`` schedule of
its own. Wrapping an ``AtomicCheckpoints`` backend gives a ``FaultyAtomicBackend``, which
keeps ``holds``/``checkpoint_with`` (``checkpoint``'s schedule covers it); the wrapper is
``SharedAcrossLoops`` exactly when the backend it wraps is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, Unpack, cast, overload

from flujo.domain.errors import StateBackendError
from flujo.domain.interfaces import AtomicCheckpoints, RunRecord, StateBackend, StepRecord, Write
from flujo.domain.models import DamagedRun, RunStatus
from flujo.testing.faults import FaultPlan, Faults

__all__ = ["BACKEND_OPERATIONS", "BackendFaults", "FaultyAtomicBackend", "FaultyStateBackend"]

BACKEND_OPERATIONS = (
    "create_run",
    "claim_run",
    "renew_lease",
    "save_run",
    "checkpoint",
    "load_run",
    "load_steps",
    "list_runs",
    "delete_run",
    "prune",
)
"""The operations of a ``FaultyStateBackend`` that take a ``Faults`` schedule."""


class BackendFaults(TypedDict, total=False):
    """The keyword arguments of ``FaultyStateBackend``: one schedule per operation."""

    create_run: Faults | None
    claim_run: Faults | None
    renew_lease: Faults | None
    save_run: Faults | None
    checkpoint: Faults | None
    load_run: Faults | None
    load_steps: Faults | None
    list_runs: Faults | None
    delete_run: Faults | None
    prune: Faults | None


def _is_atomic(backend: object) -> bool:
    return callable(getattr(backend, "holds", None)) and callable(
        getattr(backend, "checkpoint_with", None)
    )


class FaultyStateBackend:
    """A ``StateBackend`` over ``inner`` whose calls fail or hang on schedule.

    Pass a ``Faults`` schedule per operation: ``checkpoint=Faults.nth(3)`` fails the
    third step record written, ``renew_lease=Faults.first(2)`` the first two lease
    renewals. Failures raise ``StateBackendError`` (what the protocol allows) unless the
    schedule names another error. ``inject(...)`` replaces schedules while a test runs,
    ``heal()`` removes them all, ``calls`` counts every call by operation; ``close()``
    always reaches ``inner``.
    """

    inner: StateBackend
    _plan: FaultPlan

    @overload
    def __new__(
        cls, inner: AtomicCheckpoints, **faults: Unpack[BackendFaults]
    ) -> FaultyAtomicBackend: ...

    @overload
    def __new__(
        cls, inner: StateBackend, **faults: Unpack[BackendFaults]
    ) -> FaultyStateBackend: ...

    def __new__(cls, inner: Any, **faults: Unpack[BackendFaults]) -> Any:
        """Wrap ``inner``: a ``FaultyAtomicBackend`` when it commits provider writes atomically."""
        # Built here, with no __init__, so type checkers read the overloads above.
        missing = [
            op for op in (*BACKEND_OPERATIONS, "close") if not callable(getattr(inner, op, None))
        ]
        if missing:
            raise TypeError(
                f"FaultyStateBackend wraps a StateBackend; {inner!r} has no {', '.join(missing)}"
            )
        chosen = FaultyAtomicBackend if cls is FaultyStateBackend and _is_atomic(inner) else cls
        self: FaultyStateBackend = object.__new__(chosen)
        self.inner = inner
        self._plan = FaultPlan(BACKEND_OPERATIONS, StateBackendError)
        self._plan.install(cast("Mapping[str, Faults | None]", faults))
        return self

    @property
    def shared_across_loops(self) -> bool:
        """Whether the wrapped backend's one connection serves every event loop."""
        return getattr(self.inner, "shared_across_loops", False) is True

    @property
    def calls(self) -> dict[str, int]:
        """How many times each operation was called (failed calls included)."""
        return dict(self._plan.calls)

    @property
    def faults(self) -> dict[str, Faults]:
        """The schedules installed now, by operation."""
        return self._plan.schedules()

    def inject(self, **faults: Unpack[BackendFaults]) -> None:
        """Install schedules by operation, counted from this call on; ``None`` removes one."""
        self._plan.install(cast("Mapping[str, Faults | None]", faults))

    def heal(self) -> None:
        """Remove every schedule: from now on every call goes through to ``inner``."""
        self._plan.clear()

    async def create_run(self, run: RunRecord, *, replace: bool = False) -> None:
        """``inner.create_run``, unless this call is scheduled to fail."""
        landed = await self._plan.before("create_run")
        await self.inner.create_run(run, replace=replace)
        landed()

    async def claim_run(
        self, run_id: str, *, owner: str, lease_until: float, now: float
    ) -> RunRecord:
        """``inner.claim_run``, unless this call is scheduled to fail."""
        landed = await self._plan.before("claim_run")
        claimed = await self.inner.claim_run(run_id, owner=owner, lease_until=lease_until, now=now)
        landed()
        return claimed

    async def renew_lease(self, run_id: str, *, owner: str, lease_until: float) -> None:
        """``inner.renew_lease``, unless this call is scheduled to fail."""
        landed = await self._plan.before("renew_lease")
        await self.inner.renew_lease(run_id, owner=owner, lease_until=lease_until)
        landed()

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        """``inner.save_run``, unless this call is scheduled to fail."""
        landed = await self._plan.before("save_run")
        await self.inner.save_run(run, owner=owner)
        landed()

    async def checkpoint(self, step: StepRecord) -> None:
        """``inner.checkpoint``, unless this call is scheduled to fail."""
        landed = await self._plan.before("checkpoint")
        await self.inner.checkpoint(step)
        landed()

    async def load_run(self, run_id: str) -> RunRecord | None:
        """``inner.load_run``, unless this call is scheduled to fail."""
        landed = await self._plan.before("load_run")
        found = await self.inner.load_run(run_id)
        landed()
        return found

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        """``inner.load_steps``, unless this call is scheduled to fail."""
        landed = await self._plan.before("load_steps")
        found = await self.inner.load_steps(run_id)
        landed()
        return found

    async def list_runs(
        self, *, status: RunStatus | None, limit: int
    ) -> Sequence[RunRecord | DamagedRun]:
        """``inner.list_runs``, unless this call is scheduled to fail."""
        landed = await self._plan.before("list_runs")
        found = await self.inner.list_runs(status=status, limit=limit)
        landed()
        return found

    async def delete_run(self, run_id: str) -> None:
        """``inner.delete_run``, unless this call is scheduled to fail."""
        landed = await self._plan.before("delete_run")
        await self.inner.delete_run(run_id)
        landed()

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        """``inner.prune``, unless this call is scheduled to fail."""
        landed = await self._plan.before("prune")
        deleted = await self.inner.prune(older_than=older_than, statuses=statuses)
        landed()
        return deleted

    async def close(self) -> None:
        """Close ``inner`` (never faulted: a test's teardown must release it)."""
        await self.inner.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class FaultyAtomicBackend(FaultyStateBackend):
    """A ``FaultyStateBackend`` over an ``AtomicCheckpoints`` backend; it is atomic too."""

    inner: Any  # a StateBackend that is also AtomicCheckpoints

    def holds(self, provider: object) -> bool:
        """Whether the wrapped backend can commit ``provider``'s writes with a checkpoint."""
        return bool(self.inner.holds(provider))

    async def checkpoint_with(
        self, step: StepRecord, writes: Sequence[tuple[object, Write[Any]]]
    ) -> list[int]:
        """``inner.checkpoint_with``, unless this checkpoint is scheduled to fail."""
        landed = await self._plan.before("checkpoint")
        versions: list[int] = await self.inner.checkpoint_with(step, writes)
        landed()
        return versions
