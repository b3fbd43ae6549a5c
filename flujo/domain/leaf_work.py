"""One leaf step shipped to run elsewhere, and what comes back: the remote seam's records.

An execution backend that runs steps outside the driver (``RayExecutionBackend``)
receives a ``LeafWork`` for every leaf step — top-level or nested in a branch,
loop, parallel or map; control-flow steps stay on the driver and fan their leaves
out. It runs the step's whole attempt pipeline (retries, timeouts, validators,
fallback) where it likes and returns a ``LeafOutcome``. The driver stays the only
writer: it applies the outcome through the step's scope, so a ``set()`` made on a
worker is saved exactly once with the driver's checkpoint, and a failed step's
changes are dropped as they are in-process.

Both records pickle; the context travels as JSON, never as a pickle, and the
values of references travel beside it (a backend may replace them by handles to
an object store and resolve them on the worker).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flujo.domain.models import StepResult

if TYPE_CHECKING:
    from flujo.domain.dsl.step import Step

__all__ = ["LeafOutcome", "LeafRunner", "LeafWork", "RefKey"]

RefKey = tuple[str, str]
"""``(provider_id, key)`` of one referenced value."""


@dataclass(frozen=True, slots=True)
class LeafWork:
    """Everything one leaf step needs to run away from the driver."""

    step: Step[Any, Any]
    data: Any
    """The step's input (it must pickle)."""
    context_model: type[Any] | None
    """The context's model class (importable where the step runs), or ``None``."""
    context_json: bytes | None
    """The context as the step's scope sees it, as JSON."""
    values: Mapping[RefKey, tuple[Any, bool]] = field(default_factory=dict)
    """Each reference of the context: its current value and whether it is watched."""
    resources: Any = None
    pipeline_name: str = ""
    watch_in_place: bool = True


@dataclass(frozen=True, slots=True)
class LeafOutcome:
    """What the step did: its result, the context after it, and the references it changed."""

    result: StepResult
    context_json: bytes | None
    """The context after a successful step (``None`` when it failed: nothing to apply)."""
    writes: Mapping[RefKey, Any] = field(default_factory=dict)
    """New values of references the step ``set()`` or changed in place (watched ones)."""


class LeafRunner(Protocol):
    """Runs shipped leaf steps: what a remote execution backend offers its run's executor."""

    async def run_leaf(self, work: LeafWork) -> LeafOutcome:
        """Run ``work`` to its outcome; a failure in user code is a failed result, not a raise."""
        ...
