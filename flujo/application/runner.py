"""``Flujo``: the runner facade users construct and call."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from pydantic import ValidationError

from flujo.application.core.factories import (
    BackendFactory,
    ExecutorFactory,
    direct_clock,
    runner_container,
)
from flujo.application.core.lease import LeaseTerms
from flujo.application.core.pending import OnPending
from flujo.application.core.pipeline_run import RunParts, RunPlan, RunStart, execute_run
from flujo.application.core.resume import MISSING, claim_and_restore
from flujo.application.opened_parts import OpenedParts, in_flight
from flujo.application.run_management import PRUNED_BY_DEFAULT, get_run, list_runs, prune
from flujo.application.sync_door import run_sync
from flujo.application.travel import check_travels
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError
from flujo.domain.events import Hook
from flujo.domain.interfaces import ExecutionBackend, StateBackend, StateProvider
from flujo.domain.models import (
    DamagedRun,
    PipelineContext,
    PipelineResult,
    RunInfo,
    RunStatus,
)
from flujo.domain.policies import UsageLimits
from flujo.domain.validation import summarize

if TYPE_CHECKING:
    from dependency_injector.containers import Container

__all__ = ["Flujo"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")
ContextT = TypeVar("ContextT", bound=PipelineContext)


class Flujo(Generic[InT, OutT, ContextT]):
    """Runs a pipeline over a fresh context per run, with durable state and managed state.

    The runner owns one ``FlujoContainer`` (``runner.container``), built here,
    unless ``container=`` passes a host's. Parts are resolved from it per run,
    so an override made on it applies from the next run on. What the runner is
    given itself (``state_providers=``, ``state_backend=``, an ``executor_factory``'s
    parts) is layered on top for its own runs: a host's container is never changed,
    and two runners on one container each see only their own layer.
    """

    @overload
    def __init__(
        self: Flujo[InT, OutT, PipelineContext],
        pipeline: Pipeline[InT, OutT] | Step[InT, OutT],
        *,
        context_model: None = None,
        initial_context_data: Mapping[str, Any] | None = None,
        resources: Any = None,
        usage_limits: UsageLimits | None = None,
        hooks: Sequence[Hook] | None = None,
        backend: ExecutionBackend | None = None,
        state_backend: StateBackend | None = None,
        delete_on_completion: bool = False,
        persist_state: bool = True,
        executor_factory: ExecutorFactory | None = None,
        backend_factory: BackendFactory | None = None,
        pipeline_name: str | None = None,
        pipeline_version: str = "latest",
        enable_tracing: bool = True,
        state_providers: Mapping[str, StateProvider[Any]] | None = None,
        container: Container | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        pipeline: Pipeline[InT, OutT] | Step[InT, OutT],
        *,
        context_model: type[ContextT],
        initial_context_data: Mapping[str, Any] | None = None,
        resources: Any = None,
        usage_limits: UsageLimits | None = None,
        hooks: Sequence[Hook] | None = None,
        backend: ExecutionBackend | None = None,
        state_backend: StateBackend | None = None,
        delete_on_completion: bool = False,
        persist_state: bool = True,
        executor_factory: ExecutorFactory | None = None,
        backend_factory: BackendFactory | None = None,
        pipeline_name: str | None = None,
        pipeline_version: str = "latest",
        enable_tracing: bool = True,
        state_providers: Mapping[str, StateProvider[Any]] | None = None,
        container: Container | None = None,
    ) -> None: ...

    def __init__(
        self,
        pipeline: Pipeline[InT, OutT] | Step[InT, OutT],
        *,
        context_model: type[ContextT] | None = None,
        initial_context_data: Mapping[str, Any] | None = None,
        resources: Any = None,
        usage_limits: UsageLimits | None = None,
        hooks: Sequence[Hook] | None = None,
        backend: ExecutionBackend | None = None,
        state_backend: StateBackend | None = None,
        delete_on_completion: bool = False,
        persist_state: bool = True,
        executor_factory: ExecutorFactory | None = None,
        backend_factory: BackendFactory | None = None,
        pipeline_name: str | None = None,
        pipeline_version: str = "latest",
        enable_tracing: bool = True,
        state_providers: Mapping[str, StateProvider[Any]] | None = None,
        container: Container | None = None,
    ) -> None:
        if pipeline is None:
            raise ConfigurationError("Flujo needs a pipeline or a step to run")
        self.pipeline: Pipeline[InT, OutT] = Pipeline.of(pipeline)
        model = PipelineContext if context_model is None else context_model
        if not (isinstance(model, type) and issubclass(model, PipelineContext)):
            raise ConfigurationError(
                f"context_model must be a subclass of flujo.PipelineContext, got {model!r}"
            )
        self.context_model = cast("type[ContextT]", model)
        self._initial = dict(initial_context_data or {})
        self._validate_context(self._initial)  # a bad field fails here, not in the first run
        if usage_limits is not None and not isinstance(usage_limits, UsageLimits):
            raise ConfigurationError(f"usage_limits must be UsageLimits, got {usage_limits!r}")
        for hook in hooks or ():
            if not callable(hook):
                raise ConfigurationError(f"hooks must be callables, got {hook!r}")
        self._plan = RunPlan(
            pipeline=self.pipeline,
            pipeline_name=pipeline_name or "pipeline",
            pipeline_version=pipeline_version,
            resources=resources,
            usage_limits=usage_limits,
            hooks=tuple(hooks or ()),
            delete_on_completion=delete_on_completion,
        )
        self.container, self._layer, self._given_state_backend = runner_container(
            container, executor_factory, state_providers, state_backend
        )
        settings = self.container.settings()  # validated now: a typo fails construction
        ships = (
            getattr(backend, "ships_steps", False)
            if backend is not None
            else (backend_factory is None and settings.execution.backend == "ray")
        )
        if ships:  # what cannot travel to a worker fails here, naming the step and the object
            check_travels(self._plan.pipeline.steps)
        self._backend = backend
        self._backend_factory = backend_factory
        self._persist_state = persist_state
        self._enable_tracing = enable_tracing
        self._opened = OpenedParts()
        """Parts runs used that may hold connections, closed per event loop (``aclose``)."""

    def _validate_context(self, data: Mapping[str, Any]) -> ContextT:
        try:
            return self.context_model.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(
                f"initial_context_data does not fit {self.context_model.__name__}: {summarize(exc)}"
            ) from exc

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook`` with the events of every later run of this runner."""
        if not callable(hook):
            raise ConfigurationError(f"hooks must be callables, got {hook!r}")
        self._plan = dataclasses.replace(self._plan, hooks=(*self._plan.hooks, hook))

    def remove_hook(self, hook: Hook) -> None:
        """Stop calling ``hook`` (no error if it was not registered)."""
        # ==, not `is`: a bound method is a new object each time it is looked up.
        hooks = tuple(h for h in self._plan.hooks if h != hook)
        self._plan = dataclasses.replace(self._plan, hooks=hooks)

    @property
    def state_providers(self) -> Mapping[str, StateProvider[Any]]:
        """The provider registry this runner's runs use: the container's, then its own.

        ``runner.container.state_providers()`` is the container's registry alone: on a
        container the runner made, the runner's providers too; on a host's container,
        only the host's entries, whatever this runner or another on it was given.
        """
        return self._layer.registry(self.container)

    @property
    def resources(self) -> Any:
        """The ``resources=`` given to this runner, handed to steps that declare them."""
        return self._plan.resources

    def _parts(self) -> RunParts:
        """Resolve one run's parts from the container (overrides apply from here on)."""
        container = self.container
        executor = self._layer.executor(
            container, enable_tracing=self._enable_tracing, pipeline_name=self._plan.pipeline_name
        )
        if self._backend is not None:
            # A backend made once serves each run with that run's own executor.
            bind = getattr(self._backend, "for_run", None)
            backend = self._backend if bind is None else bind(executor)
        elif self._backend_factory is not None:
            backend = self._backend_factory.create_execution_backend(executor)
        else:
            backend = container.execution_backend(executor=executor)
        self._opened.add(executor.cache_backend)
        if not self._persist_state:  # only a stored run has an owner and a lease
            return RunParts(
                executor, backend, None, container.serializer(), executor.telemetry, container.clock
            )
        state = container.settings().state
        return RunParts(
            executor=executor,
            backend=backend,
            state_backend=self._state_backend(),
            serializer=container.serializer(),
            telemetry=executor.telemetry,
            clock=direct_clock(container.clock),
            owner=container.owner_id(),
            lease=LeaseTerms(lease_s=state.lease_s, heartbeat_s=state.heartbeat_s),
        )

    def _state_backend(self) -> StateBackend:
        backend: StateBackend = (
            self._given_state_backend
            if self._given_state_backend is not None
            else self.container.state_backend()
        )
        self._opened.add(backend)
        return backend

    def _durable_backend(self, what: str) -> StateBackend:
        if not self._persist_state:
            raise ConfigurationError(
                f"{what} needs durable run state; this runner has persist_state=False"
            )
        return self._state_backend()

    @in_flight
    async def run_async(
        self,
        data: InT,
        *,
        run_id: str | None = None,
        initial_context_data: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> PipelineResult[ContextT]:
        """Run the pipeline on ``data`` and return its result (failed steps do not raise).

        ``run_id`` of a stored run raises ``RunExistsError``, unless ``replace``: then
        the stored run's records are deleted as the new run's header is written.
        """
        run_id = run_id or self.container.run_id()
        context_data: dict[str, Any] = {"run_id": run_id}
        if self._initial or initial_context_data:
            # Deep-copied so no run mutates the caller's data or another run's context.
            context_data = copy.deepcopy(
                {**self._initial, **(initial_context_data or {}), "run_id": run_id}
            )
        start = RunStart(run_id=run_id, context=self._validate_context(context_data), data=data)
        return await execute_run(self._plan, self._parts(), start, replace=replace)

    @in_flight
    async def resume_async(
        self,
        run: str | PipelineResult[Any],
        *,
        human_input: Any = MISSING,
        on_pending: OnPending | None = None,
    ) -> PipelineResult[ContextT]:
        """Continue a stored run (crashed, failed, cancelled or paused) after its last step.

        It first takes the run's lease: ``RunLeasedError`` while another process
        drives it. A paused run needs ``human_input``, checked against its step's
        ``input_model`` (``HumanInputError`` leaves the run paused). References are
        hydrated again from their providers, and saves the run still owed are made
        before any step. A step stopped while saving its references is settled
        first; when flujo cannot tell whether its saves landed it raises
        ``StateConflictError`` unless ``on_pending`` says to ``"rerun"`` the step or
        ``"accept"`` it as recorded.
        """
        if on_pending not in (None, "rerun", "accept"):
            raise ConfigurationError(
                f"on_pending must be 'rerun', 'accept' or None, got {on_pending!r}"
            )
        run_id = run.run_id if isinstance(run, PipelineResult) else run
        state_backend = self._durable_backend("resume_async")
        parts = self._parts()
        lease, start = await claim_and_restore(
            run_id,
            backend=state_backend,
            parts=parts,
            providers=self.state_providers,
            pipeline=self.pipeline,
            pipeline_name=self._plan.pipeline_name,
            context_model=self.context_model,
            human_input=human_input,
            on_pending=on_pending,
        )
        return await execute_run(self._plan, parts, start, lease=lease)

    @in_flight
    async def list_runs(
        self, *, status: RunStatus | None = None, limit: int = 50
    ) -> list[RunInfo | DamagedRun]:
        """Return stored runs, most recently updated first; one that cannot be read as damaged."""
        backend = self._durable_backend("list_runs")
        return await list_runs(backend, self.container.serializer(), status=status, limit=limit)

    @in_flight
    async def get_run(self, run_id: str) -> RunInfo:
        """Return one stored run with its step results (``RunNotFoundError`` if unknown)."""
        backend = self._durable_backend("get_run")
        return await get_run(backend, self.container.serializer(), run_id)

    @in_flight
    async def prune(
        self,
        *,
        older_than: timedelta | float,
        statuses: Sequence[RunStatus] = PRUNED_BY_DEFAULT,
    ) -> int:
        """Delete runs in ``statuses`` not updated for ``older_than`` (seconds or timedelta)."""
        backend = self._durable_backend("prune")
        return await prune(backend, self.container.clock, older_than=older_than, statuses=statuses)

    def run(
        self,
        data: InT,
        *,
        run_id: str | None = None,
        initial_context_data: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> PipelineResult[ContextT]:
        """Run synchronously, on an event loop of its own (safe from many threads at once)."""
        return run_sync(
            self.run_async(
                data, run_id=run_id, initial_context_data=initial_context_data, replace=replace
            ),
            release=self.aclose,
        )

    def resume(
        self,
        run: str | PipelineResult[Any],
        *,
        human_input: Any = MISSING,
        on_pending: OnPending | None = None,
    ) -> PipelineResult[ContextT]:
        """Resume synchronously (see ``resume_async``)."""
        return run_sync(
            self.resume_async(run, human_input=human_input, on_pending=on_pending),
            release=self.aclose,
        )

    async def aclose(self) -> None:
        """Release what runs on this event loop opened (state backend, cache connections).

        A connection every loop shares (SQLite's) is closed once no run is in flight:
        runs on other threads go on, and the last of them to end closes it.
        """
        await self._opened.release()

    async def __aenter__(self) -> Flujo[InT, OutT, ContextT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
