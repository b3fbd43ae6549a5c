"""Managed state driven through ``ExecutorCore`` directly, without a runner."""

from __future__ import annotations

import gc
import time
import warnings
from typing import Any

import pytest
from pydantic import BaseModel, Field

from flujo import ContextReference, PipelineContext, Step
from flujo.application.core.executor_core import ExecutorCore
from flujo.domain.errors import ConfigurationError, StateLoadError
from flujo.providers import InMemoryStateProvider
from tests.doubles import (
    Event,
    FailingLoadProvider,
    FlakySaveProvider,
    RecordingProvider,
    SlowProvider,
)


class Ctx(PipelineContext):
    graph: ContextReference[list[str]] = ContextReference(provider_id="kg", key="graph")


class Item(BaseModel):
    ref: ContextReference[int]


class NestedCtx(PipelineContext):
    items: list[Item] = Field(default_factory=list)


def read_step(name: str = "read") -> Step[Any, Any]:
    async def read(data: Any, *, context: Ctx) -> Any:
        return context.graph.get()

    return Step.from_callable(read, name=name)


def append_step(item: str, name: str = "append", **kw: Any) -> Step[Any, Any]:
    def append(data: Any, *, context: Ctx) -> Any:
        context.graph.set([*(context.graph.get() or []), item])
        return data

    return Step.from_callable(append, name=name, **kw)


async def test_execute_hydrates_before_the_step_runs() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    executor = ExecutorCore(state_providers={"kg": kg})
    context = Ctx()

    result = await executor.execute(read_step(), None, context=context)

    assert result.success, result.feedback
    assert result.output == ["a"]
    assert kg.load_calls == ["graph"]
    assert kg.save_calls == []


async def test_execute_saves_what_the_step_set_before_returning() -> None:
    events: list[Event] = []
    kg = RecordingProvider({"graph": ["a"]}, name="kg", events=events)
    executor = ExecutorCore(state_providers={"kg": kg})

    def append(data: Any, *, context: Ctx) -> Any:
        events.append(("step",))
        context.graph.set([*(context.graph.get() or []), "b"])
        return data

    result = await executor.execute(Step.from_callable(append, name="a"), 1, context=Ctx())

    assert result.success, result.feedback
    assert [e[0] for e in events] == ["load", "step", "save"]
    assert kg.data["graph"] == ["a", "b"]


async def test_a_second_execute_does_not_load_again() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    executor = ExecutorCore(state_providers={"kg": kg})
    context = Ctx()

    first = await executor.execute(append_step("b"), None, context=context)
    kg.data["graph"] = ["changed elsewhere"]
    second = await executor.execute(read_step(), None, context=context)

    assert first.success and second.success
    assert second.output == ["a", "b"]  # the context's value, not a fresh load
    assert kg.load_calls == ["graph"]
    assert [key for key, _ in kg.save_calls] == ["graph"]


async def test_execute_without_a_set_saves_nothing() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    executor = ExecutorCore(state_providers={"kg": kg})
    context = Ctx()

    for name in ("one", "two", "three"):
        assert (await executor.execute(read_step(name), None, context=context)).success

    assert kg.save_calls == []


async def test_hydrate_and_finalize_by_hand() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    executor = ExecutorCore(state_providers={"kg": kg})
    context = Ctx()

    await executor.hydrate(context)
    assert context.graph.get() == ["a"]
    await executor.hydrate(context)  # already hydrated: no second load
    assert kg.load_calls == ["graph"]

    await executor.finalize(context)  # nothing changed
    assert kg.save_calls == []

    value = context.graph.get()
    assert value is not None
    value.append("in place")
    await executor.finalize(context)
    assert kg.save_calls == [("graph", ["a", "in place"])]

    await executor.finalize(context)  # saved already: no second write
    assert len(kg.save_calls) == 1


async def test_finalize_saves_a_set_value_that_no_step_saved() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    executor = ExecutorCore(state_providers={"kg": kg})
    context = Ctx()
    await executor.hydrate(context)

    context.graph.set(["replaced"])
    await executor.finalize(context)

    assert kg.data["graph"] == ["replaced"]
    assert not context.graph.is_dirty


async def test_hydrate_reaches_references_in_lists() -> None:
    store = InMemoryStateProvider({"a": 1, "b": 2})
    executor = ExecutorCore(state_providers={"p": store})
    context = NestedCtx.model_validate(
        {"items": [{"ref": {"provider_id": "p", "key": k}} for k in ("a", "b")]}
    )

    await executor.hydrate(context)

    assert [item.ref.get() for item in context.items] == [1, 2]
    assert store.loads == 2


class Node(BaseModel):
    ref: ContextReference[int] | None = None
    children: list[Node] = Field(default_factory=list)


class TreeCtx(PipelineContext):
    root: Node = Field(default_factory=Node)


async def test_hydrate_reaches_references_deep_in_a_recursive_model() -> None:
    store = InMemoryStateProvider({"root": 0, "child": 1, "grandchild": 2})
    executor = ExecutorCore(state_providers={"p": store})
    grandchild = Node(ref=ContextReference(provider_id="p", key="grandchild"))
    child = Node(ref=ContextReference(provider_id="p", key="child"), children=[grandchild])
    context = TreeCtx(
        root=Node(ref=ContextReference(provider_id="p", key="root"), children=[child])
    )

    await executor.hydrate(context)

    assert context.root.ref is not None and context.root.ref.get() == 0
    assert context.root.children[0].ref is not None
    assert context.root.children[0].ref.get() == 1
    assert context.root.children[0].children[0].ref is not None
    assert context.root.children[0].children[0].ref.get() == 2


async def test_hydrate_takes_about_as_long_as_one_load() -> None:
    class FourRefs(PipelineContext):
        a: ContextReference[int] = ContextReference(provider_id="a", key="k")
        b: ContextReference[int] = ContextReference(provider_id="b", key="k")
        c: ContextReference[int] = ContextReference(provider_id="c", key="k")
        d: ContextReference[int] = ContextReference(provider_id="d", key="k")

    delay = 0.25
    slow = {name: SlowProvider({"k": i}, delay_s=delay, name=name) for i, name in enumerate("abcd")}
    executor = ExecutorCore(state_providers=slow)
    context = FourRefs()

    started = time.perf_counter()
    await executor.hydrate(context)
    elapsed = time.perf_counter() - started

    assert [context.a.get(), context.b.get(), context.c.get(), context.d.get()] == [0, 1, 2, 3]
    assert elapsed < 2 * delay, f"4 loads of {delay}s took {elapsed:.2f}s: not concurrent"


async def test_executor_exposes_its_registry() -> None:
    kg = InMemoryStateProvider()
    executor = ExecutorCore(state_providers={"kg": kg})

    assert dict(executor.state_providers) == {"kg": kg}
    assert dict(ExecutorCore().state_providers) == {}


async def test_hydrate_with_unknown_provider_is_a_configuration_error() -> None:
    executor = ExecutorCore(state_providers={"other": InMemoryStateProvider()})

    with pytest.raises(ConfigurationError, match=r"context\.graph.*'kg'.*'other'"):
        await executor.hydrate(Ctx())


async def test_unknown_provider_leaves_no_load_unawaited() -> None:
    class TwoRefs(PipelineContext):
        known: ContextReference[int] = ContextReference(provider_id="kg", key="a")
        unknown: ContextReference[int] = ContextReference(provider_id="missing", key="b")

    kg = RecordingProvider({"a": 1}, name="kg")
    executor = ExecutorCore(state_providers={"kg": kg})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigurationError, match="'missing'"):
            await executor.hydrate(TwoRefs())
        gc.collect()

    never_awaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert never_awaited == []
    assert kg.load_calls == []  # nothing loads when the configuration is wrong


async def test_warn_mode_leaves_unknown_references_unhydrated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    executor = ExecutorCore(state_providers={}, on_missing_provider="warn")
    context = Ctx()

    with caplog.at_level("WARNING"):
        await executor.hydrate(context)

    assert not context.graph.is_hydrated
    assert any("'kg'" in r.getMessage() for r in caplog.records)


async def test_hydrate_load_failure_raises_state_load_error() -> None:
    cause = TimeoutError("no answer")
    executor = ExecutorCore(state_providers={"kg": FailingLoadProvider(cause)})

    with pytest.raises(StateLoadError, match=r"context\.graph.*'kg'.*'graph'") as info:
        await executor.hydrate(Ctx())

    assert info.value.__cause__ is cause


async def test_execute_reports_a_load_failure_as_a_failed_step() -> None:
    ran: list[str] = []

    def work(data: Any, *, context: Ctx) -> Any:
        ran.append("work")
        return data

    executor = ExecutorCore(state_providers={"kg": FailingLoadProvider(OSError("disk"))})

    result = await executor.execute(Step.from_callable(work, name="work"), 1, context=Ctx())

    assert not result.success
    assert result.feedback is not None and "'kg'" in result.feedback
    assert ran == []


async def test_execute_reports_a_save_failure_after_retries() -> None:
    store = FlakySaveProvider({"graph": ["a"]}, failures=3, name="kg")
    executor = ExecutorCore(state_providers={"kg": store})

    result = await executor.execute(append_step("b", max_retries=1), None, context=Ctx())

    assert not result.success
    assert result.feedback is not None
    assert "'kg'" in result.feedback and "'graph'" in result.feedback
    assert store.attempts == 2
    assert store.data["graph"] == ["a"]


async def test_execute_retries_a_failed_save() -> None:
    store = FlakySaveProvider({"graph": ["a"]}, failures=1, name="kg")
    executor = ExecutorCore(state_providers={"kg": store})

    result = await executor.execute(append_step("b", max_retries=1), None, context=Ctx())

    assert result.success, result.feedback
    assert store.data["graph"] == ["a", "b"]


async def test_execute_without_context_or_references_needs_no_provider() -> None:
    executor = ExecutorCore()

    plain = await executor.execute(Step.from_callable(lambda x: x + 1, name="inc"), 1)

    assert plain.success and plain.output == 2
