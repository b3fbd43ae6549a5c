"""One run of a pipeline: the step loop, pauses, hooks and the end of the run.

Every run ends in one place, whatever stopped it — its last step, a failed step,
a pause, a hook's abort, a cancellation, a backend or provider error: what the
run owes its providers is saved (and recorded if that fails), the final header
is written with the status and its cause, hooks receive ``RunFinished``, and
the lease is given back. Only a run whose lease another process took over
writes nothing more: the run is that process's now.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flujo.application.core.control_flow import PROGRESS
from flujo.application.core.lease import Lease
from flujo.application.core.owed import finish_saves, record_owed, restage, save_restaged
from flujo.application.core.run_state import (
    SCHEMA_VERSION,
    RunParts,
    RunPlan,
    RunStart,
    RunState,
    result_payload,
)
from flujo.application.core.scope import LeanAccess
from flujo.application.core.step_checkpoint import commit_result
from flujo.domain.dsl.step import HumanStep
from flujo.domain.errors import PipelineAbortSignal, RunLeasedError, StateError
from flujo.domain.events import (
    RunFinished,
    RunPaused,
    RunStarted,
    StepFailed,
    StepFinished,
    StepStarted,
)
from flujo.domain.interfaces import FinalCheckpoint
from flujo.domain.models import PipelineContext, PipelineResult, RunStatus, StepResult
from flujo.domain.state_access import ACCESS

__all__ = ["SCHEMA_VERSION", "RunParts", "RunPlan", "RunStart", "execute_run", "result_payload"]

ContextT = TypeVar("ContextT", bound=PipelineContext)


def _human_result(name: str, value: Any) -> StepResult:
    return StepResult.trusted(name, value, True, 1, 0.0, None, 0.0, 0)


@dataclass(slots=True)
class _Outcome:
    status: RunStatus = "completed"
    output: Any = None
    error: str | None = None
    pause_message: str | None = None
    cost_usd: float = 0.0
    tokens: int = 0
    """Totals of the run's step results (steps may run on any backend's executor)."""


async def _step_loop(run: RunState[Any], history: list[StepResult]) -> _Outcome:
    """Run the steps from ``run.start.index`` on, appending to ``history``."""
    plan, parts, start = run.plan, run.parts, run.start
    backend, state_backend = parts.backend, parts.state_backend
    session = parts.session
    context, run_id, hooks = run.context, run.run_id, bool(plan.hooks)
    limits, resources, steps = plan.usage_limits, plan.resources, plan.pipeline.steps
    outcome = _Outcome(
        output=start.data,
        cost_usd=sum(r.cost_usd for r in start.history),
        tokens=sum(r.token_counts for r in start.history),
    )
    for index in range(start.index, len(steps)):
        step = steps[index]
        answered = index == start.index and start.has_human_output
        if isinstance(step, HumanStep) and not answered:
            outcome.status, outcome.pause_message = "paused", step.message
            if hooks:
                await run.emit(RunPaused(run_id=run_id, step_name=step.name, message=step.message))
            return outcome
        if hooks:
            await run.emit(StepStarted(run_id=run_id, step_name=step.name, index=index))
        progress = None
        if isinstance(step, HumanStep):
            result = _human_result(step.name, start.human_output)
        elif step.composite and state_backend is not None:
            progress = run.progress(index, step)
            token = PROGRESS.set(progress)
            try:
                result = await backend.execute_step(
                    step, outcome.output, context=context, resources=resources
                )
            finally:
                PROGRESS.reset(token)
        else:
            result = await backend.execute_step(
                step, outcome.output, context=context, resources=resources
            )
        if state_backend is not None or session.staged:
            result = await commit_result(run, index, step, result, progress)
        history.append(result)
        if hooks:
            if not result.success:
                await run.emit(
                    StepFailed(run_id=run_id, step_name=step.name, index=index, result=result)
                )
            await run.emit(
                StepFinished(run_id=run_id, step_name=step.name, index=index, result=result)
            )
        outcome.cost_usd += result.cost_usd
        outcome.tokens += result.token_counts
        if not result.success:
            outcome.status = "failed"
            return outcome
        outcome.output = result.output
        if limits is not None:
            exceeded = limits.exceeded_by(outcome.cost_usd, outcome.tokens)
            if exceeded is not None:
                outcome.status, outcome.error = "failed", f"UsageLimitExceededError: {exceeded}"
                return outcome
    return outcome


async def execute_run(
    plan: RunPlan,
    parts: RunParts,
    start: RunStart[ContextT],
    *,
    lease: Lease | None = None,
    replace: bool = False,
) -> PipelineResult[ContextT]:
    """Run the steps of ``plan.pipeline`` from ``start`` and return the result.

    A new durable run writes its header first, taking the run's lease
    (``RunExistsError`` if the id is stored and not ``replace``); a resumed one
    comes with the lease its resume claimed, which it holds from here on.
    """
    run = RunState(plan, parts, start)
    state_backend = parts.state_backend
    resumed = lease is not None
    if state_backend is not None and lease is None:
        lease = Lease(
            state_backend, start.run_id, parts.owner, parts.lease, parts.clock, parts.telemetry
        )
        run.lease = lease
        await state_backend.create_run(run.header("running", start.index), replace=replace)
        lease.start()
    run.lease = lease
    span = (
        parts.telemetry.start_span(
            "flujo.run",
            {"flujo.run_id": start.run_id, "flujo.pipeline": plan.pipeline_name},
        )
        if parts.executor.tracing
        else None
    )
    try:
        result = await _execute(run, resumed)
    except BaseException as exc:
        if span is not None:
            span.record_exception(exc)
            span.end()
        raise
    if span is not None:
        span.set_attribute("flujo.status", result.status)
        span.set_attribute("flujo.cost_usd", result.total_cost_usd)
        span.set_attribute("flujo.tokens", result.total_tokens)
        span.end()
    return result


async def _execute(run: RunState[ContextT], resumed: bool) -> PipelineResult[ContextT]:
    plan, parts, start = run.plan, run.parts, run.start
    executor, state_backend, lease = parts.executor, parts.state_backend, run.lease
    executor.session.deferred = True  # this loop saves staged values with the checkpoints
    history = list(start.history)
    outcome: _Outcome | None = None
    failure: BaseException | None = None
    access = None
    try:
        if resumed and state_backend is not None and lease is not None:
            # Owed saves stay in the header until they are made: a crash now keeps them.
            header = run.header("running", start.index, owed=start.owed_json)
            await state_backend.save_run(header, owner=lease.owner)
        # Hydration failures raise before any step runs: no step ever sees unhydrated data.
        session = executor.session
        await session.hydrate(start.context)
        if session.manages(start.context):
            # One scope for the run's lean steps (see scope.LeanAccess), where references live.
            access = ACCESS.set(LeanAccess(session, start.context))
        if plan.hooks:
            await run.emit(RunStarted(run_id=start.run_id, pipeline_name=plan.pipeline_name))
        if start.owed:
            outcome = await _pay_owed(run, history)
        if outcome is None:
            outcome = await _step_loop(run, history)
    except PipelineAbortSignal as signal:
        outcome = _Outcome(status="failed", error=f"PipelineAbortSignal: {_text(signal)}")
        _totals(outcome, history)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        if access is not None:
            ACCESS.reset(access)
        result = await _end(run, history, outcome, failure)
    return result


async def _pay_owed(run: RunState[Any], history: list[StepResult]) -> _Outcome | None:
    """Make the saves the stored run owed; a failed outcome if they fail (nothing else runs)."""
    session, owed = run.parts.session, run.start.owed
    try:
        await save_restaged(session, restage(session, owed), owed[0]["writer"])
    except StateError as exc:
        outcome = _Outcome(status="failed", error=f"{type(exc).__name__}: {exc}")
        _totals(outcome, history)
        return outcome
    return None


def _totals(outcome: _Outcome, history: list[StepResult]) -> None:
    outcome.cost_usd = sum(r.cost_usd for r in history)
    outcome.tokens = sum(r.token_counts for r in history)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "CancelledError: the run's task was cancelled"
    text = _text(exc, "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _end(
    run: RunState[ContextT],
    history: list[StepResult],
    outcome: _Outcome | None,
    failure: BaseException | None,
) -> PipelineResult[ContextT]:
    """End the run: saves owed, final header, ``RunFinished``, the lease given back."""
    plan, start, lease = run.plan, run.start, run.lease
    if lease is not None:
        await lease.stop()
    lost = failure if isinstance(failure, RunLeasedError) else None
    if lost is None and lease is not None:
        lost = lease.lost
    if lost is None and run.unrecorded is not None:
        await _record_again(run, history)
    if outcome is None:
        cancelled = isinstance(failure, asyncio.CancelledError)
        outcome = _Outcome(status="cancelled" if cancelled else "failed")
        outcome.error = _cause(failure) if failure is not None else None
        _totals(outcome, history)
    raise_after: BaseException | None = None
    if lost is not None:
        outcome.status, outcome.error = "failed", f"RunLeasedError: {lost}"
    else:
        raise_after = await _write_end(run, history, outcome, failure)
        if isinstance(raise_after, RunLeasedError):
            outcome.status, outcome.error = "failed", f"RunLeasedError: {raise_after}"
    result: PipelineResult[ContextT] = PipelineResult.trusted(
        run_id=start.run_id,
        status=outcome.status,
        success=outcome.status == "completed",
        output=outcome.output if outcome.status in ("completed", "paused") else None,
        step_history=history,
        final_pipeline_context=start.context,
        total_cost_usd=outcome.cost_usd,
        total_tokens=outcome.tokens,
        error=outcome.error,
        pause_message=outcome.pause_message,
    )
    if plan.hooks:
        # The run has ended: an abort signal has nothing left to stop.
        with contextlib.suppress(PipelineAbortSignal):
            await run.emit(RunFinished(run_id=start.run_id, result=result))
    run.parts.session.close()
    if failure is None:
        if lost is not None:
            raise lost
        if raise_after is not None:
            raise raise_after
    return result


async def _record_again(run: RunState[Any], history: list[StepResult]) -> None:
    """Write the record of a step whose checkpoint failed, once more.

    If it fails again, no change made in place is saved: that step runs again on
    resume, and what it changed in place must not be saved twice.
    """
    assert run.unrecorded is not None and run.parts.state_backend is not None
    result, make, payload = run.unrecorded
    try:
        await run.parts.state_backend.checkpoint(make(payload, False))
    except StateError:
        reason = f"the checkpoint of step {result.name!r} failed (it runs again on resume)"
        for entry in run.parts.session.entries.values():
            if entry.read and entry.tainted is None:
                entry.tainted = reason
        return
    run.unrecorded = None
    history.append(result)


async def _write_end(
    run: RunState[Any],
    history: list[StepResult],
    outcome: _Outcome,
    failure: BaseException | None,
) -> BaseException | None:
    """Save what is owed and write the final header; return an error to raise, if any."""
    plan, parts, start = run.plan, run.parts, run.start
    state_backend, lease = parts.state_backend, run.lease
    writer = f"{start.run_id}/end@{parts.owner}"  # one tag per ending: a resume tells them apart
    final, run.final = run.final, None
    if final is not None and parts.executor.session.entries and state_backend is not None:
        # A reference appeared after all: its saves below must follow the last record.
        await state_backend.checkpoint(final[1](final[2], False))
        final = None
    unsaved, error = await finish_saves(parts.executor.session, start.context, writer)
    if error is not None:
        cause = f"{type(error).__name__}: {error}"
        if outcome.status in ("completed", "paused"):
            outcome.status, outcome.error, outcome.pause_message = "failed", cause, None
        else:
            outcome.error = f"{outcome.error}; then {cause}" if outcome.error else cause
    if state_backend is None:
        return None
    owed = record_owed(unsaved, writer, parts.serializer, parts.telemetry, start.run_id)
    completed = sum(1 for r in history if r.success)
    header = run.header(outcome.status, completed, outcome.error, outcome.pause_message, owed)
    owner = None if lease is None else lease.owner
    try:
        if final is not None:  # only held back when the backend is a FinalCheckpoint
            record = final[1](final[2], False)
            await cast(FinalCheckpoint, state_backend).finish_run(record, header, owner=owner)
        else:
            await state_backend.save_run(header, owner=owner)
        if outcome.status == "completed" and plan.delete_on_completion:
            await state_backend.delete_run(start.run_id)
    except StateError as exc:
        if failure is None or isinstance(exc, RunLeasedError):
            return exc
        parts.telemetry.warning(
            f"run {start.run_id}: writing its final header failed ({type(exc).__name__}: {exc}); "
            "it stays 'running' until its lease expires, then it can be resumed"
        )
    return None


def _text(exc: BaseException, default: str = "a hook stopped the run") -> str:
    try:
        return str(exc) or default
    except Exception:
        return default
