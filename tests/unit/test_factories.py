"""ExecutorFactory and BackendFactory: the spec's construction API over the container."""

from __future__ import annotations

from typing import Any

import pytest
from dependency_injector import providers

from flujo import ConfigurationError, Flujo, Step, StepResult
from flujo.application.core.executor_core import ExecutorCore
from flujo.application.core.factories import BackendFactory, ExecutorFactory, merge_registries
from flujo.containers import FlujoContainer
from tests.helpers import DictCache, DictStateProvider, RecordingTelemetry


def _step(name: str = "echo") -> Step[Any, Any]:
    def echo(x: Any) -> Any:
        return x

    return Step.from_callable(echo, name=name)


def test_executor_factory_builds_executors_with_the_given_parts() -> None:
    telemetry, cache, provider = RecordingTelemetry(), DictCache(), DictStateProvider()
    factory = ExecutorFactory(
        telemetry=telemetry, cache_backend=cache, state_providers={"p": provider}
    )
    executor = factory.create_executor()
    assert isinstance(executor, ExecutorCore)
    assert executor.telemetry is telemetry
    assert executor.cache_backend is cache
    assert executor.state_providers["p"] is provider
    assert factory.state_providers["p"] is provider


def test_executor_factory_without_arguments_uses_defaults() -> None:
    executor = ExecutorFactory().create_executor()
    assert isinstance(executor, ExecutorCore)
    assert dict(executor.state_providers) == {}
    assert executor.telemetry is not None and executor.cache_backend is not None


def test_each_created_executor_has_its_own_usage_meter() -> None:
    factory = ExecutorFactory()
    a, b = factory.create_executor(), factory.create_executor()
    assert a is not b
    a.usage_meter.add(1.0, 1)
    assert b.usage_meter.totals() == (0.0, 0)


async def test_executor_from_factory_runs_a_step() -> None:
    telemetry = RecordingTelemetry()
    executor = ExecutorFactory(telemetry=telemetry).create_executor()
    result = await executor.execute(_step("traced"), 3)
    assert result.success and result.output == 3
    assert telemetry.step_names == ["traced"]


async def test_backend_factory_creates_a_backend_that_runs_a_step() -> None:
    telemetry = RecordingTelemetry()
    backend = BackendFactory(ExecutorFactory(telemetry=telemetry)).create_execution_backend()
    result = await backend.execute_step(_step("via-backend"), "x", context=None, resources=None)
    assert isinstance(result, StepResult)
    assert result.success and result.output == "x"
    assert telemetry.step_names == ["via-backend"]


async def test_backend_factory_uses_a_given_executor() -> None:
    telemetry = RecordingTelemetry()
    executor = ExecutorCore(telemetry=telemetry)
    backend = BackendFactory().create_execution_backend(executor)
    result = await backend.execute_step(_step("given"), 1, context=None, resources=None)
    assert result.success
    assert telemetry.step_names == ["given"]


async def test_backend_factory_failure_is_a_result_not_an_exception() -> None:
    def bad(x: Any) -> Any:
        raise ValueError("bad input")

    backend = BackendFactory().create_execution_backend()
    result = await backend.execute_step(Step.from_callable(bad), 1, context=None, resources=None)
    assert result.success is False
    assert result.feedback is not None and "ValueError: bad input" in result.feedback


async def test_flujo_uses_the_executor_factory_parts() -> None:
    telemetry, cache, provider = RecordingTelemetry(), DictCache(), DictStateProvider()
    factory = ExecutorFactory(
        telemetry=telemetry, cache_backend=cache, state_providers={"p": provider}
    )
    runner = Flujo(_step("a") >> _step("b"), executor_factory=factory, persist_state=False)
    executor = runner.container.executor()
    assert executor.telemetry is telemetry
    assert executor.cache_backend is cache
    assert runner.state_providers["p"] is provider
    result = await runner.run_async(1)
    assert result.success
    assert telemetry.step_names == ["a", "b"]


async def test_flujo_uses_the_backend_factory() -> None:
    class CountingBackendFactory(BackendFactory):
        def __init__(self) -> None:
            super().__init__()
            self.created = 0

        def create_execution_backend(self, executor: ExecutorCore | None = None) -> Any:
            self.created += 1
            return super().create_execution_backend(executor)

    factory = CountingBackendFactory()
    runner = Flujo(_step(), backend_factory=factory, persist_state=False)
    assert (await runner.run_async(1)).output == 1
    assert (await runner.run_async(2)).output == 2
    assert factory.created == 2


async def test_flujo_state_providers_merge_with_the_factory_registry() -> None:
    a, b = DictStateProvider(), DictStateProvider()
    runner = Flujo(
        _step(),
        executor_factory=ExecutorFactory(state_providers={"a": a}),
        state_providers={"b": b},
        persist_state=False,
    )
    assert runner.state_providers["a"] is a
    assert runner.state_providers["b"] is b


def test_merge_registries_merges_disjoint_ids() -> None:
    a, b = DictStateProvider(), DictStateProvider()
    assert merge_registries({"a": a}, None, {"b": b}) == {"a": a, "b": b}


def test_merge_registries_accepts_the_same_provider_twice() -> None:
    a = DictStateProvider()
    assert merge_registries({"a": a}, {"a": a}) == {"a": a}


def test_merge_registries_conflict_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="'kg'"):
        merge_registries({"kg": DictStateProvider()}, {"kg": DictStateProvider()})


def test_conflicting_providers_fail_flujo_construction() -> None:
    with pytest.raises(ConfigurationError, match="'kg'"):
        Flujo(
            _step(),
            executor_factory=ExecutorFactory(state_providers={"kg": DictStateProvider()}),
            state_providers={"kg": DictStateProvider()},
        )


# --- with a container: exactly the given parts, the container untouched ------------------


def _overrides(container: Any) -> dict[str, tuple[Any, ...]]:
    names = ("telemetry", "cache_backend", "state_providers", "executor")
    return {name: getattr(container, name).overridden for name in names}


def test_executor_factory_with_a_container_uses_exactly_the_given_parts() -> None:
    container = FlujoContainer()
    telemetry, cache, provider = RecordingTelemetry(), DictCache(), DictStateProvider()
    factory = ExecutorFactory(
        telemetry=telemetry,
        cache_backend=cache,
        state_providers={"p": provider},
        container=container,
    )
    executor = factory.create_executor()
    assert executor.telemetry is telemetry
    assert executor.cache_backend is cache
    assert dict(executor.state_providers) == {"p": provider}
    assert factory.container is container
    assert _overrides(container) == dict.fromkeys(_overrides(container), ())
    plain = container.executor()
    assert plain.telemetry is not telemetry and plain.cache_backend is not cache
    assert dict(plain.state_providers) == {}


def test_executor_factory_with_a_container_keeps_its_parts_not_given() -> None:
    container = FlujoContainer()
    telemetry = RecordingTelemetry()
    executor = ExecutorFactory(telemetry=telemetry, container=container).create_executor()
    assert executor.telemetry is telemetry
    assert executor.cache_backend is container.cache_backend()  # not given: the container's


def test_executor_factory_providers_go_over_the_container_registry() -> None:
    host, mine = DictStateProvider(), DictStateProvider()
    container = FlujoContainer()
    container.state_providers.override(providers.Object({"host": host}))
    factory = ExecutorFactory(state_providers={"mine": mine}, container=container)
    assert dict(factory.create_executor().state_providers) == {"host": host, "mine": mine}
    assert dict(container.state_providers()) == {"host": host}
    container.state_providers.override(providers.Object({"mine": DictStateProvider()}))
    with pytest.raises(ConfigurationError, match="'mine'"):
        factory.create_executor()


def test_configure_still_overrides_a_container_on_request() -> None:
    container = FlujoContainer()
    telemetry = RecordingTelemetry()
    ExecutorFactory(telemetry=telemetry).configure(container)
    assert container.executor().telemetry is telemetry


def test_direct_clock_sees_through_a_plain_callable_and_keeps_any_other_provider() -> None:
    from dependency_injector import providers

    from flujo.application.core.factories import direct_clock

    def tick() -> float:
        return 7.0

    plain = providers.Callable(tick)
    assert direct_clock(plain) is tick
    plain.override(providers.Callable(lambda: 8.0))
    assert direct_clock(plain)() == 8.0  # the override, as it stands now
    fixed = providers.Callable(tick)
    fixed.override(providers.Object(9.0))
    assert direct_clock(fixed) is fixed  # an Object: called through the provider
    with_args = providers.Callable(max, 1.0, 2.0)
    assert direct_clock(with_args) is with_args
