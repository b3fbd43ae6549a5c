"""Names upstream users know: ``runner.resources`` and ``BackendFactory.create_state_backend()``."""

from __future__ import annotations

from typing import Any

import pytest
from dependency_injector import providers

from flujo import Flujo, Step
from flujo.application.core.factories import BackendFactory, ExecutorFactory
from flujo.containers import FlujoContainer
from flujo.state import InMemoryBackend


def _echo(x: Any) -> Any:
    return x


# --- runner.resources ------------------------------------------------------------------


def test_resources_is_the_object_given_to_the_runner() -> None:
    resources = {"db": object()}
    runner = Flujo(Step.from_callable(_echo, name="echo"), resources=resources)
    assert runner.resources is resources


def test_resources_is_none_when_none_was_given() -> None:
    assert Flujo(Step.from_callable(_echo, name="echo")).resources is None


def test_resources_is_read_only() -> None:
    runner = Flujo(Step.from_callable(_echo, name="echo"), resources="pool")
    with pytest.raises(AttributeError):
        runner.resources = "another"  # type: ignore[misc]
    assert runner.resources == "pool"


async def test_resources_is_what_the_steps_receive_and_survives_hooks() -> None:
    resources = object()
    seen: list[Any] = []

    def use(x: int, *, resources: Any) -> int:
        seen.append(resources)
        return x

    runner = Flujo(Step.from_callable(use, name="use"), resources=resources, persist_state=False)
    runner.add_hook(lambda event: None)  # rebuilds the runner's plan
    await runner.run_async(1)
    assert seen == [runner.resources] and seen[0] is resources


# --- BackendFactory.create_state_backend -------------------------------------------------


def test_create_state_backend_returns_the_containers_state_backend() -> None:
    factory = BackendFactory()
    backend = factory.create_state_backend()
    assert backend is factory.executor_factory.container.state_backend()
    assert factory.create_state_backend() is backend  # one per container


def test_create_state_backend_uses_the_given_container_and_its_profile() -> None:
    container = FlujoContainer.from_profile("testing")
    factory = BackendFactory(ExecutorFactory(container=container))
    backend = factory.create_state_backend()
    assert isinstance(backend, InMemoryBackend)
    assert backend is container.state_backend()


def test_create_state_backend_honours_an_override_on_the_container() -> None:
    container = FlujoContainer()
    fake = InMemoryBackend()
    factory = BackendFactory(ExecutorFactory(container=container))
    with container.state_backend.override(providers.Object(fake)):
        assert factory.create_state_backend() is fake
    assert factory.create_state_backend() is not fake


async def test_a_runner_on_the_same_container_stores_runs_where_the_factory_points() -> None:
    container = FlujoContainer.from_profile("testing")
    backend = BackendFactory(ExecutorFactory(container=container)).create_state_backend()
    result = await Flujo(Step.from_callable(_echo, name="echo"), container=container).run_async(3)
    stored = await backend.load_run(result.run_id)
    assert stored is not None and stored.status == "completed"
