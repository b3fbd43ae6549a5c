"""Typed events passed to runner hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flujo.domain.models import StepResult

if TYPE_CHECKING:
    from flujo.domain.models import PipelineResult

__all__ = [
    "Hook",
    "HookEvent",
    "RunFinished",
    "RunPaused",
    "RunStarted",
    "StepFailed",
    "StepFinished",
    "StepStarted",
]


@dataclass(frozen=True, slots=True)
class RunStarted:
    """A run is about to execute its first step."""

    run_id: str
    pipeline_name: str


@dataclass(frozen=True, slots=True)
class StepStarted:
    """A step is about to run."""

    run_id: str
    step_name: str
    index: int


@dataclass(frozen=True, slots=True)
class StepFinished:
    """A step ended, successfully or not (see ``result.success``)."""

    run_id: str
    step_name: str
    index: int
    result: StepResult


@dataclass(frozen=True, slots=True)
class StepFailed:
    """A step failed after its retries (and fallback); sent before its ``StepFinished``."""

    run_id: str
    step_name: str
    index: int
    result: StepResult


@dataclass(frozen=True, slots=True)
class RunPaused:
    """A run stopped at a human step and waits for ``resume_async(..., human_input=...)``."""

    run_id: str
    step_name: str
    message: str


@dataclass(frozen=True, slots=True)
class RunFinished:
    """A run ended; ``result`` is what ``run_async`` returns."""

    run_id: str
    result: PipelineResult[Any]


HookEvent = RunStarted | StepStarted | StepFailed | StepFinished | RunPaused | RunFinished
"""Any event a hook may receive."""

Hook = Callable[[HookEvent], Awaitable[None] | None]
"""A sync or async callable taking one event. Its failures are reported, not fatal, except
``PipelineAbortSignal``, which stops the run."""
