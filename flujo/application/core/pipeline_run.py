"""One run of a pipeline: the step loop, checkpoints, pauses, hooks and the end of the run."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from flujo.application.core.commit import commit_step, save_staged
from flujo.application.core.control_flow import PROGRESS, Progress
from flujo.application.core.executor_core import ExecutorCore
from flujo.application.core.scope import Scope
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import HumanStep, Step
from flujo.domain.errors import PipelineAbortSignal, StateError
from flujo.domain.events import (
    Hook,
    HookEvent,
    RunFinished,
    RunPaused,
    RunStarted,
    StepFailed,
    StepFinished,
    StepStarted,
)
from flujo.domain.interfaces import (
    ExecutionBackend,
    RunRecord,
    Serializer,
    StateBackend,
    StepRecord,
    Telemetry,
)
from flujo.domain.models import PipelineContext, PipelineResult, RunStatus, StepResult
from flujo.domain.policies import UsageLimits

__all__ = ["SCHEMA_VERSION", "RunParts", "RunPlan", "RunStart", "execute_run", "result_payload"]

ContextT = TypeVar("ContextT", bound=PipelineContext)

SCHEMA_VERSION = 1
"""Version of the stored run format; a resumed run written by a newer version is refused."""

UNSERIALIZABLE = "__unserializable__"
"""Key of the placeholder stored for a value JSON cannot hold."""


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


@dataclass(slots=True)
class RunStart(Generic[ContextT]):
    """Where a run begins: a fresh start, or the point a stored run stopped at."""

    run_id: str
    context: ContextT
    data: Any
    """The input of the step at ``index``."""
    index: int = 0
    history: list[StepResult] = field(default_factory=list)
    created_at: float | None = None
    input_json: bytes | None = None
    """The run's original input as stored (a fresh run stores ``data``)."""
    context_json: bytes | None = None
    """The context the run started with as stored (a fresh run stores ``context``)."""
    human_output: Any = None
    has_human_output: bool = False
    """Whether the paused human step at ``index`` is answered by ``human_output``."""
    partial: dict[str, Any] | None = None
    """Progress a loop or map at ``index`` had stored before the run stopped."""
    settled: str | None = None
    """How the caller resolved the interrupted commit of the step at ``index``, if any."""


def result_payload(result: StepResult) -> dict[str, Any]:
    """Return the stored form of a step result."""
    return {
        "name": result.name,
        "output": result.output,
        "success": result.success,
        "attempts": result.attempts,
        "latency_s": result.latency_s,
        "feedback": result.feedback,
        "cost_usd": result.cost_usd,
        "token_counts": result.token_counts,
        "cache_hit": result.cache_hit,
        "fallback": result.fallback,
        "step_history": [result_payload(nested) for nested in result.step_history],
    }


class _Run(Generic[ContextT]):
    """State of one run while it executes."""

    def __init__(self, plan: RunPlan, parts: RunParts, start: RunStart[ContextT]) -> None:
        self.plan = plan
        self.parts = parts
        self.start = start
        self.context = start.context
        self.run_id = start.run_id
        self.created_at = parts.clock() if start.created_at is None else start.created_at
        self.warned: set[str] = set()
        self.last_context: bytes | None = None
        """The context as the running loop or map last committed it."""
        # Serialized only for a durable run: without a state backend nothing reads them.
        durable = parts.state_backend is not None
        self.input_json = start.input_json or b""
        self.context_json = start.context_json or b""
        if durable and start.input_json is None:
            self.input_json = self.json(start.data, "the run input")
        if durable and start.context_json is None:
            self.context_json = self.json(start.context, "the context")

    def json(self, value: Any, what: str) -> bytes:
        try:
            return self.parts.serializer.dumps(value)
        except (TypeError, ValueError) as exc:
            if what not in self.warned:
                self.warned.add(what)
                self.parts.telemetry.warning(
                    f"run {self.run_id}: {what} is not JSON-serializable ({exc}); its "
                    "checkpoint stores a description, which a resumed run cannot use as the value"
                )
            return self.parts.serializer.dumps({UNSERIALIZABLE: repr(value)})

    def header(
        self,
        status: RunStatus,
        completed: int,
        error: str | None = None,
        pause_message: str | None = None,
    ) -> RunRecord:
        return RunRecord(
            run_id=self.run_id,
            pipeline_name=self.plan.pipeline_name,
            pipeline_version=self.plan.pipeline_version,
            status=status,
            step_index=completed,
            input=self.input_json,
            context=self.context_json,
            created_at=self.created_at,
            updated_at=self.parts.clock(),
            error=error,
            pause_message=pause_message,
            schema_version=SCHEMA_VERSION,
        )

    def progress(self, index: int, step: Step[Any, Any]) -> Progress:
        """Return where the loop or map at ``index`` commits what it finished."""
        state_backend = self.parts.state_backend
        assert state_backend is not None
        executor = self.parts.executor
        session = executor.session
        resumed = self.start.partial if index == self.start.index else None
        flushes = 0

        async def record(partial: dict[str, Any], scope: Scope | None) -> None:
            nonlocal flushes
            if scope is not None:
                scope.flush()
            staged = session.take_staged()
            context = self.json(self.context, "the context")
            payload: dict[str, Any] = {"name": step.name, "success": False, "partial": partial}
            if staged:
                # What a rerun of an interrupted commit goes back to.
                payload["before"] = {
                    "partial": progress.last if progress.last is not None else resumed,
                    "context": self.parts.serializer.loads(self.last_context or self.context_json),
                }
            flushes += 1

            def make(body: dict[str, Any], pending: bool) -> StepRecord:
                return StepRecord(
                    run_id=self.run_id,
                    index=index,
                    name=step.name,
                    success=False,
                    result=self.json(body, f"the progress of step {step.name!r}"),
                    context=context,
                    recorded_at=self.parts.clock(),
                    pending=pending,
                )

            await commit_step(
                state_backend,
                make,
                payload,
                staged,
                session,
                f"{self.run_id}/{index}/{flushes}",
                step.config,
                executor.backoff,
            )
            progress.last = partial
            self.last_context = context

        progress = Progress(record=record, resumed=resumed)
        return progress

    def step_payload(
        self, result: StepResult, partial: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Return the stored form of a top-level step's result."""
        payload = result_payload(result)
        if partial is not None:
            payload["partial"] = partial  # a failed loop or map resumes after what it finished
        try:
            self.parts.serializer.dumps(payload)
        except (TypeError, ValueError):
            payload["output"] = {UNSERIALIZABLE: repr(result.output)}
            self.json(result.output, f"the output of step {result.name!r}")  # warns once
        return payload

    def recorder(
        self, index: int, result: StepResult, context: bytes
    ) -> Callable[[dict[str, Any], bool], StepRecord]:
        """Return how to make the record of the step at ``index`` from a payload."""

        def make(payload: dict[str, Any], pending: bool) -> StepRecord:
            return StepRecord(
                run_id=self.run_id,
                index=index,
                name=result.name,
                success=result.success,
                result=self.json(payload, f"the output of step {result.name!r}"),
                context=context,
                recorded_at=self.parts.clock(),
                pending=pending,
            )

        return make

    async def emit(self, event: HookEvent) -> None:
        """Give ``event`` to every hook; then raise the first abort signal, if any."""
        abort: PipelineAbortSignal | None = None
        for hook in self.plan.hooks:
            try:
                outcome = hook(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except PipelineAbortSignal as signal:
                abort = abort or signal  # every hook still hears the event
            except Exception as exc:
                self.parts.telemetry.warning(
                    f"run {self.run_id}: hook {getattr(hook, '__qualname__', hook)!r} failed on "
                    f"{type(event).__name__}: {type(exc).__name__}: {exc}"
                )
        if abort is not None:
            raise abort


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


async def _step_loop(run: _Run[Any], history: list[StepResult]) -> _Outcome:
    """Run the steps from ``run.start.index`` on, appending to ``history``."""
    plan, parts, start = run.plan, run.parts, run.start
    backend, state_backend = parts.backend, parts.state_backend
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
        result = await _commit(run, index, step, result, progress)
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


async def _commit(
    run: _Run[Any],
    index: int,
    step: Step[Any, Any],
    result: StepResult,
    progress: Progress | None,
) -> StepResult:
    """Save what the step staged and write its checkpoint, as one unit (see ``commit``).

    A failed save fails the step: its result says why, and the record left says
    which saves landed.
    """
    parts = run.parts
    executor, state_backend = parts.executor, parts.state_backend
    session = executor.session
    staged = session.take_staged() if result.success else []
    writer = f"{run.run_id}/{index}"
    try:
        if state_backend is None:
            if staged:
                await save_staged(session, staged, writer, step.config, executor.backoff)
            return result
        partial = progress.last if progress is not None and not result.success else None
        payload = run.step_payload(result, partial)
        if index == run.start.index and run.start.settled is not None:
            payload["settled"] = run.start.settled  # how the caller resolved a pending step
        if partial is not None and run.last_context is not None:
            context = run.last_context  # the context as the loop or map last committed it
        else:
            context = run.json(run.context, "the context")
        make = run.recorder(index, result, context)
        await commit_step(
            state_backend, make, payload, staged, session, writer, step.config, executor.backoff
        )
    except StateError as exc:
        if not staged:
            raise  # the checkpoint itself failed: the run cannot go on
        return StepResult.trusted(
            result.name,
            None,
            False,
            result.attempts,
            result.latency_s,
            f"{type(exc).__name__}: {exc}",
            result.cost_usd,
            result.token_counts,
            step_history=result.step_history,
        )
    return result


async def execute_run(
    plan: RunPlan, parts: RunParts, start: RunStart[ContextT]
) -> PipelineResult[ContextT]:
    """Run the steps of ``plan.pipeline`` from ``start`` and return the result."""
    run = _Run(plan, parts, start)
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


async def _execute(run: _Run[ContextT]) -> PipelineResult[ContextT]:
    plan, parts, start = run.plan, run.parts, run.start
    executor, state_backend = parts.executor, parts.state_backend
    executor.session.deferred = True  # this loop saves staged values with the checkpoints
    # Hydration failures raise before any step runs: no step ever sees unhydrated data.
    await executor.hydrate(start.context)
    if state_backend is not None:
        await state_backend.save_run(run.header("running", start.index))
    history = list(start.history)
    try:
        if plan.hooks:
            await run.emit(RunStarted(run_id=start.run_id, pipeline_name=plan.pipeline_name))
        outcome = await _step_loop(run, history)
    except PipelineAbortSignal as signal:
        outcome = _Outcome(status="failed", error=f"PipelineAbortSignal: {_text(signal)}")
        outcome.cost_usd = sum(r.cost_usd for r in history)
        outcome.tokens = sum(r.token_counts for r in history)
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
