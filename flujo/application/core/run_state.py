"""One run's records and state: plan, parts, start point, and how its steps are checkpointed."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from flujo.application.core.commit import commit_step
from flujo.application.core.control_flow import Progress
from flujo.application.core.executor_core import ExecutorCore
from flujo.application.core.lease import Lease, LeaseTerms
from flujo.application.core.record_encoding import (
    UNSERIALIZABLE,
    description,
    storable_payload,
)
from flujo.application.core.scope import Scope
from flujo.application.core.session import StateSession
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import PipelineAbortSignal, StateError
from flujo.domain.events import (
    Hook,
    HookEvent,
)
from flujo.domain.interfaces import (
    SCHEMA_VERSION,
    ExecutionBackend,
    RunRecord,
    Serializer,
    StateBackend,
    StepRecord,
    Telemetry,
)
from flujo.domain.models import PipelineContext, RunStatus, StepResult
from flujo.domain.policies import UsageLimits
from flujo.domain.state_access import ACCESS

__all__ = [
    "SCHEMA_VERSION",
    "UNSERIALIZABLE",
    "RunParts",
    "RunPlan",
    "RunStart",
    "RunState",
    "result_payload",
]

ContextT = TypeVar("ContextT", bound=PipelineContext)

Unrecorded = tuple[StepResult, Callable[[dict[str, Any], bool], StepRecord], dict[str, Any]]
"""A step whose checkpoint has not landed: its result, its record maker, its payload."""


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
    """Everything one run needs, resolved from the container once when it starts.

    Nothing on the run's path touches the container after this: the executor
    carries the hasher, cache and usage meter, and its state session is the run's.
    """

    executor: ExecutorCore
    backend: ExecutionBackend
    state_backend: StateBackend | None
    serializer: Serializer
    telemetry: Telemetry
    clock: Callable[[], float]
    owner: str = ""
    """This run's lease owner id: unique to one run or resume call."""
    lease: LeaseTerms = field(default_factory=LeaseTerms)

    @property
    def session(self) -> StateSession:
        """The run's state session: its referenced values, loaded and saved once."""
        return self.executor.session


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
    owed: list[dict[str, Any]] = field(default_factory=list)
    """Saves the stored run still owed its providers, made before its next step."""
    owed_json: bytes | None = None
    """The same as stored, kept in the header until they are made."""


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


class RunState(Generic[ContextT]):
    """State of one run while it executes: its context, records and hooks."""

    def __init__(self, plan: RunPlan, parts: RunParts, start: RunStart[ContextT]) -> None:
        self.plan = plan
        self.parts = parts
        self.start = start
        self.context = start.context
        self.run_id = start.run_id
        self.created_at = parts.clock() if start.created_at is None else start.created_at
        self.warned: set[str] = set()
        self.lease: Lease | None = None
        """The run's lease while a durable run runs."""
        self.unrecorded: Unrecorded | None = None
        """A step whose checkpoint failed: its result, how to make its record, its payload.

        The end of the run writes the record again before it saves in-place changes;
        if that fails too, those changes are not saved (the step runs again on resume)."""
        self.last_context: bytes | None = None
        """The context as the running loop or map last committed it."""
        self.final: Unrecorded | None = None
        """The last step's record, held back to be written with the final header."""
        backend = parts.state_backend
        # FinalCheckpoint, by its method (no runtime-protocol isinstance per run). With
        # hooks, StepFinished may look at the stored run: the last record goes first.
        self.finishes = (
            backend is not None
            and not plan.hooks
            and callable(getattr(backend, "finish_run", None))
        )
        # Serialized only for a durable run: without a state backend nothing reads them.
        durable = parts.state_backend is not None
        self.input_json = start.input_json or b""
        self.context_json = start.context_json or b""
        if durable and start.input_json is None:
            self.input_json = self.json(start.data, "the run input")
        if durable and start.context_json is None:
            self.context_json = self.json(start.context, "the context")

    def json(self, value: Any, what: str) -> bytes:
        """Serialize ``value`` for a record; a placeholder (warned once) when JSON cannot."""
        try:
            return self.parts.serializer.dumps(value)
        except (TypeError, ValueError) as exc:
            if what not in self.warned:
                self.warned.add(what)
                self.parts.telemetry.warning(
                    f"run {self.run_id}: {what} is not JSON-serializable ({exc}); its "
                    "checkpoint stores a description, which a resumed run cannot use as the value"
                )
            return self.parts.serializer.dumps(description(value))

    def header(
        self,
        status: RunStatus,
        completed: int,
        error: str | None = None,
        pause_message: str | None = None,
        owed: bytes | None = None,
    ) -> RunRecord:
        """Return the run header in ``status`` after ``completed`` steps.

        A ``running`` header carries the run's lease; any other gives it back.
        """
        lease = self.lease if status == "running" else None
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
            owner=None if lease is None else lease.owner,
            lease_until=None if lease is None else lease.until,
            owed=owed,
        )

    def progress(self, index: int, step: Step[Any, Any]) -> Progress:
        """Return where the loop or map at ``index`` commits what it finished."""
        state_backend = self.parts.state_backend
        assert state_backend is not None
        executor = self.parts.executor
        session = executor.session
        resumed = self.start.partial if index == self.start.index else None
        flushes = 0
        # What a rerun of an interrupted commit restores: the context as this loop or map
        # last committed it (before its first commit of this process, as a resume found it;
        # with no partial state at all, a resume restarts from the step before instead).
        committed = None if resumed is None else self.json(self.context, "the context")

        async def record(partial: dict[str, Any], scope: Scope | None) -> None:
            nonlocal flushes, committed
            if self.lease is not None and not self.lease.fresh():
                await self.lease.confirm()  # never commit over a run another process took
            if scope is not None:
                scope.flush()
            staged = session.take_staged()
            context = self.json(self.context, "the context")
            payload: dict[str, Any] = {"name": step.name, "success": False, "partial": partial}
            if staged:
                # What a rerun of an interrupted commit goes back to.
                payload["before"] = {
                    "partial": progress.last if progress.last is not None else resumed,
                    "context": self.parts.serializer.loads(committed or self.context_json),
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

            try:
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
            except StateError:
                progress.pending = bool(staged)
                raise
            progress.last, progress.pending = partial, False
            self.last_context = committed = context

        progress = Progress(record=record, resumed=resumed)
        return progress

    def step_payload(
        self, result: StepResult, partial: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], bytes | None]:
        """Return the stored form of a top-level step's result, with its JSON if it has one.

        The JSON is kept for the record: dumping the payload once to check it and
        again to write it cost a few µs on every durable step.
        """
        payload = result_payload(result)
        if partial is not None:
            payload["partial"] = partial  # a failed loop or map resumes after what it finished
        try:
            return payload, self.parts.serializer.dumps(payload)
        except (TypeError, ValueError):
            # UnstorableOutputError when the output cannot even be described.
            payload = storable_payload(payload, self.parts.serializer, result.name)
            self.json(result.output, f"the output of step {result.name!r}")  # warns once
        return payload, None

    def recorder(
        self,
        index: int,
        result: StepResult,
        context: bytes,
        payload: dict[str, Any] | None = None,
        payload_json: bytes | None = None,
    ) -> Callable[[dict[str, Any], bool], StepRecord]:
        """Return how to make the record of the step at ``index`` from a payload.

        ``payload_json`` is ``payload`` as JSON already: a record of that very payload
        uses it instead of dumping it again.
        """

        def make(body: dict[str, Any], pending: bool) -> StepRecord:
            if body is payload and payload_json is not None:
                stored = payload_json
            else:
                stored = self.json(body, f"the output of step {result.name!r}")
            # Positional, in StepRecord's field order: keywords cost ~40% more, every step.
            return StepRecord(
                self.run_id,
                index,
                result.name,
                result.success,
                stored,
                context,
                self.parts.clock(),
                pending,
            )

        return make

    async def emit(self, event: HookEvent) -> None:
        """Give ``event`` to every hook; then raise the first abort signal, if any."""
        abort: PipelineAbortSignal | None = None
        outside = ACCESS.set(None)  # a hook is not a step attempt: references act on their own
        try:
            for hook in self.plan.hooks:
                try:
                    outcome = hook(event)
                    if inspect.isawaitable(outcome):
                        await outcome
                except PipelineAbortSignal as signal:
                    abort = abort or signal  # every hook still hears the event
                except Exception as exc:
                    self.parts.telemetry.warning(
                        f"run {self.run_id}: hook {getattr(hook, '__qualname__', hook)!r} failed "
                        f"on {type(event).__name__}: {type(exc).__name__}: {exc}"
                    )
        finally:
            ACCESS.reset(outside)
        if abort is not None:
            raise abort
