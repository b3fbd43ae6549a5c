"""How control-flow steps run: branch, loop, parallel, map, state machine, router.

State machines and routers run in their own modules; all go through the executor.

Nested steps go through ``ExecutorCore.execute`` like any step, so they keep their
own policies, and their attempts are scopes inside the construct's scope.
Concurrent children — parallel branches, map items when ``concurrency > 1`` —
each run in an isolating child scope on their own copy of the context and are
merged in a fixed order (``flujo.application.core.merge``). Sequential children
(loop iterations, map items one at a time, a branch) run on the construct's
context directly: a failure fails the construct, whose scope drops it all.

A top-level loop, map or state machine records its progress through the run's
``Progress`` after each iteration, item or transition, committing what it did so far
with that record, so a resumed run (or a retry of the step) goes on after it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.application.core.merge import Merger
from flujo.application.core.nesting import (
    all_or_nothing,
    call,
    current_scope,
    run_body,
    summary,
)
from flujo.application.core.parallel import run_parallel
from flujo.application.core.router_run import run_router
from flujo.application.core.scope import Scope, copy_context
from flujo.application.core.state_machine_run import run_state_machine
from flujo.domain.dsl.control_flow import (
    BranchStep,
    CompositeStep,
    LoopStep,
    MapStep,
    ParallelStep,
)
from flujo.domain.dsl.router import RouterStep
from flujo.domain.dsl.state_machine import StateMachineStep
from flujo.domain.errors import ConfigurationError, ControlFlowError
from flujo.domain.models import StepResult
from flujo.domain.state_access import ACCESS

if TYPE_CHECKING:
    from flujo.application.core.executor_core import ExecutorCore

__all__ = ["PROGRESS", "Progress", "run_composite"]


@dataclass(slots=True)
class Progress:
    """Where a top-level loop, map or state machine records finished work, found on resume."""

    record: Callable[[dict[str, Any], Scope | None], Awaitable[None]]
    """Commit the construct's scope so far with the partial state (JSON data)."""
    resumed: dict[str, Any] | None = None
    """The partial state stored before a crash, for the step being resumed."""
    last: dict[str, Any] | None = None
    pending: bool = False
    """A commit of it failed half-way: its pending record, not a failure record, must stay."""


PROGRESS: ContextVar[Progress | None] = ContextVar("flujo_progress", default=None)
"""Set by the run loop around each top-level step; nested steps see ``None``."""


def _stored(progress: Progress | None) -> dict[str, Any] | None:
    """Return what this loop or map finished: earlier in this run (a retry), or before a resume."""
    if progress is None:
        return None
    return progress.last if progress.last is not None else progress.resumed


async def run_composite(
    executor: ExecutorCore,
    step: CompositeStep,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
) -> Any:
    """Run a control-flow step and return its output, appending nested results to ``history``.

    The caller owns ``history``, so what ran (and spent) is known however this ends.
    """
    progress = PROGRESS.get()
    token = PROGRESS.set(None)  # nested loops and maps do not record progress of their own
    try:
        if isinstance(step, BranchStep):
            return await _branch(executor, step, data, context, resources, history)
        if isinstance(step, LoopStep):
            return await _loop(executor, step, data, context, resources, history, progress)
        if isinstance(step, ParallelStep):
            return await run_parallel(executor, step, data, context, resources, history)
        if isinstance(step, MapStep):
            return await _map(executor, step, data, context, resources, history, progress)
        if isinstance(step, StateMachineStep):
            return await run_state_machine(
                executor, step, data, context, resources, history, progress
            )
        if isinstance(step, RouterStep):
            return await run_router(executor, step, data, context, resources, history)
        raise ConfigurationError(f"unknown control-flow step {type(step).__name__}")
    finally:
        PROGRESS.reset(token)


async def _branch(
    executor: ExecutorCore,
    step: BranchStep,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
) -> Any:
    key = await call(step.condition, data, context)
    body = step.branches.get(key) if isinstance(key, str) else None
    if body is None:
        body = step.default
    if body is None:
        known = ", ".join(repr(k) for k in step.branches)
        raise ControlFlowError(
            f"branch_on {step.name!r}: condition chose {key!r}, which is none of {known} "
            "and there is no default"
        )
    return await run_body(executor, step.name, body, data, context, resources, history)


async def _loop(
    executor: ExecutorCore,
    step: LoopStep,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
    progress: Progress | None,
) -> Any:
    first = 0
    stored = _stored(progress)
    if stored is not None:
        first = int(stored["iteration"])
        data = stored["output"]
        # The run may have stopped between an iteration and its exit check.
        if first > 0 and await call(step.exit_condition, data, context):
            return data
    scope = current_scope()
    for iteration in range(first, step.max_loops):
        data = await run_body(executor, step.name, step.body, data, context, resources, history)
        if progress is not None:
            partial = {"kind": "loop", "iteration": iteration + 1, "output": data}
            await progress.record(partial, scope)
        if await call(step.exit_condition, data, context):
            return data
    if step.on_max_loops == "return":
        return data
    raise ControlFlowError(
        f"loop_until {step.name!r} reached max_loops={step.max_loops} without its exit "
        "condition becoming true"
    )


async def _items(step: MapStep, data: Any, context: BaseModel | None) -> list[Any]:
    if step.items_from is None:
        source = data
    elif isinstance(step.items_from, str):
        if context is None or step.items_from not in type(context).model_fields:
            raise ControlFlowError(
                f"map_over {step.name!r}: the context has no field {step.items_from!r}"
            )
        source = getattr(context, step.items_from)
    else:
        source = await call(step.items_from, data, context)
    if isinstance(source, str | bytes) or not hasattr(source, "__iter__"):
        raise ControlFlowError(
            f"map_over {step.name!r}: items must be iterable, got {type(source).__name__}"
        )
    return list(source)


async def _map(
    executor: ExecutorCore,
    step: MapStep,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
    progress: Progress | None,
) -> list[Any]:

    items = await _items(step, data, context)
    outputs: dict[int, Any] = {}
    stored = _stored(progress)
    if stored is not None:
        outputs = {int(i): out for i, out in stored["done"].items()}
    scope = current_scope()
    results: dict[int, StepResult] = {}
    failed: list[str] = []

    async def record() -> None:
        if progress is not None:
            snapshot = {str(i): o for i, o in sorted(outputs.items())}
            await progress.record({"kind": "map", "done": snapshot}, scope)

    async def run_item(index: int, item: Any, item_context: Any) -> Any:
        nested: list[StepResult] = []
        name = f"{step.name}[{index}]"
        try:
            out = await run_body(executor, name, step.body, item, item_context, resources, nested)
        except ControlFlowError as exc:
            failed.append(str(exc))
            results[index] = summary(name, None, False, nested, str(exc))
            raise
        results[index] = summary(name, out, True, nested, None)
        return out

    todo = [(i, item) for i, item in enumerate(items) if i not in outputs]
    if step.concurrency == 1:
        for index, item in todo:
            try:
                outputs[index] = await run_item(index, item, context)
            except ControlFlowError:
                break
            await record()
    else:
        await _map_concurrently(
            executor, step, todo, context, scope, outputs, failed, run_item, record
        )
    history.extend(results[i] for i in sorted(results))
    if failed:
        raise ControlFlowError(f"map_over {step.name!r}: {failed[0]}")
    return [outputs[i] for i in range(len(items))]


async def _map_concurrently(
    executor: ExecutorCore,
    step: MapStep,
    todo: list[tuple[int, Any]],
    context: BaseModel | None,
    scope: Scope | None,
    outputs: dict[int, Any],
    failed: list[str],
    run_item: Callable[[int, Any, Any], Awaitable[Any]],
    record: Callable[[], Awaitable[None]],
) -> None:
    """Run items ``step.concurrency`` at a time, each on its own copy; commit in index order."""
    import asyncio

    gate, lock = asyncio.Semaphore(step.concurrency), asyncio.Lock()
    base = copy_context(context)
    merger = Merger(step.name, "map")
    finished: dict[int, tuple[Scope, Any]] = {}
    order = [i for i, _ in todo]

    def commit(position: int) -> None:
        child, out = finished.pop(position)
        merger.merge(str(position), child, base, scope, context)
        outputs[position] = out

    async def one(index: int, item: Any) -> None:
        async with gate:
            if failed:
                return  # a failure stops new items from starting
            child = Scope(executor.session, scope, f"item {index}", base, isolate=True)
            token = ACCESS.set(child)
            try:
                out = await run_item(index, item, child.context)
            except ControlFlowError:
                return
            finally:
                ACCESS.reset(token)
            finished[index] = (child, out)
        async with lock:  # items commit in index order, each after those before it
            committed = False
            while order and order[0] in finished and not failed:
                commit(order.pop(0))
                committed = True
            if committed:
                await record()

    await all_or_nothing(one(i, item) for i, item in todo)
    if finished:
        # An item failed: those that finished after it still commit, in index order, so
        # neither a resume nor a retry redoes their work.
        for position in sorted(finished):
            commit(position)
        await record()
