"""How control-flow steps run: branch, loop, parallel and map, through the executor.

Nested steps go through ``ExecutorCore.execute`` like any step, so they keep their
own policies and managed state. A top-level loop or map records its progress
(finished iterations or items) through the run's ``Progress`` so a resumed run
does not redo them.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.application.core.references import find_references
from flujo.domain.dsl.control_flow import (
    BranchStep,
    CompositeStep,
    LoopStep,
    MapStep,
    ParallelStep,
)
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import HumanStep
from flujo.domain.errors import ConfigurationError, ControlFlowError, ParallelConflictError
from flujo.domain.models import StepResult

if TYPE_CHECKING:
    from flujo.application.core.executor_core import ExecutorCore

__all__ = ["PROGRESS", "Composite", "Progress", "run_composite"]


@dataclass(slots=True)
class Progress:
    """Where a top-level loop or map records finished work, and finds it on resume."""

    record: Callable[[dict[str, Any]], Awaitable[None]]
    """Store the partial state (JSON data) of the step now running."""
    resumed: dict[str, Any] | None = None
    """The partial state stored before a crash, for the step being resumed."""
    last: dict[str, Any] | None = field(default=None)


PROGRESS: ContextVar[Progress | None] = ContextVar("flujo_progress", default=None)
"""Set by the run loop around each top-level step; nested steps see ``None``."""


def _stored(progress: Progress | None) -> dict[str, Any] | None:
    """Return what this loop or map finished: earlier in this run (a retry), or before a resume."""
    if progress is None:
        return None
    return progress.last if progress.last is not None else progress.resumed


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


@dataclass(slots=True)
class Composite:
    """What a control-flow step produced: its output and its nested results."""

    output: Any = None
    history: list[StepResult] = field(default_factory=list)


async def run_composite(
    executor: ExecutorCore,
    step: CompositeStep,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
) -> Composite:
    """Run a control-flow step, appending nested results to ``history`` as they finish.

    The caller owns ``history``, so what ran (and spent) is known however this ends.
    """
    progress = PROGRESS.get()
    token = PROGRESS.set(None)  # nested loops and maps do not record progress of their own
    done = Composite(history=history)
    try:
        if isinstance(step, BranchStep):
            done.output = await _branch(executor, step, data, context, resources, done.history)
        elif isinstance(step, LoopStep):
            done.output = await _loop(
                executor, step, data, context, resources, done.history, progress
            )
        elif isinstance(step, ParallelStep):
            done.output = await _parallel(executor, step, data, context, resources, done.history)
        elif isinstance(step, MapStep):
            done.output = await _map(
                executor, step, data, context, resources, done.history, progress
            )
        else:
            raise ConfigurationError(f"unknown control-flow step {type(step).__name__}")
    finally:
        PROGRESS.reset(token)
    return done


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
    for iteration in range(first, step.max_loops):
        data = await _run_body(executor, step.name, step.body, data, context, resources, history)
        if progress is not None:
            await progress.record({"kind": "loop", "iteration": iteration + 1, "output": data})
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
    import asyncio  # not at module level: keeps `import flujo` light (see runner._run_sync)

    items = await _items(step, data, context)
    outputs: dict[int, Any] = {}
    stored = _stored(progress)
    if stored is not None:
        outputs = {int(i): out for i, out in stored["done"].items()}
    results: dict[int, StepResult] = {}
    gate = asyncio.Semaphore(step.concurrency)
    failed: list[str] = []
    lock = asyncio.Lock()

    async def one(index: int, item: Any) -> None:
        async with gate:
            if failed:
                return  # a failure stops new items from starting
            nested: list[StepResult] = []
            name = f"{step.name}[{index}]"
            try:
                out = await _run_body(executor, name, step.body, item, context, resources, nested)
            except ControlFlowError as exc:
                failed.append(str(exc))
                results[index] = _summary(name, None, False, nested, str(exc))
                return
            results[index] = _summary(name, out, True, nested, None)
            outputs[index] = out
            if progress is not None:
                async with lock:  # records are whole snapshots: write them one at a time
                    snapshot = {str(i): o for i, o in sorted(outputs.items())}
                    await progress.record({"kind": "map", "done": snapshot})

    await _all_or_nothing(one(i, item) for i, item in enumerate(items) if i not in outputs)
    history.extend(results[i] for i in sorted(results))
    if failed:
        raise ControlFlowError(f"map_over {step.name!r}: {failed[0]}")
    return [outputs[i] for i in range(len(items))]


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


async def _parallel(
    executor: ExecutorCore,
    step: ParallelStep,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
) -> Any:

    copies = {name: _branch_context(step, name, context) for name in step.branches}
    results: dict[str, StepResult] = {}

    async def one(name: str, body: Pipeline[Any, Any]) -> None:
        nested: list[StepResult] = []
        label = f"{step.name}.{name}"
        try:
            out = await _run_body(executor, label, body, data, copies[name], resources, nested)
        except ControlFlowError as exc:
            results[name] = _summary(name, None, False, nested, str(exc))
            return
        results[name] = _summary(name, out, True, nested, None)

    await _all_or_nothing(one(name, body) for name, body in step.branches.items())
    history.extend(results[name] for name in step.branches)
    failures = [r for r in results.values() if not r.success]
    if failures and step.on_branch_failure == "fail":
        raise ControlFlowError(f"parallel {step.name!r}: branch {failures[0].feedback}")
    succeeded = [name for name in step.branches if results[name].success]
    if context is not None:
        _merge_contexts(executor, step, context, {name: copies[name] for name in succeeded})
    outputs = {name: results[name].output for name in succeeded}
    return outputs if step.merge is None else await _call(step.merge, outputs)


def _branch_context(step: ParallelStep, branch: str, context: BaseModel | None) -> Any:
    """Return a deep copy of the context whose references share the run's values.

    Each branch gets its own view of every reference: writable for the branch
    ``reference_writers`` names, read-only for the others.
    """
    if context is None:
        return None
    memo: dict[int, Any] = {}
    for path, ref in find_references(context, with_paths=True):
        field_path = path.removeprefix("context.")
        writer = step.reference_writers.get(field_path)
        reason = None
        if writer != branch:
            reason = (
                f"parallel branch {branch!r} of {step.name!r} may only read {field_path}; "
                f"name it in reference_writers to let it write"
            )
        memo[id(ref)] = ref._view(reason)
    return copy.deepcopy(context, memo)


def _merge_contexts(
    executor: ExecutorCore,
    step: ParallelStep,
    context: BaseModel,
    copies: dict[str, Any],
) -> None:
    """Apply each branch's changed fields; two branches changing one field differently fail."""
    dumps = executor.serializer.dumps
    fields = list(type(context).model_fields)
    before = {name: _Print(dumps, getattr(context, name)) for name in fields}
    changes: dict[str, tuple[str, Any, _Print]] = {}
    for branch, branch_context in copies.items():
        for name in fields:
            value = getattr(branch_context, name)
            current = _Print(dumps, value)
            if current.same_as(before[name]):
                continue
            if name in changes and not changes[name][2].same_as(current):
                raise ParallelConflictError(
                    f"parallel {step.name!r}: branches {changes[name][0]!r} and {branch!r} "
                    f"both changed context field {name!r}, to different values"
                )
            changes[name] = (branch, value, current)
    originals = {id(ref): ref for _, ref in find_references(context)}
    for name, (_, value, _) in changes.items():
        setattr(context, name, value)
    # Writer branches saved their references already; the run's references take the values.
    for branch_context in copies.values():
        for _, view in find_references(branch_context):
            for original in originals.values():
                if (original.provider_id, original.key) == (view.provider_id, view.key):
                    private: Any = view.__pydantic_private__
                    if private["_read_only"] is None and original.is_hydrated:
                        original._hydrate(private["_value"], private["_digest"])


class _Print:
    """A field value compared by its JSON form (references as pointers), else by ``==``."""

    __slots__ = ("blob", "value")

    def __init__(self, dumps: Callable[[Any], bytes], value: Any) -> None:
        self.value = value
        try:
            self.blob: bytes | None = dumps(value)
        except (TypeError, ValueError):
            self.blob = None  # not JSON: a deep copy is compared by equality instead

    def same_as(self, other: _Print) -> bool:
        if self.blob is not None and other.blob is not None:
            return self.blob == other.blob
        try:
            return bool(self.value == other.value)
        except Exception:
            return self.value is other.value
