"""How a step's attempts end: ``Attempts``, then its ``StepResult``, metering and fallback.

``attempt.run_step`` runs the attempts and records them in an ``Attempts``;
this module turns that record into the step's result: what it spent is metered,
a hand-driven step's ``set()`` values are saved, and a failed step's fallback runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.application.core.commit import save_staged
from flujo.application.core.invocation import describe
from flujo.domain.dsl.step import Step
from flujo.domain.errors import StateError
from flujo.domain.models import StepResult

if TYPE_CHECKING:
    from flujo.application.core.executor_core import ExecutorCore

__all__ = ["Attempts", "ended", "meter", "settle"]

_new_result = StepResult.trusted


@dataclass(slots=True)
class Attempts:
    """How the attempts of one step ended."""

    output: Any = None
    error: Exception | None = None
    attempts: int = 0
    cache_hit: bool = False
    cost_usd: float = 0.0
    tokens: int = 0
    nested: list[StepResult] | None = None
    """Results of the steps a control-flow step ran (their usage is metered already)."""


async def settle(
    executor: ExecutorCore,
    step: Step[Any, Any],
    data: Any,
    context: BaseModel | None,
    resources: Any,
    done: Attempts,
    start: float,
    by_hand: bool,
) -> StepResult:
    """Save what a hand-driven step set, run the fallback of a failed one, and say how."""
    if by_hand and done.error is None:
        session = executor.session
        try:
            await save_staged(session, session.take_staged(), "", step.config, executor.backoff)
        except StateError as exc:
            done.error = exc
    if done.error is not None and step.fallback_step is not None:
        meter(executor, done)
        return await _fallback(executor, step, data, context, resources, done, start)
    return ended(executor, step, done, start)


def meter(executor: ExecutorCore, done: Attempts) -> None:
    """Count what the attempts spent (a construct's nested steps counted their own)."""
    if (done.cost_usd or done.tokens) and done.nested is None:
        executor.usage_meter.add(done.cost_usd, done.tokens)


def ended(executor: ExecutorCore, step: Step[Any, Any], done: Attempts, start: float) -> StepResult:
    """Return the result of a step whose attempts (or cache lookup) ended as ``done``."""
    if done.cost_usd or done.tokens:
        meter(executor, done)
    if done.cache_hit:
        # The step did not run: nothing was spent, changed or can fail after it.
        return _new_result(
            step.name, done.output, True, 0, time.perf_counter() - start, None, 0.0, 0, True
        )
    if done.error is None:
        return _new_result(
            step.name,
            done.output,
            True,
            done.attempts,
            time.perf_counter() - start,
            None,
            done.cost_usd,
            done.tokens,
            False,
            step_history=done.nested,
        )
    return _failure(step, done, start)


def _failure(step: Step[Any, Any], done: Attempts, start: float) -> StepResult:
    assert done.error is not None
    # What failed attempts spent (an output a validator rejected) was still spent.
    return _new_result(
        step.name,
        None,
        False,
        done.attempts,
        time.perf_counter() - start,
        f"{type(done.error).__name__}: {describe(done.error)}",
        done.cost_usd,
        done.tokens,
        step_history=done.nested,
    )


async def _fallback(
    executor: ExecutorCore,
    step: Step[Any, Any],
    data: Any,
    context: BaseModel | None,
    resources: Any,
    done: Attempts,
    start: float,
) -> StepResult:
    assert step.fallback_step is not None and done.error is not None
    backup = await executor.execute(step.fallback_step, data, context=context, resources=resources)
    reason = f"{type(done.error).__name__}: {describe(done.error)}"
    used = backup.fallback or step.fallback_step.name
    return _new_result(
        step.name,
        backup.output,
        backup.success,
        done.attempts + backup.attempts,
        time.perf_counter() - start,
        f"{reason}; fallback {step.fallback_step.name!r} "
        + ("succeeded" if backup.success else f"failed too: {backup.feedback}"),
        done.cost_usd + backup.cost_usd,  # both were spent
        done.tokens + backup.token_counts,
        backup.cache_hit,
        used if backup.success else None,
    )
