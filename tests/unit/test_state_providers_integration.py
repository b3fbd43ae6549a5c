# ruff: noqa: I001, W293 - the first block is the spec's section 7.1, copied verbatim
# fmt: off
import pytest
from flujo import Flujo, Step
from flujo.domain.models import PipelineContext, ContextReference
from flujo.domain.interfaces import StateProvider

class MockProvider(StateProvider):
    def __init__(self):
        self._data = {}
    
    async def load(self, key: str):
        return self._data.get(key, [])
    
    async def save(self, key: str, data):
        self._data[key] = data

class TestContext(PipelineContext):
    ref: ContextReference[list] = ContextReference(
        provider_id="test_provider",
        key="test_key"
    )

@pytest.mark.asyncio
async def test_state_providers_parameter_accepted():
    """Verify Flujo accepts state_providers parameter."""
    provider = MockProvider()
    step = Step.from_callable(lambda x: x, name="test")
    
    runner = Flujo(
        pipeline=step,
        context_model=TestContext,
        state_providers={"test_provider": provider}
    )
    
    assert runner is not None

@pytest.mark.asyncio
async def test_state_providers_hydration():
    """Verify ContextReference is hydrated from state_providers."""
    provider = MockProvider()
    provider._data["test_key"] = [1, 2, 3]
    
    async def check_context(data: str, *, context: TestContext) -> str:
        assert context.ref.get() == [1, 2, 3]
        return "ok"
    
    step = Step.from_callable(check_context, name="check")
    runner = Flujo(
        pipeline=step,
        context_model=TestContext,
        state_providers={"test_provider": provider}
    )
    
    result = await runner.run_async("test")
    assert result.success

@pytest.mark.asyncio
async def test_state_providers_persistence():
    """Verify ContextReference changes are persisted."""
    provider = MockProvider()
    
    async def modify_context(data: str, *, context: TestContext) -> str:
        current = context.ref.get()
        current.append(4)
        context.ref.set(current)
        return "modified"
    
    step = Step.from_callable(modify_context, name="modify")
    runner = Flujo(
        pipeline=step,
        context_model=TestContext,
        state_providers={"test_provider": provider}
    )
    
    # Initialize data
    provider._data["test_key"] = [1, 2, 3]
    
    await runner.run_async("test")
    
    # Verify persistence
    assert provider._data["test_key"] == [1, 2, 3, 4]

@pytest.mark.asyncio
async def test_state_providers_backward_compatibility():
    """Verify existing code without state_providers still works."""
    step = Step.from_callable(lambda x: x, name="test")
    
    # Should work without state_providers
    runner = Flujo(
        pipeline=step,
        context_model=PipelineContext
    )
    
    result = await runner.run_async("test")
    assert result.success
# fmt: on


# ---------------------------------------------------------------------------
# Beyond the spec: what DESIGN.md's "Managed state" section promises users.
# ---------------------------------------------------------------------------

import asyncio  # noqa: E402
import copy  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from typing import Any  # noqa: E402

from dependency_injector import containers, providers  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

from flujo import ConfigurationError, FlujoError, Pipeline  # noqa: E402
from flujo.application.core.factories import ExecutorFactory  # noqa: E402
from flujo.containers import FlujoContainer  # noqa: E402
from flujo.domain.errors import ReferenceNotHydratedError, StateLoadError  # noqa: E402
from flujo.domain.events import HookEvent, StepFinished  # noqa: E402
from flujo.providers import InMemoryStateProvider  # noqa: E402
from tests.doubles import (  # noqa: E402
    BarrierProvider,
    Event,
    FailingLoadProvider,
    FlakySaveProvider,
    RecordingProvider,
    RecordingStateBackend,
)

TESTING_PROFILE = "testing"


def memory_container() -> Any:
    """A fresh all-in-memory container, so runs write nothing to disk."""
    return FlujoContainer.from_profile(TESTING_PROFILE)


class GraphContext(PipelineContext):
    graph: ContextReference[list[str]] = ContextReference(provider_id="kg", key="graph")


def graph_runner(pipeline: Any, kg: Any) -> Flujo[Any, Any, GraphContext]:
    """A runner of ``pipeline`` over ``GraphContext`` with ``kg`` as the "kg" provider."""
    return Flujo(
        pipeline,
        context_model=GraphContext,
        state_providers={"kg": kg},
        container=memory_container(),
    )


def reader(name: str, events: list[Event] | None = None) -> Step[Any, Any]:
    """A step that reads the graph and changes nothing."""

    async def read(data: Any, *, context: GraphContext) -> Any:
        if events is not None:
            events.append(("step", name))
        context.graph.get()
        return data

    return Step.from_callable(read, name=name)


def appender(name: str, item: str, events: list[Event] | None = None, **kw: Any) -> Step[Any, Any]:
    """A step that appends ``item`` to the graph and calls ``set()``."""

    async def append(data: Any, *, context: GraphContext) -> Any:
        if events is not None:
            events.append(("step", name))
        context.graph.set([*(context.graph.get() or []), item])
        return data

    return Step.from_callable(append, name=name, **kw)


def in_place_mutator(name: str, item: str, events: list[Event] | None = None) -> Step[Any, Any]:
    """A step that appends ``item`` to the hydrated list without calling ``set()``."""

    async def mutate(data: Any, *, context: GraphContext) -> Any:
        if events is not None:
            events.append(("step", name))
        value = context.graph.get()
        assert value is not None
        value.append(item)
        return data

    return Step.from_callable(mutate, name=name)


def vars_of(record: Any) -> dict[str, Any]:
    """The fields of a (slotted) dataclass record."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def kinds(events: list[Event]) -> list[tuple[Any, ...]]:
    """Events without their data payloads, for order assertions."""
    return [e[:3] if e[0] in ("save", "load") else e for e in events]


# --- hydrate once, save on change -------------------------------------------


async def test_twenty_step_run_loads_each_reference_once() -> None:
    class TwoRefs(PipelineContext):
        graph: ContextReference[list[str]] = ContextReference(provider_id="kg", key="graph")
        notes: ContextReference[dict[str, int]] = ContextReference(provider_id="notes", key="n")

    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    notes = RecordingProvider({"n": {"x": 1}}, name="notes")
    seen: list[Any] = []

    def make(i: int) -> Step[Any, Any]:
        async def read(data: int, *, context: TwoRefs) -> int:
            seen.append((context.graph.get(), context.notes.get()))
            return data + 1

        return Step.from_callable(read, name=f"step-{i}")

    pipeline = Pipeline([make(i) for i in range(20)])
    runner = Flujo(
        pipeline,
        context_model=TwoRefs,
        state_providers={"kg": kg, "notes": notes},
        container=memory_container(),
    )

    result = await runner.run_async(0)

    assert result.success
    assert result.output == 20
    assert seen == [(["a"], {"x": 1})] * 20
    assert kg.load_calls == ["graph"]
    assert notes.load_calls == ["n"]


async def test_read_only_steps_never_save() -> None:
    kg = RecordingProvider({"graph": ["a", "b"]}, name="kg")
    pipeline = Pipeline([reader(f"read-{i}") for i in range(5)])
    runner = graph_runner(pipeline, kg)

    result = await runner.run_async(None)

    assert result.success
    assert kg.save_calls == []  # not after a step, not at the end of the run
    assert kg.data == {"graph": ["a", "b"]}


async def test_a_set_is_saved_once_right_after_its_step() -> None:
    events: list[Event] = []
    kg = RecordingProvider({"graph": ["a"]}, name="kg", events=events)
    pipeline = (
        reader("before", events)
        >> appender("write", "b", events)
        >> reader("after-1", events)
        >> reader("after-2", events)
    )
    runner = graph_runner(pipeline, kg)

    result = await runner.run_async(None)

    assert result.success
    assert kinds(events) == [
        ("load", "kg", "graph"),
        ("step", "before"),
        ("step", "write"),
        ("save", "kg", "graph"),
        ("step", "after-1"),
        ("step", "after-2"),
    ]
    assert kg.save_calls == [("graph", ["a", "b"])]


async def test_in_place_mutation_without_set_is_saved_once_at_run_end() -> None:
    events: list[Event] = []
    kg = RecordingProvider({"graph": ["a"]}, name="kg", events=events)
    pipeline = (
        in_place_mutator("mutate", "b", events) >> reader("after-1", events) >> reader("after-2")
    )
    runner = graph_runner(pipeline, kg)

    result = await runner.run_async(None)

    assert result.success
    assert kinds(events) == [
        ("load", "kg", "graph"),
        ("step", "mutate"),
        ("step", "after-1"),
        ("save", "kg", "graph"),
    ]
    assert kg.data["graph"] == ["a", "b"]


async def test_in_place_mutation_is_saved_even_when_the_run_fails() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")

    def boom(data: Any) -> Any:
        raise RuntimeError("step failed")

    pipeline = in_place_mutator("mutate", "b") >> Step.from_callable(boom, name="boom")
    runner = graph_runner(pipeline, kg)

    result = await runner.run_async(None)

    assert not result.success
    assert kg.save_calls == [("graph", ["a", "b"])]


async def test_pause_saves_changes_and_resume_hydrates_again() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    seen: list[Any] = []

    async def look(data: Any, *, context: GraphContext) -> Any:
        seen.append(context.graph.get())
        return data

    pipeline = (
        in_place_mutator("mutate", "before pause")
        >> Step.human_in_the_loop("approve?", name="approve")
        >> Step.from_callable(look, name="look")
    )
    runner = graph_runner(pipeline, kg)

    paused = await runner.run_async(None)

    assert paused.status == "paused"
    assert kg.data["graph"] == ["a", "before pause"]  # saved when the run paused

    kg.data["graph"] = ["changed while paused"]
    resumed = await runner.resume_async(paused, human_input="yes")

    assert resumed.success, resumed.feedback
    assert seen == [["changed while paused"]]  # loaded again, not taken from the checkpoint
    assert kg.load_calls == ["graph", "graph"]


async def test_load_returning_none_hydrates_to_none_and_a_later_set_is_saved() -> None:
    kg = RecordingProvider({}, name="kg")
    seen: list[Any] = []

    async def look(data: Any, *, context: GraphContext) -> Any:
        seen.append(context.graph.get())
        return data

    runner = Flujo(
        Step.from_callable(look, name="look"),
        context_model=GraphContext,
        state_providers={"kg": kg},
        container=memory_container(),
    )
    result = await runner.run_async(None)
    assert result.success
    assert seen == [None]
    assert kg.save_calls == []  # None stayed None: nothing to write

    writer = Flujo(
        appender("first-write", "a"),
        context_model=GraphContext,
        state_providers={"kg": kg},
        container=memory_container(),
    )
    assert (await writer.run_async(None)).success
    assert kg.data == {"graph": ["a"]}


# --- where references may live ------------------------------------------------


class Doc(BaseModel):
    title: str
    body: ContextReference[str]


class Section(BaseModel):
    doc: Doc


class NestedContext(PipelineContext):
    section: Section | None = None
    docs: list[Doc] = Field(default_factory=list)
    by_name: dict[str, Doc] = Field(default_factory=dict)


def pointer(key: str) -> dict[str, str]:
    return {"provider_id": "docs", "key": key}


NESTED_DATA = {
    "section": {"doc": {"title": "s", "body": pointer("sec")}},
    "docs": [{"title": "d0", "body": pointer("d0")}, {"title": "d1", "body": pointer("d1")}],
    "by_name": {"a": {"title": "a", "body": pointer("na")}},
}


async def test_references_in_nested_models_lists_and_dicts_are_all_hydrated() -> None:
    store = RecordingProvider(
        {"sec": "section body", "d0": "zero", "d1": "one", "na": "named"}, name="docs"
    )
    seen: dict[str, Any] = {}

    async def read_all(data: Any, *, context: NestedContext) -> Any:
        assert context.section is not None
        seen["section"] = context.section.doc.body.get()
        seen["docs"] = [d.body.get() for d in context.docs]
        seen["by_name"] = {k: d.body.get() for k, d in context.by_name.items()}
        context.docs[1].body.set("one, edited")
        return data

    runner = Flujo(
        Step.from_callable(read_all, name="read-all"),
        context_model=NestedContext,
        initial_context_data=NESTED_DATA,
        state_providers={"docs": store},
        container=memory_container(),
    )

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen == {
        "section": "section body",
        "docs": ["zero", "one"],
        "by_name": {"a": "named"},
    }
    assert sorted(store.load_calls) == ["d0", "d1", "na", "sec"]
    assert store.save_calls == [("d1", "one, edited")]


async def test_all_references_load_concurrently() -> None:
    # The barrier releases only once all four loads have started: loading one
    # reference after another would time out on the first load.
    barrier = BarrierProvider(
        {"sec": "s", "d0": "0", "d1": "1", "na": "a"}, parties=4, timeout_s=2.0
    )
    seen: list[Any] = []

    async def read(data: Any, *, context: NestedContext) -> Any:
        seen.extend(d.body.get() for d in context.docs)
        return data

    runner = Flujo(
        Step.from_callable(read, name="read"),
        context_model=NestedContext,
        initial_context_data=NESTED_DATA,
        state_providers={"docs": barrier},
        container=memory_container(),
    )

    result = await asyncio.wait_for(runner.run_async(None), 5.0)

    assert result.success, result.feedback
    assert barrier.max_in_flight == 4
    assert seen == ["0", "1"]


async def test_loads_of_different_providers_overlap_in_time() -> None:
    class ThreeRefs(PipelineContext):
        a: ContextReference[int] = ContextReference(provider_id="a", key="k")
        b: ContextReference[int] = ContextReference(provider_id="b", key="k")
        c: ContextReference[int] = ContextReference(provider_id="c", key="k")

    started: list[str] = []
    release = asyncio.Event()

    class Gate:
        def __init__(self, name: str, value: int) -> None:
            self.name, self.value = name, value

        async def load(self, key: str) -> int:
            started.append(self.name)
            if len(started) == 3:
                release.set()
            await asyncio.wait_for(release.wait(), 2.0)
            return self.value

        async def save(self, key: str, data: int) -> None:
            raise AssertionError("nothing changed, nothing to save")

    async def total(data: Any, *, context: ThreeRefs) -> int:
        return sum(r.get() or 0 for r in (context.a, context.b, context.c))

    runner = Flujo(
        Step.from_callable(total, name="total"),
        context_model=ThreeRefs,
        state_providers={"a": Gate("a", 1), "b": Gate("b", 10), "c": Gate("c", 100)},
        container=memory_container(),
    )

    result = await asyncio.wait_for(runner.run_async(None), 5.0)

    assert result.success, result.feedback
    assert result.output == 111
    assert sorted(started) == ["a", "b", "c"]


# --- isolation ----------------------------------------------------------------


class IsoContext(PipelineContext):
    log: ContextReference[list[str]] = ContextReference(provider_id="store", key="log")


def iso_pipeline() -> Pipeline[Any, Any]:
    def make(i: int) -> Step[Any, Any]:
        async def add(tag: str, *, context: IsoContext) -> str:
            await asyncio.sleep(0)  # let the other run interleave
            context.log.set([*(context.log.get() or []), f"{tag}-{i}"])
            await asyncio.sleep(0)
            return tag

        return Step.from_callable(add, name=f"add-{i}")

    return Pipeline([make(i) for i in range(3)])


async def test_two_runners_with_same_provider_id_never_cross() -> None:
    store_a = RecordingProvider({"log": ["A-start"]}, name="a")
    store_b = RecordingProvider({"log": ["B-start"]}, name="b")
    runner_a = Flujo(
        iso_pipeline(),
        context_model=IsoContext,
        state_providers={"store": store_a},
        container=memory_container(),
    )
    runner_b = Flujo(
        iso_pipeline(),
        context_model=IsoContext,
        state_providers={"store": store_b},
        container=memory_container(),
    )

    result_a, result_b = await asyncio.gather(runner_a.run_async("A"), runner_b.run_async("B"))

    assert result_a.success and result_b.success
    assert store_a.data["log"] == ["A-start", "A-0", "A-1", "A-2"]
    assert store_b.data["log"] == ["B-start", "B-0", "B-1", "B-2"]
    ctx_a, ctx_b = result_a.final_pipeline_context, result_b.final_pipeline_context
    assert ctx_a is not None and ctx_b is not None
    assert ctx_a is not ctx_b and ctx_a.log is not ctx_b.log
    assert ctx_a.log.get() == store_a.data["log"]
    assert ctx_b.log.get() == store_b.data["log"]
    assert runner_a.state_providers["store"] is store_a
    assert runner_b.state_providers["store"] is store_b


async def test_class_default_reference_never_carries_a_value_between_runs() -> None:
    store = RecordingProvider({"log": ["first"]}, name="store")
    seen: list[Any] = []

    async def look(data: Any, *, context: IsoContext) -> Any:
        seen.append(context.log.get())
        return data

    runner = Flujo(
        Step.from_callable(look, name="look"),
        context_model=IsoContext,
        state_providers={"store": store},
        container=memory_container(),
    )

    first, second = await asyncio.gather(runner.run_async(1), runner.run_async(2))
    store.data["log"] = ["changed between runs"]
    third = await runner.run_async(3)

    assert first.success and second.success and third.success
    contexts = [r.final_pipeline_context for r in (first, second, third)]
    assert len({id(c) for c in contexts}) == 3
    assert len({id(c.log) for c in contexts if c is not None}) == 3
    assert seen == [["first"], ["first"], ["changed between runs"]]
    assert store.load_calls == ["log", "log", "log"]  # every run hydrates afresh
    default = IsoContext.model_fields["log"].default
    assert isinstance(default, ContextReference)
    assert not default.is_hydrated
    assert not IsoContext().log.is_hydrated


async def test_reference_object_in_initial_context_data_is_not_shared_between_runs() -> None:
    passed_in = ContextReference[list[str]](provider_id="store", key="log")
    store = RecordingProvider({"log": ["first"]}, name="store")
    seen: list[Any] = []

    async def look(data: Any, *, context: IsoContext) -> Any:
        seen.append(context.log.get())
        return data

    runner = Flujo(
        Step.from_callable(look, name="look"),
        context_model=IsoContext,
        initial_context_data={"log": passed_in},
        state_providers={"store": store},
        container=memory_container(),
    )

    first = await runner.run_async(1)
    store.data["log"] = ["changed between runs"]
    second = await runner.run_async(2)

    assert first.success and second.success
    assert seen == [["first"], ["changed between runs"]]
    assert store.load_calls == ["log", "log"]
    assert first.final_pipeline_context is not None
    assert second.final_pipeline_context is not None
    assert first.final_pipeline_context.log is not second.final_pipeline_context.log
    assert not passed_in.is_hydrated  # the caller's object never holds a run's data


# --- failing loudly -----------------------------------------------------------


class KGContext(PipelineContext):
    docs: list[Doc] = Field(default_factory=list)
    graph: ContextReference[list[str]] = ContextReference(provider_id="kg", key="graph-1")


class KGContextGraph(PipelineContext):
    """GraphContext's shape with the key ``graph-1``, for the step helpers above."""

    graph: ContextReference[list[str]] = ContextReference(provider_id="kg", key="graph-1")


async def test_missing_provider_is_a_configuration_error_before_any_step() -> None:
    ran: list[str] = []

    def work(data: Any) -> Any:
        ran.append("work")
        return data

    runner = Flujo(
        Step.from_callable(work, name="work"),
        context_model=KGContext,
        state_providers={"cache": InMemoryStateProvider(), "vectors": InMemoryStateProvider()},
        container=memory_container(),
    )

    with pytest.raises(ConfigurationError) as info:
        await runner.run_async(None)

    message = str(info.value)
    assert "context.graph" in message
    assert "'kg'" in message
    assert "'cache'" in message and "'vectors'" in message
    assert ran == []


async def test_missing_provider_names_the_nested_field_path() -> None:
    runner = Flujo(
        reader("read"),
        context_model=KGContext,
        initial_context_data={"docs": [{"title": "t", "body": pointer("d0")}]},
        state_providers={"kg": InMemoryStateProvider({"graph-1": []})},
        container=memory_container(),
    )

    with pytest.raises(ConfigurationError) as info:
        await runner.run_async(None)

    assert "context.docs[0].body" in str(info.value)
    assert "'docs'" in str(info.value)
    assert "'kg'" in str(info.value)  # the registered ids


async def test_warn_mode_runs_on_logs_and_leaves_reference_unhydrated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    container = FlujoContainer()
    container.config.from_dict({"state": {"backend": "memory", "on_missing_provider": "warn"}})
    errors: list[Exception] = []

    async def look(data: Any, *, context: KGContext) -> Any:
        try:
            context.graph.get()
        except ReferenceNotHydratedError as exc:
            errors.append(exc)
        return "ran"

    runner = Flujo(
        Step.from_callable(look, name="look"),
        context_model=KGContext,
        state_providers={"other": InMemoryStateProvider()},
        container=container,
    )

    with caplog.at_level(logging.WARNING):
        result = await runner.run_async(None)

    assert result.success
    assert result.output == "ran"
    assert len(errors) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'kg'" in w and "context.graph" in w for w in warnings), warnings


async def test_load_failure_names_field_provider_key_and_chains_the_cause() -> None:
    cause = ConnectionError("graph database is down")
    ran: list[str] = []

    def work(data: Any) -> Any:
        ran.append("work")
        return data

    runner = Flujo(
        Step.from_callable(work, name="work"),
        context_model=KGContext,
        state_providers={"kg": FailingLoadProvider(cause)},
        container=memory_container(),
    )

    with pytest.raises(StateLoadError) as info:
        await runner.run_async(None)

    message = str(info.value)
    assert "context.graph" in message
    assert "'kg'" in message
    assert "'graph-1'" in message
    assert info.value.__cause__ is cause
    assert isinstance(info.value, FlujoError)
    assert ran == []


async def test_save_failure_fails_the_step_after_its_retries() -> None:
    events: list[Event] = []
    store = FlakySaveProvider({"graph-1": ["a"]}, failures=1_000, name="kg", events=events)

    def on_event(event: HookEvent) -> None:
        if isinstance(event, StepFinished):
            events.append(("finished", event.step_name, event.result.success))

    pipeline = appender("write", "b", max_retries=2) >> reader("never")
    runner = Flujo(
        pipeline,
        context_model=KGContextGraph,
        state_providers={"kg": store},
        hooks=[on_event],
        container=memory_container(),
    )

    result = await runner.run_async(None)

    assert not result.success
    assert result.status == "failed"
    assert [r.name for r in result.step_history] == ["write"]
    failed = result.step_history[0]
    assert not failed.success
    assert failed.feedback is not None
    assert "'kg'" in failed.feedback and "'graph-1'" in failed.feedback
    finished = events.index(("finished", "write", False))
    attempts_in_step = [e for e in events[:finished] if e[0] == "save-attempt"]
    assert len(attempts_in_step) == 3  # the first try and max_retries=2 more


async def test_save_that_fails_once_succeeds_on_retry() -> None:
    store = FlakySaveProvider({"graph-1": ["a"]}, failures=1, name="kg")
    runner = Flujo(
        appender("write", "b", max_retries=1) >> reader("after"),
        context_model=KGContextGraph,
        state_providers={"kg": store},
        container=memory_container(),
    )

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert store.attempts == 2
    assert store.data["graph-1"] == ["a", "b"]


async def test_save_failure_without_retries_is_not_silently_successful() -> None:
    store = FlakySaveProvider({"graph-1": ["a"]}, failures=1, name="kg")
    runner = Flujo(
        appender("write", "b") >> reader("after"),
        context_model=KGContextGraph,
        state_providers={"kg": store},
        container=memory_container(),
    )

    result = await runner.run_async(None)

    assert not result.success
    assert result.step_history[0].success is False
    assert "ConnectionError" in (result.step_history[0].feedback or "")


async def test_resuming_after_a_failed_save_applies_the_step_once() -> None:
    store = FlakySaveProvider({"graph-1": ["a"]}, failures=1, name="kg")
    runner = Flujo(
        appender("write", "b") >> reader("after"),
        context_model=KGContextGraph,
        state_providers={"kg": store},
        container=memory_container(),
    )

    failed = await runner.run_async(None)
    assert not failed.success
    assert failed.step_history[0].name == "write"

    resumed = await runner.resume_async(failed)

    assert resumed.success, resumed.feedback
    assert store.data["graph-1"] == ["a", "b"]  # the write happened exactly once


async def test_failed_save_at_run_end_fails_the_run() -> None:
    store = FlakySaveProvider({"graph-1": ["a"]}, failures=1_000, name="kg")

    def mutate(data: Any, *, context: KGContextGraph) -> Any:
        value = context.graph.get()
        assert value is not None
        value.append("changed in place")
        return data

    runner = Flujo(
        Step.from_callable(mutate, name="mutate"),
        context_model=KGContextGraph,
        state_providers={"kg": store},
        container=memory_container(),
    )

    result = await runner.run_async(None)

    assert store.attempts >= 1
    assert not result.success
    assert result.status == "failed"
    assert result.error is not None
    assert "'kg'" in result.error and "'graph-1'" in result.error


# --- what leaves the process --------------------------------------------------


async def test_serialized_context_holds_the_pointer_never_the_data() -> None:
    secret = ["TOP-SECRET-PAYLOAD"]
    backend = RecordingStateBackend()
    runner = Flujo(
        reader("read") >> appender("write", "MORE-SECRET"),
        context_model=GraphContext,
        state_providers={"kg": RecordingProvider({"graph": secret}, name="kg")},
        state_backend=backend,
        container=memory_container(),
    )

    result = await runner.run_async(None)

    assert result.success
    context = result.final_pipeline_context
    assert context is not None
    assert context.graph.get() == ["TOP-SECRET-PAYLOAD", "MORE-SECRET"]
    expected = {"provider_id": "kg", "key": "graph"}
    assert context.model_dump()["graph"] == expected
    assert context.model_dump(mode="json")["graph"] == expected
    dumped = context.model_dump_json()
    assert json.loads(dumped)["graph"] == expected
    assert "SECRET" not in dumped
    ref_schema = ContextReference[list[str]].model_json_schema()
    assert set(ref_schema["properties"]) == {"provider_id", "key"}
    assert "SECRET" not in json.dumps(GraphContext.model_json_schema())
    assert backend.records, "the run wrote no run state"
    for record in backend.records:
        for name, value in vars_of(record).items():
            if isinstance(value, bytes):
                assert b"SECRET" not in value, f"{type(record).__name__}.{name} holds the data"
        if isinstance(getattr(record, "context", None), bytes):
            assert json.loads(record.context)["graph"] == expected


async def test_saves_happen_before_the_checkpoint_that_follows_them() -> None:
    events: list[Event] = []
    kg = RecordingProvider({"graph": ["a"]}, name="kg", events=events)
    backend = RecordingStateBackend(events)
    pipeline = (
        appender("write", "b", events)
        >> in_place_mutator("mutate", "c", events)
        >> reader("last", events)
    )
    runner = Flujo(
        pipeline,
        context_model=GraphContext,
        state_providers={"kg": kg},
        state_backend=backend,
        container=memory_container(),
    )

    result = await runner.run_async(None)

    assert result.success
    order = kinds(events)
    saves = [i for i, e in enumerate(order) if e[0] == "save"]
    assert len(saves) == 2
    # The set() of "write": a pending checkpoint, the save, then the committed checkpoint.
    pending = order.index(("checkpoint", "pending", 1, "write"))
    write_checkpoint = order.index(("checkpoint", "running", 1, "write"))
    final_header = order.index(("save_run", "completed", 3))
    assert order.index(("step", "write")) < pending < saves[0] < write_checkpoint
    assert order.index(("checkpoint", "running", 3, "last")) < saves[1] < final_header
    assert kg.data["graph"] == ["a", "b", "c"]


# --- the registry lives in the container ---------------------------------------


async def test_embedding_in_a_host_container() -> None:
    class KGProvider(RecordingProvider):
        def __init__(self) -> None:
            super().__init__({"graph": ["from host"]}, name="kg")

    class Application(containers.DeclarativeContainer):
        config = providers.Configuration()
        flujo = providers.Container(
            FlujoContainer,
            config=config.flujo,
            state_providers=providers.Dict(kg=providers.Singleton(KGProvider)),
        )

    app = Application()
    app.config.from_dict({"flujo": {"state": {"backend": "memory"}}})
    seen: list[Any] = []

    async def look(data: Any, *, context: GraphContext) -> Any:
        seen.append(context.graph.get())
        return data

    runner = Flujo(
        Step.from_callable(look, name="look") >> appender("write", "from run"),
        context_model=GraphContext,
        container=app.flujo(),
    )

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen == [["from host"]]
    host_provider = app.flujo().state_providers()["kg"]
    assert isinstance(host_provider, KGProvider)
    assert host_provider.data["graph"] == ["from host", "from run"]
    assert runner.container.settings().state.backend == "memory"


def test_runner_state_providers_is_its_registry_and_a_given_container_keeps_its_own() -> None:
    first = InMemoryStateProvider()
    second = InMemoryStateProvider()
    given = memory_container()
    runner_one = Flujo(reader("r"), state_providers={"kg": first}, container=given)
    runner_two = Flujo(reader("r"), state_providers={"other": second})

    assert dict(runner_one.state_providers) == {"kg": first}
    assert dict(runner_one.container.state_providers()) == {}  # the given container is as it was
    assert runner_one.container is given
    # A container the runner made is its own: it holds the runner's providers.
    assert dict(runner_two.state_providers) == {"other": second}
    assert dict(runner_two.container.state_providers()) == {"other": second}
    assert runner_one.container is not runner_two.container


async def test_executor_factory_registry_reaches_the_run() -> None:
    kg = RecordingProvider({"graph": ["from factory"]}, name="kg")
    factory = ExecutorFactory(state_providers={"kg": kg})
    seen: list[Any] = []

    async def look(data: Any, *, context: GraphContext) -> Any:
        seen.append(context.graph.get())
        return data

    runner = Flujo(
        Step.from_callable(look, name="look"),
        context_model=GraphContext,
        executor_factory=factory,
        container=memory_container(),
    )

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen == [["from factory"]]
    assert runner.state_providers["kg"] is kg


async def test_factory_and_runner_providers_are_merged() -> None:
    class Both(PipelineContext):
        graph: ContextReference[list[str]] = ContextReference(provider_id="kg", key="graph")
        notes: ContextReference[str] = ContextReference(provider_id="notes", key="n")

    kg = RecordingProvider({"graph": ["g"]}, name="kg")
    notes = RecordingProvider({"n": "note"}, name="notes")
    seen: list[Any] = []

    async def look(data: Any, *, context: Both) -> Any:
        seen.append((context.graph.get(), context.notes.get()))
        return data

    runner = Flujo(
        Step.from_callable(look, name="look"),
        context_model=Both,
        executor_factory=ExecutorFactory(state_providers={"kg": kg}),
        state_providers={"notes": notes, "kg": kg},  # the same object twice is no conflict
        container=memory_container(),
    )

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen == [(["g"], "note")]
    assert dict(runner.state_providers) == {"kg": kg, "notes": notes}


def test_one_id_with_two_different_providers_is_a_configuration_error() -> None:
    factory = ExecutorFactory(state_providers={"kg": InMemoryStateProvider()})

    with pytest.raises(ConfigurationError, match="'kg'"):
        Flujo(
            reader("r"),
            context_model=GraphContext,
            executor_factory=factory,
            state_providers={"kg": InMemoryStateProvider()},
            container=memory_container(),
        )


# --- the ContextReference type itself -------------------------------------------


async def test_reference_as_class_default_and_with_default_factory() -> None:
    class Mixed(PipelineContext):
        by_default: ContextReference[int] = ContextReference(provider_id="p", key="a")
        by_factory: ContextReference[int] = Field(
            default_factory=lambda: ContextReference(provider_id="p", key="b")
        )

    store = RecordingProvider({"a": 1, "b": 2}, name="p")
    seen: list[Any] = []

    async def look(data: Any, *, context: Mixed) -> Any:
        seen.append((context.by_default.get(), context.by_factory.get()))
        context.by_factory.set(20)
        return data

    runner = Flujo(
        Step.from_callable(look, name="look"),
        context_model=Mixed,
        state_providers={"p": store},
        container=memory_container(),
    )

    first = await runner.run_async(None)
    second = await runner.run_async(None)

    assert first.success and second.success
    assert seen == [(1, 2), (1, 20)]
    assert store.data == {"a": 1, "b": 20}
    assert Mixed().by_factory is not Mixed().by_factory


def test_get_before_hydration_names_provider_and_key() -> None:
    ref: ContextReference[list[str]] = ContextReference(provider_id="kg", key="graph-7")

    assert not ref.is_hydrated
    with pytest.raises(ReferenceNotHydratedError) as info:
        ref.get()

    assert "'kg'" in str(info.value)
    assert "'graph-7'" in str(info.value)
    assert isinstance(info.value, FlujoError)


async def test_deepcopy_of_a_hydrated_reference_carries_no_value() -> None:
    runner = Flujo(
        reader("read"),
        context_model=GraphContext,
        state_providers={"kg": RecordingProvider({"graph": ["data"]}, name="kg")},
        container=memory_container(),
    )
    result = await runner.run_async(None)
    context = result.final_pipeline_context
    assert context is not None
    assert context.graph.get() == ["data"]

    ref_copy = copy.deepcopy(context.graph)
    context_copy = copy.deepcopy(context)

    for copied in (ref_copy, context_copy.graph):
        assert (copied.provider_id, copied.key) == ("kg", "graph")
        assert not copied.is_hydrated
        with pytest.raises(ReferenceNotHydratedError):
            copied.get()
    assert context.graph.get() == ["data"]  # the original keeps its value
