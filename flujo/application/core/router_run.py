"""How a router runs: ``choose`` names the branches, which then run as a parallel's branches do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.application.core.nesting import call
from flujo.application.core.parallel import run_parallel
from flujo.domain.dsl.router import RouterStep
from flujo.domain.models import StepResult

if TYPE_CHECKING:
    from flujo.application.core.executor_core import ExecutorCore

__all__ = ["run_router"]


async def run_router(
    executor: ExecutorCore,
    step: RouterStep,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
) -> Any:
    """Run the branches ``choose(data, context)`` names; ``{}`` when it names none."""
    names = step.chosen(await call(step.choose, data, context))
    if not names:
        return {}  # nothing ran: there is nothing for ``merge`` to combine
    chosen = {name: step.branches[name] for name in names}
    return await run_parallel(executor, step, data, context, resources, history, chosen)
