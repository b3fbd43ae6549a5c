"""What every control-flow construct needs: run a nested body, call user code, fan out."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.application.core.scope import Scope
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import HumanStep
from flujo.domain.errors import ConfigurationError, ControlFlowError
from flujo.domain.models import StepResult
from flujo.domain.state_access import ACCESS

if TYPE_CHECKING:
    from flujo.application.core.executor_core import ExecutorCore

__all__ = ["all_or_nothing", "call", "current_scope", "run_body", "summary", "yield_"]


def current_scope() -> Scope | None:
    """Return the scope of the attempt running in this task, if any."""
    access = ACCESS.get()
    return access if type(access) is Scope else None


async def yield_() -> None:
    """Let the event loop run other tasks (and timeouts fire) between nested steps."""
    import asyncio  # not at module level: keeps `import flujo` light (see sync_door.run_sync)

    await asyncio.sleep(0)


async def all_or_nothing(work: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` concurrently; if one raises, cancel the rest before raising it."""
    import asyncio

    tasks = [asyncio.ensure_future(item) for item in work]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call user code (a condition, a merge, items_from) that may be sync or async."""
    outcome = fn(*args)
    if inspect.isawaitable(outcome):
        outcome = await outcome
    return outcome


async def run_body(
    executor: ExecutorCore,
    owner: str,
    body: Pipeline[Any, Any],
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
) -> Any:
    """Run ``body``'s steps in order through the executor; a failed one raises."""
    for step in body.steps:
        # Yield to the loop between nested steps, so a timeout on the construct can fire
        # even when every nested step is synchronous.
        await yield_()
        if isinstance(step, HumanStep):
            raise ConfigurationError(
                f"{owner!r}: human step {step.name!r} cannot run inside a control-flow step"
            )
        result = await executor.execute(step, data, context=context, resources=resources)
        history.append(result)
        if not result.success:
            raise ControlFlowError(f"{owner!r}: step {step.name!r} failed: {result.feedback}")
        data = result.output
    return data


def summary(
    name: str, output: Any, success: bool, nested: list[StepResult], feedback: str | None
) -> StepResult:
    """Return the result of one branch or item, adding up its nested steps."""
    return StepResult.trusted(
        name,
        output,
        success,
        1,
        sum(r.latency_s for r in nested),
        feedback,
        sum(r.cost_usd for r in nested),
        sum(r.token_counts for r in nested),
        step_history=nested,
    )
