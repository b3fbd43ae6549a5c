"""One run of a pipeline: the step loop, pauses, hooks and the end of the run."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, TypeVar

from flujo.application.core.control_flow import PROGRESS
from flujo.application.core.run_state import (
    SCHEMA_VERSION,
    RunParts,
    RunPlan,
    RunStart,
    RunState,
    commit_result,
    result_payload,
)
from flujo.application.core.scope import LeanAccess
from flujo.domain.dsl.step import HumanStep
from flujo.domain.errors import PipelineAbortSignal, StateError
from flujo.domain.events import (
    RunFinished,
    RunPaused,
    RunStarted,
    StepFailed,
    StepFinished,
    StepStarted,
)
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
    plan: RunPlan, parts: RunParts, start: RunStart[ContextT]
) -> PipelineResult[ContextT]:
    """Run the steps of ``plan.pipeline`` from ``start`` and return the result."""
    run = RunState(plan, parts, start)
    span = (
        parts.telemetry.start_span(
            "flujo.run",
            {"flujo.run_id": start.run_id, "flujo.pipeline": plan.pipeline_name},
        )
        if parts.executor.enable_tracing
        else None
    )
    try:
        result = await _execute(run)
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


async def _execute(run: RunState[ContextT]) -> PipelineResult[ContextT]:
    plan, parts, start = run.plan, run.parts, run.start
    executor, state_backend = parts.executor, parts.state_backend
    executor.session.deferred = True  # this loop saves staged values with the checkpoints
    # Hydration failures raise before any step runs: no step ever sees unhydrated data.
    await executor.hydrate(start.context)
    if state_backend is not None:
        await state_backend.save_run(run.header("running", start.index))
    history = list(start.history)
    # One scope for the run's lean steps (see scope.LeanAccess), where references live.
    session = executor.session
    access = (
        ACCESS.set(LeanAccess(session, start.context)) if session.manages(start.context) else None
    )
    try:
        if plan.hooks:
            await run.emit(RunStarted(run_id=start.run_id, pipeline_name=plan.pipeline_name))
        outcome = await _step_loop(run, history)
    except PipelineAbortSignal as signal:
        outcome = _Outcome(status="failed", error=f"PipelineAbortSignal: {_text(signal)}")
        outcome.cost_usd = sum(r.cost_usd for r in history)
        outcome.tokens = sum(r.token_counts for r in history)
    finally:
        if access is not None:
            ACCESS.reset(access)
    try:
        await executor.finalize(start.context)
    except StateError as exc:
        outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
    result: PipelineResult[ContextT] = PipelineResult.trusted(
        run_id=start.run_id,
        status=outcome.status,
        success=outcome.status == "completed",
        output=None if outcome.status == "failed" else outcome.output,
        step_history=history,
        final_pipeline_context=start.context,
        total_cost_usd=outcome.cost_usd,
        total_tokens=outcome.tokens,
        error=outcome.error,
        pause_message=outcome.pause_message,
    )
    if state_backend is not None:
        if outcome.status == "completed" and plan.delete_on_completion:
            await state_backend.delete_run(start.run_id)
        else:
            completed = sum(1 for r in history if r.success)
            header = run.header(outcome.status, completed, outcome.error, outcome.pause_message)
            await state_backend.save_run(header)
    if plan.hooks:
        # The run has ended: an abort signal has nothing left to stop.
        with contextlib.suppress(PipelineAbortSignal):
            await run.emit(RunFinished(run_id=start.run_id, result=result))
    return result


def _text(exc: BaseException) -> str:
    try:
        return str(exc) or "a hook stopped the run"
    except Exception:
        return "a hook stopped the run"
