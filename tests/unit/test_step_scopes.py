"""Every step attempt is a scope: committed when it succeeds, dropped when it fails.

Each test here pins one promise of the scoped engine: a failed attempt's changes
(plain context fields, references changed in place or ``set()``) never reach a
retry, a fallback, a resume, a sibling or a provider; concurrent children merge in
a fixed order; referenced values are loaded, hashed and saved as little as possible.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from typing import Annotated, Any

import pytest
from dependency_injector import providers
from pydantic import BaseModel, Field

from flujo import Flujo, Pipeline, Step
from flujo.application.core.executor_core import ExecutorCore
from flujo.containers import FlujoContainer
from flujo.domain.errors import StateLoadError
from flujo.domain.models import ContextReference, PipelineContext, StepResult
from flujo.domain.reducers import append
from flujo.infra.hashing import Blake3Hasher
from flujo.testing import Faults, FaultyProvider
from tests.doubles import RecordingProvider
from tests.helpers import DictStateProvider

TESTING_PROFILE = "testing"


def memory_container() -> Any:
    """A fresh all-in-memory container (run state included), so runs write nothing to disk."""
    return FlujoContainer.from_profile(TESTING_PROFILE)


class GraphContext(PipelineContext):
    graph: ContextReference[list[str]] = ContextReference(provider_id="kg", key="graph")


class PlainContext(PipelineContext):
    counter: int = 0
    items: list[str] = Field(default_factory=list)
    notes: dict[str, int] = Field(default_factory=dict)
    label: str = ""
    log: Annotated[list[str], append] = Field(default_factory=list)


class MixedContext(PipelineContext):
    graph: ContextReference[list[str]] = ContextReference(provider_id="kg", key="graph")
    notes: dict[str, int] = Field(default_factory=dict)
    log: Annotated[list[str], append] = Field(default_factory=list)


def runner_of(
    pipeline: Any, context_model: type[PipelineContext], **kw: Any
) -> Flujo[Any, Any, Any]:
    kw.setdefault("container", memory_container())
    return Flujo(pipeline, context_model=context_model, **kw)


def all_feedback(results: list[StepResult]) -> list[str]:
    """Every feedback of ``results`` and of the results nested in them."""
    out: list[str] = []
    for result in results:
        if result.feedback:
            out.append(result.feedback)
        out.extend(all_feedback(result.step_history))
    return out


class CopyingProvider:
    """A provider that, like a remote store, deep-copies on load and on save."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = copy.deepcopy(data)
        self.loads = 0
        self.saves: list[tuple[str, Any]] = []

    async def load(self, key: str) -> Any:
        self.loads += 1
        return copy.deepcopy(self.data.get(key))

    async def save(self, key: str, data: Any) -> None:
        stored = copy.deepcopy(data)
        self.saves.append((key, stored))
        self.data[key] = stored


class CountingHasher:
    """A ``Hasher`` that counts its digests."""

    def __init__(self) -> None:
        self.calls = 0
        self._inner = Blake3Hasher()

    def digest(self, data: bytes) -> str:
        self.calls += 1
        return self._inner.digest(data)


def hanging_provider() -> FaultyProvider[Any]:
    """A provider whose loads never answer (until a deadline cancels them)."""
    return FaultyProvider(DictStateProvider(), load=Faults(hang={1}), save=Faults.always())


# --- 1. plain context changes of a failed attempt -------------------------------------------


async def test_failed_attempts_plain_changes_do_not_reach_the_retry() -> None:
    attempts = 0

    def bump(data: Any, *, context: PlainContext) -> Any:
        nonlocal attempts
        attempts += 1
        context.counter += 1
        if attempts <= 2:
            raise RuntimeError(f"attempt {attempts} fails")
        return context.counter

    runner = runner_of(Step.from_callable(bump, name="bump", max_retries=2), PlainContext)

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert attempts == 3
    assert result.output == 1
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.counter == 1


async def test_failed_attempts_plain_changes_do_not_reach_the_fallback() -> None:
    seen: list[list[str]] = []

    def primary(data: Any, *, context: PlainContext) -> Any:
        context.items.append("primary")
        context.label = "primary"
        raise RuntimeError("primary fails")

    def backup(data: Any, *, context: PlainContext) -> Any:
        seen.append(list(context.items))
        context.items.append("fallback")
        return "backup"

    step = Step.from_callable(primary, name="primary").fallback(
        Step.from_callable(backup, name="backup")
    )
    runner = runner_of(step, PlainContext, initial_context_data={"items": ["start"]})

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen == [["start"]]
    context = result.final_pipeline_context
    assert context is not None
    assert context.items == ["start", "fallback"]
    assert context.label == ""


# --- 2. referenced data changed by a failed attempt -----------------------------------------


async def test_in_place_change_of_failed_attempts_reaches_neither_retry_nor_provider() -> None:
    kg = RecordingProvider({"graph": []}, name="kg")
    attempts = 0
    seen: list[list[str]] = []

    def grow(data: Any, *, context: GraphContext) -> Any:
        nonlocal attempts
        attempts += 1
        value = context.graph.get()
        assert value is not None
        seen.append(list(value))
        value.append(f"attempt{attempts}")
        if attempts <= 2:
            raise RuntimeError(f"attempt {attempts} fails")
        return data

    runner = runner_of(
        Step.from_callable(grow, name="grow", max_retries=2),
        GraphContext,
        state_providers={"kg": kg},
    )

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen == [[], [], []]
    assert kg.data["graph"] == ["attempt3"]
    assert kg.save_calls == [("graph", ["attempt3"])]


async def test_set_of_failed_attempts_reaches_neither_retry_nor_provider() -> None:
    kg = RecordingProvider({"graph": []}, name="kg")
    attempts = 0
    seen: list[list[str]] = []

    def grow(data: Any, *, context: GraphContext) -> Any:
        nonlocal attempts
        attempts += 1
        value = context.graph.get() or []
        seen.append(list(value))
        context.graph.set([*value, f"attempt{attempts}"])
        if attempts <= 2:
            raise RuntimeError(f"attempt {attempts} fails")
        return data

    runner = runner_of(
        Step.from_callable(grow, name="grow", max_retries=2),
        GraphContext,
        state_providers={"kg": kg},
    )

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen == [[], [], []]
    assert kg.data["graph"] == ["attempt3"]
    assert kg.save_calls == [("graph", ["attempt3"])]
    assert kg.load_calls == ["graph"]  # a rollback drops the attempt's value, never reloads


# --- 3. a failing map item next to a sibling that set() a reference ---------------------------


# (failing item: set() at, fails at; sibling: set() at, returns at), in seconds
MAP_TIMINGS = {
    "failure-before-sibling-reads": ((0.0, 0.0), (0.02, 0.02)),
    "failure-while-sibling-runs": ((0.0, 0.01), (0.005, 0.025)),
    "sibling-done-before-failure": ((0.0, 0.02), (0.0, 0.0)),
}


@pytest.mark.parametrize("timing", sorted(MAP_TIMINGS))
async def test_map_item_failure_keeps_siblings_set_and_never_saves_a_marker(timing: str) -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    (fail_set, fail_at), (sib_set, sib_done) = MAP_TIMINGS[timing]

    async def item(index: int, *, context: GraphContext) -> int:
        if index == 0:
            await asyncio.sleep(fail_set)
            context.graph.set([*(context.graph.get() or []), "item-0"])
            await asyncio.sleep(fail_at - fail_set)
            raise RuntimeError("item 0 fails")
        await asyncio.sleep(sib_set)
        context.graph.set([*(context.graph.get() or []), f"item-{index}"])
        await asyncio.sleep(sib_done - sib_set)
        return index

    mapped = Step.map_over(Step.from_callable(item, name="item"), concurrency=2, name="map")
    runner = runner_of(mapped, GraphContext, state_providers={"kg": kg})

    result = await runner.run_async([0, 1])

    assert not result.success
    assert result.status == "failed"
    feedback = all_feedback(result.step_history)
    assert any("item 0 fails" in f for f in feedback), feedback
    assert not any("ReferenceNotHydratedError" in f for f in feedback), feedback
    for _, saved in kg.save_calls:
        assert isinstance(saved, list), saved
    # The sibling finished and was committed with the map's progress: what it set is saved,
    # and nothing of the failed item.
    assert kg.data["graph"] == ["a", "item-1"]


# --- 4. a rollback never reloads ---------------------------------------------------------------


async def test_rollback_does_not_reload_or_drop_an_earlier_in_place_change() -> None:
    provider = CopyingProvider({"graph": ["a"]})
    seen: list[list[str]] = []

    def change_in_place(data: Any, *, context: GraphContext) -> Any:
        value = context.graph.get()
        assert value is not None
        value.append("in place")
        return data

    def set_then_fail(data: Any, *, context: GraphContext) -> Any:
        value = context.graph.get() or []
        seen.append(list(value))
        context.graph.set([*value, "set"])
        raise RuntimeError("fails after set()")

    pipeline = Step.from_callable(change_in_place, name="in-place") >> Step.from_callable(
        set_then_fail, name="set-then-fail"
    )
    runner = runner_of(pipeline, GraphContext, state_providers={"kg": provider})

    result = await runner.run_async(None)

    assert not result.success
    assert seen == [["a", "in place"]]
    assert provider.loads == 1
    context = result.final_pipeline_context
    assert context is not None
    assert context.graph.get() == ["a", "in place"]
    assert all(value != ["a", "in place", "set"] for _, value in provider.saves)


# --- 5. resuming a failed loop ------------------------------------------------------------------


async def test_resuming_a_failed_loop_does_not_reapply_the_failed_iteration() -> None:
    failed_once = False

    def body(n: int, *, context: PlainContext) -> int:
        nonlocal failed_once
        n += 1
        context.items.append(str(n))
        if n == 3 and not failed_once:
            failed_once = True
            raise RuntimeError("iteration 3 fails once")
        return n

    loop = Step.loop_until(
        Step.from_callable(body, name="body"), lambda out, ctx: out >= 3, max_loops=5, name="loop"
    )
    runner = runner_of(loop, PlainContext)

    failed = await runner.run_async(0)
    assert not failed.success

    resumed = await runner.resume_async(failed)

    assert resumed.success, resumed.feedback
    assert resumed.output == 3
    context = resumed.final_pipeline_context
    assert context is not None
    assert context.items == ["1", "2", "3"]


# --- 6. parallel branches and map items merge in a fixed order -------------------------------


async def test_parallel_branches_adding_different_keys_merge() -> None:
    def add(key: str, value: int) -> Step[Any, Any]:
        def run(data: Any, *, context: PlainContext) -> Any:
            context.notes[key] = value
            return value

        return Step.from_callable(run, name=f"add-{key}")

    par = Step.parallel({"a": add("a", 1), "b": add("b", 2)}, name="par")
    runner = runner_of(par, PlainContext)

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.notes == {"a": 1, "b": 2}


async def test_parallel_branches_setting_one_key_differently_conflict_and_change_nothing() -> None:
    def put(value: int, label: str) -> Step[Any, Any]:
        def run(data: Any, *, context: PlainContext) -> Any:
            context.notes["k"] = value
            context.label = label
            context.items.append(label)
            return value

        return Step.from_callable(run, name=f"put-{value}")

    par = Step.parallel({"left": put(1, "x"), "right": put(2, "x")}, name="par")
    runner = runner_of(par, PlainContext, initial_context_data={"notes": {"k": 0}})

    result = await runner.run_async(None)

    assert not result.success
    feedback = result.step_history[-1].feedback or ""
    assert "ParallelConflictError" in feedback, feedback
    assert "'left'" in feedback and "'right'" in feedback, feedback
    assert "notes['k']" in feedback, feedback
    context = result.final_pipeline_context
    assert context is not None
    assert context.notes == {"k": 0}
    assert context.label == ""
    assert context.items == []


class Holder(BaseModel):
    title: str = ""
    graph: ContextReference[list[str]]


class HolderContext(PipelineContext):
    holder: Holder = Field(
        default_factory=lambda: Holder(graph=ContextReference(provider_id="kg", key="graph"))
    )


async def test_after_parallel_the_next_step_can_set_a_reference_branches_only_read() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")

    def read_and_title(title: str) -> Step[Any, Any]:
        def run(data: Any, *, context: HolderContext) -> Any:
            value = list(context.holder.graph.get() or [])
            if title:
                context.holder.title = title  # a change next to the reference, same model
            return value

        return Step.from_callable(run, name=f"read-{title or 'only'}")

    def write(data: Any, *, context: HolderContext) -> Any:
        context.holder.graph.set([*(context.holder.graph.get() or []), "after"])
        return data

    par = Step.parallel({"one": read_and_title("one"), "two": read_and_title("")}, name="par")
    pipeline = par >> Step.from_callable(write, name="write")
    runner = runner_of(pipeline, HolderContext, state_providers={"kg": kg})

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert not any("ReferenceNotWritableError" in f for f in all_feedback(result.step_history))
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.holder.title == "one"
    assert kg.save_calls == [("graph", ["a", "after"])]


async def test_append_field_gets_both_branches_items_in_declaration_order() -> None:
    def add(item: str, delay: float) -> Step[Any, Any]:
        async def run(data: Any, *, context: PlainContext) -> Any:
            await asyncio.sleep(delay)
            context.log.append(item)
            return item

        return Step.from_callable(run, name=f"add-{item}")

    par = Step.parallel({"first": add("first", 0.03), "second": add("second", 0)}, name="par")
    runner = runner_of(par, PlainContext, initial_context_data={"log": ["start"]})

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.log == ["start", "first", "second"]


async def test_map_items_appends_land_in_index_order_whatever_finishes_first() -> None:
    finished: list[int] = []

    async def item(index: int, *, context: PlainContext) -> int:
        await asyncio.sleep((2 - index) * 0.02)  # later items finish first
        context.log.append(f"item{index}")
        finished.append(index)
        return index

    mapped = Step.map_over(Step.from_callable(item, name="item"), concurrency=3, name="map")
    runner = runner_of(mapped, PlainContext)

    result = await runner.run_async([0, 1, 2])

    assert result.success, result.feedback
    assert finished == [2, 1, 0]
    assert result.output == [0, 1, 2]
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.log == ["item0", "item1", "item2"]


# --- 7. a timed-out sync step ------------------------------------------------------------------


class LateContext(PipelineContext):
    x: str | None = None


def test_timed_out_thread_neither_delays_the_run_nor_writes_into_its_context() -> None:
    calls = 0
    late_write_done = threading.Event()

    def slow_then_fast(data: Any, *, context: LateContext) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.5)
            context.x = "late"
            late_write_done.set()
            return "late"
        context.x = "retry"
        return "retry"

    step = Step.from_callable(slow_then_fast, name="slow", timeout_s=0.1, max_retries=1)
    runner = runner_of(step, LateContext)

    started = time.perf_counter()
    result = runner.run(None)  # the sync door
    elapsed = time.perf_counter() - started

    assert elapsed < 0.45, elapsed
    assert result.success, result.feedback
    assert result.output == "retry"
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.x == "retry"
    assert late_write_done.wait(1.0), "the timed-out thread never finished"
    time.sleep(0.01)
    assert result.final_pipeline_context.x == "retry"
    assert "late" not in result.final_pipeline_context.model_dump_json()


# --- 8. the identity map -------------------------------------------------------------------------


class TwinContext(PipelineContext):
    first: ContextReference[list[str]] = ContextReference(provider_id="kg", key="shared")
    second: ContextReference[list[str]] = ContextReference(provider_id="kg", key="shared")


async def test_two_references_to_one_key_share_one_value_loaded_and_saved_once() -> None:
    kg = RecordingProvider({"shared": ["a"]}, name="kg")
    seen: list[Any] = []

    def set_first(data: Any, *, context: TwinContext) -> Any:
        context.first.set([*(context.first.get() or []), "via first"])
        return data

    def read_second(data: Any, *, context: TwinContext) -> Any:
        seen.append(context.second.get())
        return data

    def set_second(data: Any, *, context: TwinContext) -> Any:
        context.second.set([*(context.second.get() or []), "via second"])
        return data

    def read_first(data: Any, *, context: TwinContext) -> Any:
        seen.append(context.first.get())
        return data

    pipeline = Pipeline(
        [
            Step.from_callable(set_first, name="set-first"),
            Step.from_callable(read_second, name="read-second"),
            Step.from_callable(set_second, name="set-second"),
            Step.from_callable(read_first, name="read-first"),
        ]
    )
    runner = runner_of(pipeline, TwinContext, state_providers={"kg": kg})

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen == [["a", "via first"], ["a", "via first", "via second"]]
    assert kg.load_calls == ["shared"]
    assert kg.save_calls == [
        ("shared", ["a", "via first"]),
        ("shared", ["a", "via first", "via second"]),
    ]


# --- 9. a reference inside a subclass instance of a declared field type -----------------------


class Doc(BaseModel):
    title: str


class SubDoc(Doc):
    ref: ContextReference[list[str]]


class DocContext(PipelineContext):
    doc: Doc | None = None


async def test_reference_inside_a_subclass_instance_is_hydrated() -> None:
    kg = RecordingProvider({"graph": ["from provider"]}, name="kg")
    seen: list[Any] = []
    errors: list[str] = []

    def look(data: Any, *, context: DocContext) -> Any:
        doc = context.doc
        assert isinstance(doc, SubDoc), type(doc)
        try:
            seen.append(doc.ref.get())
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        return data

    sub = SubDoc(title="t", ref=ContextReference(provider_id="kg", key="graph"))
    runner = runner_of(
        Step.from_callable(look, name="look"),
        DocContext,
        initial_context_data={"doc": sub},
        state_providers={"kg": kg},
    )

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert errors == []
    assert seen == [["from provider"]]
    assert kg.load_calls == ["graph"]


async def test_reference_in_a_subclass_instance_a_step_assigns_is_hydrated_for_the_next() -> None:
    kg = RecordingProvider({"graph": ["from provider"]}, name="kg")
    seen: list[Any] = []

    def assign(data: Any, *, context: DocContext) -> Any:
        context.doc = SubDoc(title="t", ref=ContextReference(provider_id="kg", key="graph"))
        return data

    def look(data: Any, *, context: DocContext) -> Any:
        doc = context.doc
        assert isinstance(doc, SubDoc), type(doc)
        seen.append(doc.ref.get())
        return data

    pipeline = Step.from_callable(assign, name="assign") >> Step.from_callable(look, name="look")
    runner = runner_of(pipeline, DocContext, state_providers={"kg": kg})

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen == [["from provider"]]
    assert kg.load_calls == ["graph"]


# --- 10. watch=False, watch=True and never hashing an untouched reference -------------------


class WatchContext(PipelineContext):
    watched: ContextReference[list[str]] = ContextReference(provider_id="kg", key="watched")
    unwatched: ContextReference[list[str]] = ContextReference(
        provider_id="kg", key="unwatched", watch=False
    )


async def test_in_place_change_is_saved_once_at_run_end_only_when_watched() -> None:
    kg = RecordingProvider({"watched": ["w"], "unwatched": ["u"]}, name="kg")

    def mutate(data: Any, *, context: WatchContext) -> Any:
        for ref in (context.watched, context.unwatched):
            value = ref.get()
            assert value is not None
            value.append("in place")
        return data

    def read(data: Any, *, context: WatchContext) -> Any:
        context.watched.get()
        context.unwatched.get()
        return data

    pipeline = Step.from_callable(mutate, name="mutate") >> Step.from_callable(read, name="read")
    runner = runner_of(pipeline, WatchContext, state_providers={"kg": kg})

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert kg.save_calls == [("watched", ["w", "in place"])]
    assert kg.data["unwatched"] == ["u"]


async def test_unwatched_reference_is_saved_on_set_only() -> None:
    kg = RecordingProvider({"unwatched": ["u"]}, name="kg")

    def write(data: Any, *, context: WatchContext) -> Any:
        context.unwatched.set([*(context.unwatched.get() or []), "set"])
        return data

    def mutate(data: Any, *, context: WatchContext) -> Any:
        value = context.unwatched.get()
        assert value is not None
        value.append("in place")
        return data

    pipeline = Step.from_callable(write, name="write") >> Step.from_callable(mutate, name="mutate")
    runner = runner_of(pipeline, WatchContext, state_providers={"kg": kg})

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert kg.save_calls == [("unwatched", ["u", "set"])]  # after its step; not at run end


def hashed_runner(pipeline: Any, kg: Any, hasher: CountingHasher) -> Flujo[Any, Any, Any]:
    container = memory_container()
    container.hasher.override(providers.Object(hasher))
    return runner_of(pipeline, GraphContext, state_providers={"kg": kg}, container=container)


async def test_references_are_hashed_only_when_read_once_and_compared_once() -> None:
    untouched_hasher = CountingHasher()
    big = RecordingProvider({"graph": ["x" * 1000] * 100}, name="kg")
    ignoring = Pipeline(
        [Step.from_callable(lambda data: data, name=f"ignore-{i}") for i in range(5)]
    )

    untouched = await hashed_runner(ignoring, big, untouched_hasher).run_async(None)

    assert untouched.success, untouched.feedback
    assert big.load_calls == ["graph"]
    assert untouched_hasher.calls == 0

    reading_hasher = CountingHasher()
    kg = RecordingProvider({"graph": ["a"]}, name="kg")

    def make(i: int) -> Step[Any, Any]:
        def read(data: Any, *, context: GraphContext) -> Any:
            assert context.graph.get() == ["a"]
            return data

        return Step.from_callable(read, name=f"read-{i}")

    reading = await hashed_runner(
        Pipeline([make(i) for i in range(5)]), kg, reading_hasher
    ).run_async(None)

    assert reading.success, reading.feedback
    assert 1 <= reading_hasher.calls <= 2  # one baseline at the first read, one comparison
    assert kg.save_calls == []


# --- 11. provider deadlines -----------------------------------------------------------------------


async def test_hanging_load_fails_the_step_quickly_naming_provider_and_key() -> None:
    executor = ExecutorCore(load_timeout_s=0.05, state_providers={"kg": hanging_provider()})
    ran: list[str] = []

    def work(data: Any, *, context: GraphContext) -> Any:
        ran.append("work")
        return data

    started = time.perf_counter()
    result = await executor.execute(
        Step.from_callable(work, name="work"), None, context=GraphContext()
    )
    elapsed = time.perf_counter() - started

    assert elapsed < 0.5, elapsed
    assert not result.success
    assert ran == []
    feedback = result.feedback or ""
    assert "StateLoadError" in feedback, feedback
    assert "'kg'" in feedback and "'graph'" in feedback, feedback


async def test_hanging_load_under_the_runner_setting_fails_quickly() -> None:
    container = memory_container()
    container.config.from_dict(
        {"state": {"backend": "memory", "on_missing_provider": "error", "load_timeout_s": 0.05}}
    )
    ran: list[str] = []

    def work(data: Any) -> Any:
        ran.append("work")
        return data

    runner = runner_of(
        Step.from_callable(work, name="work"),
        GraphContext,
        state_providers={"kg": hanging_provider()},
        container=container,
    )

    started = time.perf_counter()
    with pytest.raises(StateLoadError) as info:
        await runner.run_async(None)
    elapsed = time.perf_counter() - started

    assert elapsed < 0.5, elapsed
    assert ran == []
    assert "'kg'" in str(info.value) and "'graph'" in str(info.value)
