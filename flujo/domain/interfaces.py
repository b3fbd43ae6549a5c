"""Protocols for every part the container injects; each contract is in its docstring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from flujo.domain.models import RunStatus, StepResult

if TYPE_CHECKING:
    from flujo.domain.dsl.step import Step
    from flujo.domain.models import PipelineContext

__all__ = [
    "AttributeValue",
    "CacheBackend",
    "ExecutionBackend",
    "Hasher",
    "RunRecord",
    "Serializer",
    "Span",
    "StateBackend",
    "StateProvider",
    "StepRecord",
    "Telemetry",
    "UsageMeter",
]

T = TypeVar("T")

AttributeValue = str | bool | int | float
"""A value a telemetry span attribute may hold."""


@runtime_checkable
class StateProvider(Protocol[T]):
    """An external store that ``ContextReference`` fields point into.

    ``load(key)`` returns the value stored under ``key``, or ``None`` when there
    is none yet. ``save(key, data)`` stores ``data`` under ``key``, replacing
    what was there. Both may raise; flujo reports the failure with the field,
    provider id and key, and never drops it silently. Subclass this protocol or
    just match it.
    """

    async def load(self, key: str) -> T | None:
        """Return the value stored under ``key``, or ``None`` if there is none."""
        ...

    async def save(self, key: str, data: T) -> None:
        """Store ``data`` under ``key``."""
        ...


class Serializer(Protocol):
    """Turns plain data and pydantic models into bytes and back (JSON)."""

    def dumps(self, obj: Any) -> bytes:
        """Serialize ``obj``; raise ``TypeError`` for values it cannot represent."""
        ...

    def loads(self, data: bytes) -> Any:
        """Parse bytes made by ``dumps``."""
        ...


class Hasher(Protocol):
    """Content hash for cache keys and change detection."""

    def digest(self, data: bytes) -> str:
        """Return a hex digest of ``data``; equal input gives an equal digest."""
        ...


class CacheBackend(Protocol):
    """Stores step results by key."""

    async def get(self, key: str) -> Any | None:
        """Return the value stored under ``key``, or ``None`` on a miss."""
        ...

    async def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        """Store ``value`` under ``key``, for ``ttl_s`` seconds if given."""
        ...

    async def clear(self) -> None:
        """Remove every entry."""
        ...


class Span(Protocol):
    """One timed unit of work reported to telemetry."""

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Attach an attribute."""
        ...

    def record_exception(self, exc: BaseException) -> None:
        """Record a failure inside the span."""
        ...

    def end(self) -> None:
        """Close the span."""
        ...


class Telemetry(Protocol):
    """Where spans and warnings go (logging by default)."""

    def start_span(self, name: str, attributes: Mapping[str, AttributeValue]) -> Span:
        """Open a span named ``name``."""
        ...

    def warning(self, message: str) -> None:
        """Report something the user should see that does not stop the run."""
        ...


class UsageMeter(Protocol):
    """Sums the cost and tokens of one run; safe to call from several threads."""

    def add(self, cost_usd: float, tokens: int) -> None:
        """Add one step's usage."""
        ...

    def totals(self) -> tuple[float, int]:
        """Return ``(cost_usd, tokens)`` so far."""
        ...


class ExecutionBackend(Protocol):
    """Where steps run: in-process asyncio by default."""

    async def execute_step(
        self,
        step: Step[Any, Any],
        data: Any,
        *,
        context: PipelineContext | None,
        resources: Any,
    ) -> StepResult:
        """Run one step to a ``StepResult``; never raise for a failure in user code."""
        ...


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
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
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


class StateBackend(Protocol):
    """Durable run state: stores and loads records, knows nothing of the executor.

    Writes are atomic and append-only per step: ``checkpoint`` adds one step
    record and touches nothing else, so what a step writes does not grow with
    the run's length. For a run whose header says ``running``, ``load_run`` and
    ``list_runs`` report ``step_index`` as the number of successful step
    records and ``updated_at`` as the latest of the header's and the records'.
    Failures raise ``StateBackendError``.
    """

    async def save_run(self, run: RunRecord) -> None:
        """Insert or replace a run header."""
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

    async def list_runs(self, *, status: RunStatus | None, limit: int) -> Sequence[RunRecord]:
        """Return up to ``limit`` run headers, most recently updated first."""
        ...

    async def delete_run(self, run_id: str) -> None:
        """Remove a run and its steps; no error if it does not exist."""
        ...

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        """Delete runs in ``statuses`` last updated before ``older_than``; return how many."""
        ...

    async def close(self) -> None:
        """Release connections; the backend opens them again on the next call."""
        ...
