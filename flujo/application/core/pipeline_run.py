"""One run of a pipeline: the step loop, checkpoints, hooks and the end of the run."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flujo.application.core.executor_core import ExecutorCore
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.errors import StateError
from flujo.domain.events import Hook, HookEvent, RunFinished, RunStarted, StepFinished, StepStarted
from flujo.domain.interfaces import (
    ExecutionBackend,
    RunRecord,
    Serializer,
    StateBackend,
    StepRecord,
    Telemetry,
)
from flujo.domain.models import PipelineContext, PipelineResult, RunStatus, StepResult, UsageLimits

__all__ = ["RunParts", "RunPlan", "execute_run"]

ContextT = TypeVar("ContextT", bound=PipelineContext)

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What stays the same for every run of one runner."""

    pipeline: Pipeline[Any, Any]
    pipeline_name: str
    pipeline_version: str
    resources: Any
    usage_limits: UsageLimits | None
    hooks: Sequence[Hook]
    delete_on_completion: bool


@dataclass(frozen=True, slots=True)
class RunParts:
    """The parts resolved from the container for one run."""

    executor: ExecutorCore
    backend: ExecutionBackend
    state_backend: StateBackend | None
    serializer: Serializer
    telemetry: Telemetry
    clock: Callable[[], float]


class _Run(Generic[ContextT]):
    """State of one run while it executes."""

    def __init__(self, plan: RunPlan, parts: RunParts, context: ContextT, run_id: str) -> None:
        self.plan = plan
        self.parts = parts
        self.context = context
        self.run_id = run_id
        self.created_at = parts.clock()
        self.warned: set[str] = set()

    def _json(self, value: Any, what: str) -> bytes:
        try:
            return self.parts.serializer.dumps(value)
        except (TypeError, ValueError) as exc:
            if what not in self.warned:
                self.warned.add(what)
                self.parts.telemetry.warning(
                    f"run {self.run_id}: {what} is not JSON-serializable ({exc}); "
                    "its checkpoint stores a description instead"
                )
            return self.parts.serializer.dumps({"__unserializable__": repr(value)})

    def record(self, status: RunStatus, completed: int, output: Any) -> RunRecord:
        return RunRecord(
            run_id=self.run_id,
            pipeline_name=self.plan.pipeline_name,
            pipeline_version=self.plan.pipeline_version,
            status=status,
            step_index=completed,
            context=self._json(self.context, "the context"),
            output=self._json(output, "the output"),
            created_at=self.created_at,
            updated_at=self.parts.clock(),
            schema_version=SCHEMA_VERSION,
        )

    def step_record(self, index: int, result: StepResult) -> StepRecord:
        payload = {
            "name": result.name,
            "output": result.output,
            "success": result.success,
            "attempts": result.attempts,
            "latency_s": result.latency_s,
            "feedback": result.feedback,
            "cost_usd": result.cost_usd,
            "token_counts": result.token_counts,
        }
        try:
            blob = self.parts.serializer.dumps(payload)
        except (TypeError, ValueError):
            payload["output"] = {"__unserializable__": repr(result.output)}
            blob = self._json(payload, f"the output of step {result.name!r}")
        return StepRecord(run_id=self.run_id, index=index, name=result.name, result=blob)

    async def emit(self, event: HookEvent) -> None:
        for hook in self.plan.hooks:
            try:
                outcome = hook(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                self.parts.telemetry.warning(
                    f"run {self.run_id}: hook {getattr(hook, '__qualname__', hook)!r} failed on "
                    f"{type(event).__name__}: {type(exc).__name__}: {exc}"
                )


async def execute_run(
    plan: RunPlan, parts: RunParts, context: ContextT, data: Any, run_id: str
) -> PipelineResult[ContextT]:
    """Run every step of ``plan.pipeline`` over ``context`` and return the result."""
    run = _Run(plan, parts, context, run_id)
    executor, backend, state_backend = parts.executor, parts.backend, parts.state_backend
    hooks = bool(plan.hooks)
    # Hydration failures raise before any step runs: no step ever sees unhydrated data.
    await executor.hydrate(context)
    if state_backend is not None:
        await state_backend.save_run(run.record("running", 0, None))
    if hooks:
        await run.emit(RunStarted(run_id=run_id, pipeline_name=plan.pipeline_name))
    history: list[StepResult] = []
    output: Any = data
    status: RunStatus = "completed"
    error: str | None = None
    limits, resources = plan.usage_limits, plan.resources
    for index, step in enumerate(plan.pipeline.steps):
        if hooks:
            await run.emit(StepStarted(run_id=run_id, step_name=step.name, index=index))
        result = await backend.execute_step(step, output, context=context, resources=resources)
        history.append(result)
        if result.success:
            output = result.output
        else:
            status = "failed"
        if state_backend is not None:
            completed = index + 1 if result.success else index
            await state_backend.checkpoint(
                run.record("running" if result.success else "failed", completed, output),
                run.step_record(index, result),
            )
        if hooks:
            await run.emit(
                StepFinished(run_id=run_id, step_name=step.name, index=index, result=result)
            )
        if not result.success:
            break
        if limits is not None:
            error = limits.exceeded_by(*executor.usage_meter.totals())
            if error is not None:
                status, error = "failed", f"UsageLimitExceededError: {error}"
                break
    try:
        await executor.finalize(context)
    except StateError as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    cost, tokens = executor.usage_meter.totals()
    result_model: PipelineResult[ContextT] = PipelineResult.model_construct(
        run_id=run_id,
        status=status,
        success=status == "completed",
        output=output if status == "completed" else None,
        step_history=history,
        final_pipeline_context=context,
        total_cost_usd=cost,
        total_tokens=tokens,
        error=error,
    )
    if state_backend is not None:
        if status == "completed" and plan.delete_on_completion:
            await state_backend.delete_run(run_id)
        else:
            await state_backend.save_run(run.record(status, len(history), output))
    if hooks:
        await run.emit(RunFinished(run_id=run_id, result=result_model))
    return result_model
