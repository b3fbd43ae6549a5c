"""A run's lease: the one process driving a run holds it, renews it, and gives it back.

The lease is the run header's ``owner`` and ``lease_until``, changed only by the
state backend's compare-and-swap calls. While a run runs, a heartbeat task
renews it every ``heartbeat_s``; before each commit the run checks, for the
price of one clock read, that the lease has at least one heartbeat to spare,
and otherwise renews it first. So a run whose lease was taken over (its process
stalled past the lease, another took the run) stops before its next commit with
``RunLeasedError`` instead of writing over the new owner.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from flujo.domain.errors import RunLeasedError, RunNotFoundError, StateError
from flujo.domain.interfaces import RunRecord, StateBackend, Telemetry

__all__ = ["Lease", "LeaseTerms"]


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """How long a lease lasts and how often its holder renews it (``state.lease_s``, ...)."""

    lease_s: float = 30.0
    heartbeat_s: float = 10.0


class Lease:
    """A process's hold on one run, renewed by a heartbeat task until ``stop``."""

    def __init__(
        self,
        backend: StateBackend,
        run_id: str,
        owner: str,
        terms: LeaseTerms,
        clock: Callable[[], float],
        telemetry: Telemetry,
    ) -> None:
        self.backend = backend
        self.run_id = run_id
        self.owner = owner
        self.terms = terms
        self._clock = clock
        self._telemetry = telemetry
        self.until = clock() + terms.lease_s
        """When the lease expires unless renewed, as last written."""
        self.lost: RunLeasedError | None = None
        """Why the lease is no longer this process's, once a renewal found out."""
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = True

    @classmethod
    async def claim(
        cls,
        backend: StateBackend,
        run_id: str,
        owner: str,
        terms: LeaseTerms,
        clock: Callable[[], float],
        telemetry: Telemetry,
    ) -> tuple[Lease, RunRecord]:
        """Take the lease of a stored run and start renewing it; return it with the header."""
        lease = cls(backend, run_id, owner, terms, clock, telemetry)
        header = await backend.claim_run(run_id, owner=owner, lease_until=lease.until, now=clock())
        lease.start()
        return lease, header

    def start(self) -> None:
        """Start renewing, every ``heartbeat_s``, on the running event loop."""
        # A timer, not a task per run: a run shorter than a heartbeat pays ~1 µs for it.
        self._stopped = False
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.terms.heartbeat_s, self._beat, loop)

    def fresh(self) -> bool:
        """Whether a commit may go ahead without asking: held, with a heartbeat to spare."""
        return self.lost is None and self._clock() < self.until - self.terms.heartbeat_s

    async def confirm(self) -> None:
        """Make sure the lease is still held before a commit (renewing it); else raise."""
        if self.lost is not None:
            raise self.lost
        await self._renew()

    async def _renew(self) -> None:
        until = self._clock() + self.terms.lease_s
        try:
            await self.backend.renew_lease(self.run_id, owner=self.owner, lease_until=until)
        except (RunLeasedError, RunNotFoundError) as exc:
            self.lost = self._taken(exc)
            raise self.lost from exc
        self.until = until

    def _taken(self, exc: RunLeasedError | RunNotFoundError) -> RunLeasedError:
        holder = exc.owner if isinstance(exc, RunLeasedError) else None
        until = exc.lease_until if isinstance(exc, RunLeasedError) else None
        now_held = "the run was deleted" if holder is None else f"it is now held by {holder!r}"
        if isinstance(exc, RunLeasedError) and holder is None:
            now_held = "it has no owner now"
        return RunLeasedError(
            f"run {self.run_id!r} lost its lease: {self.owner!r} held it, but {now_held} "
            "(another process took it over after the lease expired); this run stopped "
            "before its next commit and wrote nothing more",
            run_id=self.run_id,
            owner=holder,
            lease_until=until,
        )

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._task = loop.create_task(self._renewal(loop), name=f"flujo lease of {self.run_id}")

    async def _renewal(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            await self._renew()
        except RunLeasedError:
            return  # the run sees `lost` before its next commit
        except StateError as exc:
            # Tried again at the next beat; a commit with no heartbeat to spare asks first.
            self._telemetry.warning(
                f"run {self.run_id}: renewing its lease failed ({type(exc).__name__}: {exc})"
            )
        if not self._stopped:
            self._timer = loop.call_later(self.terms.heartbeat_s, self._beat, loop)

    async def stop(self) -> None:
        """Stop renewing (the lease stays written until ``release`` or the final header)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # wait(), not `await task`: a cancellation of this task still reaches it.
            await asyncio.wait({task})

    def released(self, header: RunRecord) -> RunRecord:
        """``header`` with the lease given back (no owner), as the run's last write carries it."""
        return dataclasses.replace(header, owner=None, lease_until=None)

    async def release(self, header: RunRecord) -> None:
        """Stop renewing; write ``header`` back with no owner (best effort: it expires anyway)."""
        await self.stop()
        if self.lost is not None:
            return
        try:
            await self.backend.save_run(self.released(header), owner=self.owner)
        except StateError as exc:
            self._telemetry.warning(
                f"run {self.run_id}: giving its lease back failed ({type(exc).__name__}: {exc}); "
                "another process can take the run over once the lease expires"
            )
