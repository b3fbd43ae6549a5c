"""Protocols for every part the container injects; each contract is in its docstring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from flujo.domain.models import StepResult
from flujo.domain.run_store import (
    SCHEMA_VERSION,
    AtomicCheckpoints,
    FinalCheckpoint,
    RunRecord,
    SharedAcrossLoops,
    StateBackend,
    StepRecord,
)

if TYPE_CHECKING:
    from flujo.domain.dsl.step import Step
    from flujo.domain.models import PipelineContext

__all__ = [
    "SCHEMA_VERSION",
    "AtomicCheckpoints",
    "AttributeValue",
    "CacheBackend",
    "ExecutionBackend",
    "FinalCheckpoint",
    "Hasher",
    "RunBoundBackend",
    "RunRecord",
    "Serializer",
    "SharedAcrossLoops",
    "Span",
    "StateBackend",
    "StateProvider",
    "StepRecord",
    "Telemetry",
    "UsageMeter",
    "Versioned",
    "VersionedStateProvider",
    "Write",
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


@dataclass(frozen=True, slots=True, init=False)
class Versioned(Generic[T]):
    """A provider's value with the version it has and the writer that stored it."""

    value: T | None
    version: int
    """0 when nothing is stored under the key; each successful save adds 1."""
    writer: str | None = None
    """The ``writer`` tag of the save that stored it (flujo passes ``"run_id/step"``)."""

    def __init__(self, value: T | None, version: int, writer: str | None = None) -> None:
        # Through the slots' own descriptors: the frozen dataclass's __init__ calls
        # object.__setattr__ per field, twice the cost, and every run's load makes one.
        _VERSIONED_SET[0](self, value)
        _VERSIONED_SET[1](self, version)
        _VERSIONED_SET[2](self, writer)


_VERSIONED_SET = tuple(vars(Versioned)[name].__set__ for name in ("value", "version", "writer"))


@dataclass(frozen=True, slots=True)
class Write(Generic[T]):
    """One compare-and-swap save: store ``data`` under ``key`` if it is at ``expected_version``."""

    key: str
    data: T
    expected_version: int | None
    """The version the writer read; ``None`` saves whatever is stored now."""
    writer: str
    """A tag stored with the value, so a later reader can tell who wrote it."""


@runtime_checkable
class VersionedStateProvider(Protocol[T]):
    """A ``StateProvider`` that can also tell versions and compare-and-swap.

    ``load_versioned`` returns the value with its version and writer tag.
    ``save_versioned`` applies every write of one call atomically: all of them
    land, or none does and it raises ``StateConflictError`` naming the key whose
    stored version was not the expected one. flujo uses it to save each
    reference exactly once and to tell, on resume, whether an interrupted
    step's saves landed. A class implements it beside ``load``/``save``.
    """

    async def load(self, key: str) -> T | None:
        """Return the value stored under ``key``, or ``None`` if there is none."""
        ...

    async def save(self, key: str, data: T) -> None:
        """Store ``data`` under ``key`` unconditionally."""
        ...

    async def load_versioned(self, key: str) -> Versioned[T]:
        """Return the value, version and writer under ``key`` (version 0 if none)."""
        ...

    async def save_versioned(self, writes: Sequence[Write[T]]) -> list[int]:
        """Apply ``writes`` all-or-nothing; return the new versions in order."""
        ...


class Serializer(Protocol):
    """Turns plain data and pydantic models into bytes and back (JSON)."""

    def dumps(self, obj: Any) -> bytes:
        """Serialize ``obj``; raise ``TypeError`` for values it cannot represent."""
        ...

    def dumps_canonical(self, obj: Any) -> bytes:
        """Serialize like ``dumps``, but equal data always gives equal bytes (for cache keys).

        Dict keys are sorted at every depth, so two dicts built in different orders
        give one result; ``TypeError`` as for ``dumps``.
        """
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
    """Where spans and warnings go (logging by default).

    A telemetry may also have a ``records_spans`` attribute: when it is ``False`` as a
    run starts, that run opens no spans at all (it would only get spans that do nothing).
    """

    def start_span(self, name: str, attributes: Mapping[str, AttributeValue]) -> Span:
        """Open a span named ``name``."""
        ...

    def warning(self, message: str) -> None:
        """Report something the user should see that does not stop the run."""
        ...


class RunBoundBackend(Protocol):
    """An execution backend made once and bound to each run's executor, providers and policies."""

    def for_run(self, executor: Any) -> ExecutionBackend:
        """Return this backend serving the run whose executor is ``executor``."""
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
    """Where steps run: in-process asyncio by default.

    The run loop hands it each top-level step. A backend that runs steps elsewhere
    also sets ``executor.remote`` (a ``flujo.domain.leaf_work.LeafRunner``) on the
    run's executor, so every leaf step, nested ones included, is shipped through it.
    A backend given to ``Flujo(backend=...)`` that has ``for_run(executor)`` is bound
    to each run's own executor that way (see ``RunBoundBackend``).
    """

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
