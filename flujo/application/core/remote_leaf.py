"""Leaf steps run away from the driver: what the driver ships, and what it does with the answer.

``drive_leaf`` runs on the driver, for every leaf step of a run whose execution
backend offers a ``LeafRunner`` (``ExecutorCore.remote``). It reads the context
and the references as the step's scope sees them, ships a ``LeafWork``, and
applies the ``LeafOutcome``: for a step that succeeded, the context's plain
fields become the worker's and each reference it changed is ``set()`` through
the scope the step runs in — so the driver stays the only writer, and what the
worker changed commits (or is dropped) with that scope like any in-process change.
A failed step changes nothing. The step-result cache is looked up and filled here,
on the driver, where the run's cache is.

Where the step goes, ``flujo.application.core.leaf_worker.run_work`` runs it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.application.core.commit import save_staged
from flujo.application.core.entry import Entry
from flujo.application.core.outcome import Attempts
from flujo.application.core.references import find_references
from flujo.application.core.scope import Scope
from flujo.domain.dsl.step import Step
from flujo.domain.errors import StateError
from flujo.domain.leaf_work import LeafRunner, LeafWork, RefKey
from flujo.domain.models import ContextReference, StepResult
from flujo.domain.state_access import ACCESS

if TYPE_CHECKING:
    from flujo.application.core.executor_core import ExecutorCore

__all__ = ["drive_leaf"]


def _failed(name: str, feedback: str, start: float) -> StepResult:
    return StepResult.trusted(name, None, False, 0, time.perf_counter() - start, feedback, 0.0, 0)


async def drive_leaf(
    executor: ExecutorCore,
    step: Step[Any, Any],
    data: Any,
    context: BaseModel | None,
    resources: Any,
    runner: LeafRunner,
) -> StepResult:
    """Run the leaf ``step`` through ``runner`` and apply what it changed (see above)."""
    start = time.perf_counter()
    session = executor.session
    refs: list[ContextReference[Any]] = []
    if context is not None and session.manages(context):
        if session.needs_hydration(context):
            try:
                await session.hydrate(context)
            except StateError as exc:
                return _failed(step.name, f"{type(exc).__name__}: {exc}", start)
        refs = [ref for _, ref in find_references(context)]
    key = None
    if step.config.cache:
        try:
            key = executor.cache_key(step, data, context)
        except Exception as exc:  # strict caching of an input it cannot key
            return _failed(step.name, f"{type(exc).__name__}: {exc}", start)
        found = Attempts()
        if key is not None and await executor.cache_lookup(step, key, found):
            return StepResult.trusted(
                step.name, found.output, True, 0, time.perf_counter() - start, None, 0.0, 0, True
            )
    work = _work(executor, step, data, context, resources, refs)
    try:
        outcome = await runner.run_leaf(work)
    except Exception as exc:  # the backend could not run it (shipping, a lost worker)
        return _failed(step.name, f"{type(exc).__name__}: {exc}", start)
    result = outcome.result
    if result.cost_usd or result.token_counts:
        executor.usage_meter.add(result.cost_usd, result.token_counts)
    if not result.success:
        return result
    if context is not None and outcome.context_json is not None:
        _take_fields(context, outcome.context_json)
    if outcome.writes:
        failed = await _apply_writes(executor, step, context, refs, outcome.writes, start)
        if failed is not None:
            return failed
    if key is not None:
        await executor.cache_store(step, key, result.output)
    return result


def _work(
    executor: ExecutorCore,
    step: Step[Any, Any],
    data: Any,
    context: BaseModel | None,
    resources: Any,
    refs: list[ContextReference[Any]],
) -> LeafWork:
    """Return what ships: the context as JSON, each reference's value as the scope sees it."""
    session = executor.session
    values: dict[RefKey, tuple[Any, bool]] = {}
    for ref in refs:
        ident = (ref.provider_id, ref.key)
        if ident not in values:
            entry = session.entry_of(ref)
            values[ident] = (_visible(ident, entry), entry.watch)
    return LeafWork(
        step=step,
        data=data,
        context_model=None if context is None else type(context),
        context_json=None if context is None else context.model_dump_json().encode(),
        values=values,
        resources=resources,
        pipeline_name=executor.pipeline_name,
        watch_in_place=session.watch_in_place,
    )


def _visible(ident: RefKey, entry: Entry) -> Any:
    """Return the value the running scope sees for ``ident`` (its own, a parent's, the run's)."""
    access = ACCESS.get()
    if isinstance(access, Scope):
        found, value = access.visible(ident)
        if found:
            return value
    return entry.value


def _take_fields(context: BaseModel, context_json: bytes) -> None:
    """Make ``context``'s plain fields those the worker returned; keep its reference objects."""
    after = type(context).model_validate_json(context_json)
    mine = context.__dict__
    for name, value in after.__dict__.items():
        held = mine.get(name)
        if (
            isinstance(held, ContextReference)
            and isinstance(value, ContextReference)
            and (held.provider_id, held.key) == (value.provider_id, value.key)
        ):
            continue  # the driver's object, bound to the run's value, stays
        mine[name] = value
    object.__setattr__(
        context, "__pydantic_fields_set__", context.model_fields_set | after.model_fields_set
    )


async def _apply_writes(
    executor: ExecutorCore,
    step: Step[Any, Any],
    context: BaseModel | None,
    refs: list[ContextReference[Any]],
    writes: dict[RefKey, Any] | Any,
    start: float,
) -> StepResult | None:
    """``set()`` each changed reference through the running scope; a failed result if it cannot."""
    session = executor.session
    by_ident = {(ref.provider_id, ref.key): ref for ref in refs}
    access = ACCESS.get()
    # Inside a branch, item or iteration the writes join its scope, which commits with it;
    # at the top (the run's lean scope) or driven by hand they commit here, as the step did.
    own = type(access) is not Scope
    scope = Scope(session, None, step.name, context, isolate=False) if own else access
    assert isinstance(scope, Scope)
    for ident, value in writes.items():
        ref = by_ident.get(ident)
        if ref is None:  # a reference the step made: the driver binds it by its key
            ref = ContextReference(provider_id=ident[0], key=ident[1])
        scope.write(ref, value)
    if own:
        scope.commit()
        if not session.deferred:  # driven by hand: saved now, as run_step does
            try:
                await save_staged(session, session.take_staged(), "", step.config, executor.backoff)
            except StateError as exc:
                return _failed(step.name, f"{type(exc).__name__}: {exc}", start)
    return None
