"""How control-flow steps run: branch, loop, parallel and map, through the executor.

Nested steps go through ``ExecutorCore.execute`` like any step, so they keep their
own policies, and their attempts are scopes inside the construct's scope.
Concurrent children — parallel branches, map items when ``concurrency > 1`` —
each run in an isolating child scope on their own copy of the context and are
merged in a fixed order (``flujo.application.core.merge``). Sequential children
(loop iterations, map items one at a time, a branch) run on the construct's
context directly: a failure fails the construct, whose scope drops it all.

A top-level loop or map records its progress through the run's ``Progress``
after each iteration or item, committing what it did so far with that record,
so a resumed run (or a retry of the step) goes on after it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.application.core.merge import Merger
from flujo.application.core.references import find_references
from flujo.application.core.scope import Scope, copy_context
from flujo.application.core.session import Key
from flujo.domain.dsl.control_flow import (
    BranchStep,
    CompositeStep,
    LoopStep,
    MapStep,
    ParallelStep,
)
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import HumanStep
from flujo.domain.errors import ConfigurationError, ControlFlowError
from flujo.domain.models import StepResult
from flujo.domain.state_access import ACCESS

if TYPE_CHECKING:
    from flujo.application.core.executor_core import ExecutorCore

__all__ = ["PROGRESS", "Progress", "run_composite"]


@dataclass(slots=True)
class Progress:
    """Where a top-level loop or map records finished work, and finds it on resume."""

    record: Callable[[dict[str, Any], Scope | None], Awaitable[None]]
    """Commit the construct's scope so far with the partial state (JSON data)."""
    resumed: dict[str, Any] | None = None
    """The partial state stored before a crash, for the step being resumed."""
    last: dict[str, Any] | None = None


PROGRESS: ContextVar[Progress | None] = ContextVar("flujo_progress", default=None)
"""Set by the run loop around each top-level step; nested steps see ``None``."""


def _stored(progress: Progress | None) -> dict[str, Any] | None:
    """Return what this loop or map finished: earlier in this run (a retry), or before a resume."""
    if progress is None:
        return None
    return progress.last if progress.last is not None else progress.resumed


def _scope() -> Scope | None:
    access = ACCESS.get()
    return access if type(access) is Scope else None


async def _yield() -> None:
    import asyncio  # not at module level: keeps `import flujo` light (see runner._run_sync)

    await asyncio.sleep(0)


async def _all_or_nothing(work: Iterable[Coroutine[Any, Any, None]]) -> None:
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


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    outcome = fn(*args)
    if inspect.isawaitable(outcome):
        outcome = await outcome
    return outcome


async def _run_body(
    executor: ExecutorCore,
    owner: str,
    body: Pipeline[Any, Any],
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
) -> Any:
    for step in body.steps:
        # Yield to the loop between nested steps, so a timeout on the construct can fire
        # even when every nested step is synchronous.
        await _yield()
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
            return await _parallel(executor, step, data, context, resources, history)
        if isinstance(step, MapStep):
            return await _map(executor, step, data, context, resources, history, progress)
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
    key = await _call(step.condition, data, context)
    body = step.branches.get(key) if isinstance(key, str) else None
    if body is None:
        body = step.default
    if body is None:
        known = ", ".join(repr(k) for k in step.branches)
        raise ControlFlowError(
            f"branch_on {step.name!r}: condition chose {key!r}, which is none of {known} "
            "and there is no default"
        )
    return await _run_body(executor, step.name, body, data, context, resources, history)


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
        if first > 0 and await _call(step.exit_condition, data, context):
            return data
    scope = _scope()
    for iteration in range(first, step.max_loops):
        data = await _run_body(executor, step.name, step.body, data, context, resources, history)
        if progress is not None:
            partial = {"kind": "loop", "iteration": iteration + 1, "output": data}
            await progress.record(partial, scope)
        if await _call(step.exit_condition, data, context):
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
        source = await _call(step.items_from, data, context)
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
    scope = _scope()
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
            out = await _run_body(executor, name, step.body, item, item_context, resources, nested)
        except ControlFlowError as exc:
            failed.append(str(exc))
            results[index] = _summary(name, None, False, nested, str(exc))
            raise
        results[index] = _summary(name, out, True, nested, None)
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

    await _all_or_nothing(one(i, item) for i, item in todo)
    if finished:
        # An item failed: those that finished after it still commit, in index order, so
        # neither a resume nor a retry redoes their work.
        for position in sorted(finished):
            commit(position)
        await record()


def _summary(
    name: str, output: Any, success: bool, nested: list[StepResult], feedback: str | None
) -> StepResult:
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


def _read_only(step: ParallelStep, branch: str, context: BaseModel | None) -> dict[Key, str]:
    """Return the references a branch may only read (all but its ``reference_writers``)."""
    if context is None:
        return {}
    denied: dict[Key, str] = {}
    for path, ref in find_references(context, with_paths=True):
        field_path = path.removeprefix("context.")
        if step.reference_writers.get(field_path) != branch:
            denied[(ref.provider_id, ref.key)] = (
                f"parallel branch {branch!r} of {step.name!r} may only read {field_path}; "
                f"name it in reference_writers to let it write"
            )
    return denied


async def _parallel(
    executor: ExecutorCore,
    step: ParallelStep,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
) -> Any:
    scope = _scope()
    base = copy_context(context)
    children = {
        name: Scope(
            executor.session,
            scope,
            f"branch {name!r}",
            base,
            isolate=True,
            read_only=_read_only(step, name, context),
        )
        for name in step.branches
    }
    results: dict[str, StepResult] = {}

    async def one(name: str, body: Pipeline[Any, Any]) -> None:
        nested: list[StepResult] = []
        child = children[name]
        token = ACCESS.set(child)
        try:
            out = await _run_body(
                executor, f"{step.name}.{name}", body, data, child.context, resources, nested
            )
        except ControlFlowError as exc:
            results[name] = _summary(name, None, False, nested, str(exc))
            return
        finally:
            ACCESS.reset(token)
        results[name] = _summary(name, out, True, nested, None)

    await _all_or_nothing(one(name, body) for name, body in step.branches.items())
    history.extend(results[name] for name in step.branches)
    failures = [r for r in results.values() if not r.success]
    if failures and step.on_branch_failure == "fail":
        raise ControlFlowError(f"parallel {step.name!r}: branch {failures[0].feedback}")
    succeeded = [name for name in step.branches if results[name].success]
    merger = Merger(step.name, "parallel")
    # Every branch is checked before any is applied: a conflict leaves the context as it was.
    changes = [merger.prepare(name, children[name], base, scope) for name in succeeded]
    for change in changes:
        merger.apply(change, scope, context)
    outputs = {name: results[name].output for name in succeeded}
    return outputs if step.merge is None else await _call(step.merge, outputs)
