"""``Flujo``: the runner facade users construct and call."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from pydantic import ValidationError

from flujo.application.core.factories import BackendFactory, ExecutorFactory, merge_registries
from flujo.application.core.pipeline_run import RunParts, RunPlan, execute_run
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError
from flujo.domain.events import Hook
from flujo.domain.interfaces import ExecutionBackend, StateBackend, StateProvider
from flujo.domain.models import PipelineContext, PipelineResult, UsageLimits

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
    so an override made on it applies from the next run on.
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
        self.container: Container = self._build_container(
            container, executor_factory, state_providers, state_backend
        )
        self.container.settings()  # validates the configuration now: a typo fails construction
        self._backend = backend
        self._backend_factory = backend_factory
        self._persist_state = persist_state
        self._enable_tracing = enable_tracing
        self._used_state_backend: StateBackend | None = None

    @staticmethod
    def _build_container(
        container: Container | None,
        executor_factory: ExecutorFactory | None,
        state_providers: Mapping[str, StateProvider[Any]] | None,
        state_backend: StateBackend | None,
    ) -> Container:
        from dependency_injector import providers

        if container is None:
            from flujo.containers import FlujoContainer

            container = FlujoContainer()
        if executor_factory is not None:
            executor_factory.configure(container)
        if state_providers:
            merged = merge_registries(container.state_providers(), state_providers)
            container.state_providers.override(providers.Object(merged))
        if state_backend is not None:
            container.state_backend.override(providers.Object(state_backend))
        return container

    def _validate_context(self, data: Mapping[str, Any]) -> ContextT:
        try:
            return self.context_model.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(
                f"initial_context_data does not fit {self.context_model.__name__}: {exc}"
            ) from exc

    @property
    def state_providers(self) -> Mapping[str, StateProvider[Any]]:
        """The provider registry runs of this runner use."""
        registry: Mapping[str, StateProvider[Any]] = self.container.state_providers()
        return registry

    async def run_async(
        self,
        data: InT,
        *,
        run_id: str | None = None,
        initial_context_data: Mapping[str, Any] | None = None,
    ) -> PipelineResult[ContextT]:
        """Run the pipeline on ``data`` and return its result (failed steps do not raise)."""
        container = self.container
        run_id = run_id or container.run_id()
        context_data = {**self._initial, **(initial_context_data or {}), "run_id": run_id}
        context = self._validate_context(context_data)
        executor = container.executor(enable_tracing=self._enable_tracing)
        if self._backend is not None:
            backend = self._backend
        elif self._backend_factory is not None:
            backend = self._backend_factory.create_execution_backend(executor)
        else:
            backend = container.execution_backend(executor=executor)
        state_backend: StateBackend | None = None
        if self._persist_state:
            state_backend = container.state_backend()
            self._used_state_backend = state_backend
        parts = RunParts(
            executor=executor,
            backend=backend,
            state_backend=state_backend,
            serializer=container.serializer(),
            telemetry=executor.telemetry,
            clock=container.clock,
        )
        return await execute_run(self._plan, parts, context, data, run_id)

    def run(
        self,
        data: InT,
        *,
        run_id: str | None = None,
        initial_context_data: Mapping[str, Any] | None = None,
    ) -> PipelineResult[ContextT]:
        """Run synchronously; inside a running event loop the run gets its own thread."""
        coroutine = self.run_async(data, run_id=run_id, initial_context_data=initial_context_data)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coroutine)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    async def aclose(self) -> None:
        """Release what runs opened (the state backend's connection)."""
        backend, self._used_state_backend = self._used_state_backend, None
        if backend is not None:
            await backend.close()

    async def __aenter__(self) -> Flujo[InT, OutT, ContextT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
