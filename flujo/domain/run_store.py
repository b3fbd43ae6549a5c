"""What a run-state backend stores and the protocols it offers: the durable run records.

Re-exported by ``flujo.domain.interfaces`` with the other protocols, where users
import them from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from flujo.domain.models import DamagedRun, RunStatus

if TYPE_CHECKING:
    from flujo.domain.interfaces import Write

__all__ = [
    "SCHEMA_VERSION",
    "AtomicCheckpoints",
    "FinalCheckpoint",
    "RunRecord",
    "SharedAcrossLoops",
    "StateBackend",
    "StepRecord",
]


SCHEMA_VERSION = 1
"""Version of the stored run format; a record of another version is not read."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """The header of one run as a state backend stores it.

    The header is written when a run starts, pauses and ends. Between those
    writes, a backend reports a running run's ``step_index`` and ``updated_at``
    from its step records.
    """

    run_id: str
    pipeline_name: str
    pipeline_version: str
    status: RunStatus
    step_index: int
    """How many steps have completed."""
    input: bytes
    """The run's input as JSON."""
    context: bytes
    """The context the run started with, as JSON; references appear as pointers only."""
    created_at: float
    updated_at: float
    error: str | None = None
    """Why the run failed outside any step, if it did."""
    pause_message: str | None = None
    """What a paused run waits for."""
    schema_version: int = SCHEMA_VERSION
    owner: str | None = None
    """The process that drives the run now; ``None`` once the run stopped or ended."""
    lease_until: float | None = None
    """Unix time the owner's lease expires unless renewed; then another process may take over."""
    owed: bytes | None = None
    """Saves the run still owes its providers, as JSON (written when its last save failed).

    A list of ``{"provider_id", "key", "value", "expected_version", "writer"}``;
    ``resume_async`` makes them before anything else. ``None``: nothing owed."""


@dataclass(frozen=True, slots=True, init=False)
class StepRecord:
    """One step of a run, appended once (a retried step replaces its own record)."""

    run_id: str
    index: int
    name: str
    success: bool
    result: bytes
    """The ``StepResult`` as JSON."""
    context: bytes
    """The context right after the step, as JSON; references appear as pointers only."""
    recorded_at: float
    pending: bool = False
    """Written before the step's provider saves and replaced once they all landed.

    A pending record does not count as completed; on resume the engine checks
    whether its saves landed (see ``VersionedStateProvider``)."""

    def __init__(
        self,
        run_id: str,
        index: int,
        name: str,
        success: bool,
        result: bytes,
        context: bytes,
        recorded_at: float,
        pending: bool = False,
    ) -> None:
        # Through the slots' own descriptors: the frozen dataclass's __init__ calls
        # object.__setattr__ per field, twice the cost, on every durable step.
        put = _RECORD_SET
        put[0](self, run_id)
        put[1](self, index)
        put[2](self, name)
        put[3](self, success)
        put[4](self, result)
        put[5](self, context)
        put[6](self, recorded_at)
        put[7](self, pending)


_RECORD_SET = tuple(vars(StepRecord)[f.name].__set__ for f in dataclasses.fields(StepRecord))
"""The slot setters of ``StepRecord``'s fields, in field order (``__init__``'s order)."""


class StateBackend(Protocol):
    """Durable run state: stores and loads records, knows nothing of the executor.

    Writes are atomic and append-only per step: ``checkpoint`` adds one step
    record and touches nothing else, so what a step writes does not grow with
    the run's length. For a run whose header says ``running``, ``load_run`` and
    ``list_runs`` report ``step_index`` as the number of successful step
    records that are not pending, and ``updated_at`` as the latest of the
    header's and the records'. ``StepRecord.pending`` is stored and loaded as is.
    Failures raise ``StateBackendError``. A stored value that does not fit its
    field (type, range, status, schema version) raises ``StateCorruptError`` from
    ``load_run`` and ``load_steps``, and is listed as a ``DamagedRun`` by ``list_runs``.

    One process at a time drives a run: it holds the run's *lease*, the header's
    ``owner`` and ``lease_until``. ``create_run``, ``claim_run``, ``renew_lease`` and
    ``save_run(..., owner=...)`` each read and change the header as one atomic
    compare-and-swap, so two processes racing for one run never both win.
    """

    async def create_run(self, run: RunRecord, *, replace: bool = False) -> None:
        """Insert the header of a new run (its ``owner`` and ``lease_until`` set).

        A run with that id already stored raises ``RunExistsError``, unless
        ``replace``: then the old header and every step record of the old run are
        deleted in the same transaction that inserts the new header. Replacing a
        run whose lease is held by another owner past ``run.updated_at`` (the
        caller's now) raises ``RunLeasedError`` and changes nothing.
        """
        ...

    async def claim_run(
        self, run_id: str, *, owner: str, lease_until: float, now: float
    ) -> RunRecord:
        """Take the lease of a stored run for ``owner`` until ``lease_until``; return the header.

        It succeeds when the header has no owner or its lease expired
        (``lease_until <= now``); the header returned is the one ``load_run``
        would give, with the new owner and lease. ``RunNotFoundError`` if there
        is no such run; ``RunLeasedError`` naming the holder and its expiry otherwise.
        """
        ...

    async def renew_lease(self, run_id: str, *, owner: str, lease_until: float) -> None:
        """Extend ``owner``'s lease to ``lease_until``.

        Only while the header's owner is ``owner`` (expired or not: nobody took it
        over); otherwise ``RunLeasedError`` naming the current owner, or
        ``RunNotFoundError`` if the run is gone.
        """
        ...

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        """Insert or replace a run header.

        With ``owner``, only if the stored header's owner is ``owner`` (else
        ``RunLeasedError``, or ``RunNotFoundError`` if the run is gone): a
        process writes the pause or end of a run it still owns. ``run.owner`` and
        ``run.lease_until`` are written as given, so ``None`` releases the lease.
        """
        ...

    async def checkpoint(self, step: StepRecord) -> None:
        """Append ``step`` (replacing a record with the same run and index)."""
        ...

    async def load_run(self, run_id: str) -> RunRecord | None:
        """Return the run header, or ``None`` if there is no such run."""
        ...

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        """Return the run's step records in order."""
        ...

    async def list_runs(
        self, *, status: RunStatus | None, limit: int
    ) -> Sequence[RunRecord | DamagedRun]:
        """Return up to ``limit`` run headers, most recently updated first."""
        ...

    async def delete_run(self, run_id: str) -> None:
        """Remove a run and its steps; no error if it does not exist."""
        ...

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        """Delete runs in ``statuses`` last updated before ``older_than``; return how many."""
        ...

    async def close(self) -> None:
        """Release the calling event loop's connections; the next call opens them again.

        Connections bound to an event loop (an asyncpg pool) are kept one set per
        loop, and ``close()`` leaves other loops' alone: their runs go on. A
        connection serving every loop is closed, and is ``SharedAcrossLoops``.
        """
        ...


@runtime_checkable
class AtomicCheckpoints(Protocol):
    """A ``StateBackend`` that commits some providers' saves in its checkpoint transaction.

    When every provider a step saves to is ``holds(provider)``, the engine
    calls ``checkpoint_with`` instead of pending checkpoint + saves + commit:
    the record and the compare-and-swap writes commit together or not at all
    (``StateConflictError`` when a write's version does not match).
    """

    def holds(self, provider: object) -> bool:
        """Whether ``provider`` lives in this backend's database and can share a transaction."""
        ...

    async def checkpoint_with(
        self, step: StepRecord, writes: Sequence[tuple[object, Write[Any]]]
    ) -> list[int]:
        """Write ``step`` and every ``(provider, write)`` in one transaction; new versions."""
        ...


class FinalCheckpoint(Protocol):
    """A ``StateBackend`` that writes a run's last step record and its final header together.

    ``finish_run(step, run, owner=...)`` is ``checkpoint(step)`` then
    ``save_run(run, owner=owner)`` as one atomic write: both land or neither does,
    and with ``owner`` only while that owner holds the run's lease
    (``RunLeasedError``, having written nothing). The engine uses it for the last
    step of a run that saves nothing to a provider: one round trip (or commit)
    less per run, and no moment where the last step is stored but the run is not
    ended.
    """

    async def finish_run(self, step: StepRecord, run: RunRecord, *, owner: str | None) -> None:
        """Append ``step`` and save the header ``run``, atomically (see the class)."""
        ...


@runtime_checkable
class SharedAcrossLoops(Protocol):
    """A part whose one connection serves every event loop and thread (not bound to a loop).

    ``runner.run()`` runs each call on an event loop of its own and, as the call
    ends, closes the parts its run used, since a loop-bound connection (an asyncpg
    pool, a redis client) cannot outlive its loop. A part with
    ``shared_across_loops = True``, such as ``SQLiteBackend`` (one connection on a
    worker thread), is closed instead once no run of the runner is in flight, so
    the runs of other threads keep it open.
    """

    shared_across_loops: bool
    """``True``: close it only when no run uses it."""
