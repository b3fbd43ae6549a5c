"""parallel and map_over at run time: concurrency, context copies, merging, references, order."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from flujo import ContextReference, Flujo, PipelineContext, PipelineResult, Step, StepOutput
from tests.helpers import DictStateProvider

GUARD = 5.0  # a test fails instead of hanging if a run never returns


class Ctx(PipelineContext):
    a: int = 0
    b: int = 0
    shared: int = 0
    tags: list[str] = Field(default_factory=list)
    docs: list[str] = Field(default_factory=list)


class RefCtx(PipelineContext):
    notes: ContextReference[list[str]] = ContextReference(provider_id="notes", key="n")
    count: int = 0


class Crash(BaseException):
    """Stands in for an abort nothing in flujo catches (like KeyboardInterrupt)."""


async def _run(
    pipeline: Any, data: Any, *, context: type[PipelineContext] = Ctx, **kw: Any
) -> PipelineResult[Any]:
    runner = Flujo(pipeline, context_model=context, persist_state=False, **kw)
    return await asyncio.wait_for(runner.run_async(data), GUARD)


def _ctx(result: PipelineResult[Any]) -> Any:
    assert result.final_pipeline_context is not None
    return result.final_pipeline_context


def _fn(name: str, fn: Any) -> Step[Any, Any]:
    return Step.from_callable(fn, name=name)


async def _cancel_strays() -> None:
    """Cancel tasks a test left running (there should be none), so they end with the test."""
    strays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in strays:
        task.cancel()
    await asyncio.gather(*strays, return_exceptions=True)


# --- parallel: running and outputs -------------------------------------------------------


async def test_parallel_branches_run_concurrently() -> None:
    barrier = asyncio.Barrier(3)

    def branch(name: str) -> Step[Any, Any]:
        async def meet(x: int) -> str:
            # Sequential branches never all reach the barrier: the first would time out.
            await asyncio.wait_for(barrier.wait(), 1.0)
            return f"{name}{x}"

        return _fn(name, meet)

    result = await _run(Step.parallel({"a": branch("a"), "b": branch("b"), "c": branch("c")}), 1)

    assert result.success, result.feedback
    assert result.output == {"a": "a1", "b": "b1", "c": "c1"}


async def test_each_branch_gets_the_same_input_and_output_keys_follow_the_declaration() -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.03)
        return x * 2

    par = Step.parallel({"z-slow": _fn("slow", slow), "a-fast": _fn("fast", lambda x: x + 1)})
    result = await _run(_fn("start", lambda x: 10) >> par, 0)

    assert result.output == {"z-slow": 20, "a-fast": 11}
    assert list(result.output) == ["z-slow", "a-fast"]
    nested = result.step_history[1].step_history
    assert [(r.name, r.success, r.output) for r in nested] == [
        ("z-slow", True, 20),
        ("a-fast", True, 11),
    ]
    assert [r.name for r in nested[0].step_history] == ["slow"]


async def test_a_branch_does_not_see_another_branchs_context_changes() -> None:
    changed = asyncio.Event()
    seen: list[int] = []

    async def writer(x: Any, *, context: Ctx) -> str:
        context.a = 1
        changed.set()
        return "w"

    async def reader(x: Any, *, context: Ctx) -> str:
        await asyncio.wait_for(changed.wait(), 1.0)
        seen.append(context.a)
        context.b = 2
        return "r"

    result = await _run(Step.parallel({"w": _fn("w", writer), "r": _fn("r", reader)}), None)

    assert result.success, result.feedback
    assert seen == [0], "a branch saw another branch's change before the merge"
    final = result.final_pipeline_context
    assert isinstance(final, Ctx)
    assert (final.a, final.b) == (1, 2)  # both changes merged afterwards


async def test_branches_do_not_change_the_run_context_while_they_run() -> None:
    during: list[int] = []

    async def bump(x: Any, *, context: Ctx) -> None:
        context.a = 99
        context.tags.append("in-branch")

    run_context: list[Ctx] = []

    def remember(x: Any, *, context: Ctx) -> Any:
        run_context.append(context)
        return x

    async def watch(x: Any, *, context: Ctx) -> None:
        await asyncio.sleep(0.01)
        during.append(run_context[0].a)
        during.append(len(run_context[0].tags))

    par = Step.parallel({"bump": _fn("bump", bump), "w": _fn("w", watch)})
    result = await _run(_fn("remember", remember) >> par, None)

    assert result.success, result.feedback
    assert during == [0, 0]
    assert run_context[0].a == 99 and run_context[0].tags == ["in-branch"]


@pytest.mark.parametrize("first", ["x", "y"])
async def test_changed_fields_merge_the_same_whatever_the_finish_order(first: str) -> None:
    def branch(field: str, value: Any, delay: float) -> Step[Any, Any]:
        async def change(x: Any, *, context: Ctx) -> str:
            await asyncio.sleep(delay)
            setattr(context, field, value)
            return field

        return _fn(f"set-{field}", change)

    delays = {"x": 0.0, "y": 0.03} if first == "x" else {"x": 0.03, "y": 0.0}
    par = Step.parallel(
        {
            "x": branch("a", 5, delays["x"]),
            "y": branch("tags", ["from-y"], delays["y"]),
        }
    )
    result = await _run(par, None, initial_context_data={"b": 7})

    assert result.success, result.feedback
    final = result.final_pipeline_context
    assert isinstance(final, Ctx)
    assert (final.a, final.tags, final.b, final.shared) == (5, ["from-y"], 7, 0)


async def test_a_field_changed_in_place_is_merged() -> None:
    def tag(x: Any, *, context: Ctx) -> None:
        context.tags.append("tagged")

    result = await _run(
        Step.parallel({"t": _fn("t", tag), "n": _fn("n", lambda x: x)}),
        None,
        initial_context_data={"tags": ["start"]},
    )
    assert result.success, result.feedback
    assert _ctx(result).tags == ["start", "tagged"]


async def test_two_branches_changing_one_field_differently_is_a_conflict() -> None:
    def setter(value: int) -> Any:
        def fn(x: Any, *, context: Ctx) -> int:
            context.shared = value
            context.a = value  # also conflicting; the first conflict found is reported
            return value

        return fn

    after: list[Any] = []
    par = Step.parallel({"left": _fn("l", setter(1)), "right": _fn("r", setter(2))}, name="fan")
    result = await _run(par >> _fn("after", after.append), None)

    assert not result.success and result.status == "failed"
    feedback = result.step_history[0].feedback or ""
    assert "ParallelConflictError" in feedback
    assert "'left'" in feedback and "'right'" in feedback and "'fan'" in feedback
    assert "'shared'" in feedback or "'a'" in feedback
    final = result.final_pipeline_context
    assert isinstance(final, Ctx)
    assert (final.shared, final.a) == (0, 0), "no branch's value may win a conflict"
    assert after == []


async def test_two_branches_setting_one_field_to_the_same_value_is_fine() -> None:
    def same(x: Any, *, context: Ctx) -> None:
        context.shared = 5
        context.tags = ["same"]

    result = await _run(Step.parallel({"a": _fn("a", same), "b": _fn("b", same)}), None)
    assert result.success, result.feedback
    final = _ctx(result)
    assert (final.shared, final.tags) == (5, ["same"])


class PathCtx(PipelineContext):
    workdir: Path = Path("/srv/data")
    count: int = 0


async def test_fields_no_branch_touched_never_conflict() -> None:
    # A Path is no JSON value; untouched, it must neither conflict nor be replaced.
    def bump(x: Any, *, context: PathCtx) -> None:
        context.count += 1

    result = await _run(
        Step.parallel({"a": _fn("a", bump), "b": _fn("b", lambda x: x)}), None, context=PathCtx
    )

    assert result.success, result.feedback
    final = result.final_pipeline_context
    assert isinstance(final, PathCtx)
    assert (final.workdir, final.count) == (Path("/srv/data"), 1)


# --- parallel: failures and merge ----------------------------------------------------------


def _broken(x: Any) -> Any:
    raise ValueError("branch b is broken")


def _set_a(x: Any, *, context: Ctx) -> str:
    context.a = 1
    return "ok"


async def test_a_failing_branch_fails_the_step_by_default() -> None:
    after: list[Any] = []
    par = Step.parallel({"good": _fn("good", _set_a), "bad": _fn("breaker", _broken)})
    result = await _run(par >> _fn("after", after.append), None)

    assert not result.success
    failed = result.step_history[0]
    assert not failed.success
    feedback = failed.feedback or ""
    assert re.search(r"branch '[\w.]*\bbad'", feedback), feedback  # names the branch
    assert "'breaker'" in feedback and "branch b is broken" in feedback
    assert [(r.name, r.success) for r in failed.step_history] == [("good", True), ("bad", False)]
    assert after == []
    assert _ctx(result).a == 0  # a failed step's branches change nothing


async def test_collect_keeps_the_successful_branches_and_records_all() -> None:
    par = Step.parallel(
        {"good": _fn("good", _set_a), "bad": _fn("bad", _broken), "also": _fn("also", str)},
        on_branch_failure="collect",
    )
    result = await _run(par >> _fn("after", lambda outs: sorted(outs)), 7)

    assert result.success, result.feedback
    assert result.step_history[0].output == {"good": "ok", "also": "7"}
    assert result.output == ["also", "good"]
    nested = result.step_history[0].step_history
    assert [(r.name, r.success) for r in nested] == [
        ("good", True),
        ("bad", False),
        ("also", True),
    ]
    assert "branch b is broken" in (nested[1].feedback or "")
    assert _ctx(result).a == 1


async def test_merge_turns_the_branch_outputs_into_the_step_output() -> None:
    seen: list[dict[str, Any]] = []

    def total(outputs: dict[str, Any]) -> int:
        seen.append(outputs)
        return sum(outputs.values())

    par = Step.parallel(
        {"double": _fn("d", lambda x: x * 2), "square": _fn("s", lambda x: x * x)}, merge=total
    )
    result = await _run(par >> _fn("after", lambda x: x + 1), 3)

    assert seen == [{"double": 6, "square": 9}]
    assert result.step_history[0].output == 15
    assert result.output == 16


async def test_async_merge() -> None:
    async def first(outputs: dict[str, Any]) -> Any:
        await asyncio.sleep(0)
        return outputs["a"]

    result = await _run(Step.parallel({"a": _fn("a", str), "b": _fn("b", repr)}, merge=first), 1)
    assert result.output == "1"


async def test_branch_costs_sum_into_the_parallel_result() -> None:
    par = Step.parallel(
        {
            "a": _fn("a", lambda x: StepOutput(x, cost_usd=0.2, tokens=3)),
            "b": _fn("b", lambda x: StepOutput(x, cost_usd=0.3, tokens=4)),
        }
    )
    result = await _run(par, 1)
    assert result.step_history[0].cost_usd == pytest.approx(0.5)
    assert result.step_history[0].token_counts == 7
    assert result.total_cost_usd == pytest.approx(0.5) and result.total_tokens == 7


async def test_an_aborted_branch_cancels_the_others() -> None:
    finished: list[str] = []

    async def crash(x: Any) -> None:
        await asyncio.sleep(0.01)
        raise Crash()

    async def slow(x: Any) -> None:
        await asyncio.sleep(0.1)
        finished.append("slow")

    runner = Flujo(Step.parallel({"c": _fn("c", crash), "s": _fn("s", slow)}), persist_state=False)
    try:
        with pytest.raises(Crash):
            await runner.run_async(None)
        await asyncio.sleep(0.2)
        assert finished == [], "a branch kept running after the run was aborted"
    finally:
        await _cancel_strays()


# --- parallel: references ------------------------------------------------------------------


def _ref_runner(pipeline: Any, provider: DictStateProvider) -> Flujo[Any, Any, RefCtx]:
    return Flujo(
        pipeline, context_model=RefCtx, persist_state=False, state_providers={"notes": provider}
    )


async def test_references_are_shared_and_readable_in_every_branch() -> None:
    provider = DictStateProvider({"n": ["x"]})
    seen: dict[str, Any] = {}

    def before(x: Any, *, context: RefCtx) -> Any:
        seen["run"] = context.notes.get()
        return x

    def reader(name: str) -> Step[Any, Any]:
        async def read(x: Any, *, context: RefCtx) -> Any:
            await asyncio.sleep(0)
            seen[name] = context.notes.get()
            return len(context.notes.get() or [])

        return _fn(name, read)

    par = Step.parallel({"r1": reader("r1"), "r2": reader("r2")})
    result = await _ref_runner(_fn("before", before) >> par, provider).run_async(None)

    assert result.success, result.feedback
    assert result.output == {"r1": 1, "r2": 1}
    assert seen["r1"] == seen["r2"] == ["x"]
    # Each branch reads a private copy of a watched value: an in-place change in one
    # branch cannot reach the other (a watch=False reference is shared instead).
    assert seen["r1"] is not seen["run"] and seen["r2"] is not seen["run"]
    assert seen["r1"] is not seen["r2"]
    assert provider.loads == ["n"]  # hydrated once per run, not per branch
    assert provider.saves == []


async def test_set_in_a_branch_that_is_not_the_writer_fails_naming_branch_and_field() -> None:
    provider = DictStateProvider({"n": ["x"]})

    def scribble(x: Any, *, context: RefCtx) -> None:
        context.notes.set(["scribbled"])

    par = Step.parallel(
        {"writer": _fn("w", lambda x: x), "intruder": _fn("scribble", scribble)},
        reference_writers={"notes": "writer"},
        name="fan",
    )
    result = await _ref_runner(par, provider).run_async(None)

    assert not result.success
    feedback = result.step_history[0].feedback or ""
    assert "ReferenceNotWritableError" in feedback
    assert "'intruder'" in feedback and "notes" in feedback
    assert provider.saves == []
    assert provider.data["n"] == ["x"]


async def test_without_reference_writers_every_branch_only_reads() -> None:
    provider = DictStateProvider({"n": ["x"]})

    def scribble(x: Any, *, context: RefCtx) -> None:
        context.notes.set(["scribbled"])

    result = await _ref_runner(
        Step.parallel({"only": _fn("scribble", scribble)}), provider
    ).run_async(None)

    assert not result.success
    assert "ReferenceNotWritableError" in (result.step_history[0].feedback or "")
    assert provider.data["n"] == ["x"]


async def test_the_writer_branch_saves_and_the_run_sees_its_value_afterwards() -> None:
    provider = DictStateProvider({"n": ["x"]})
    seen_by_reader: list[Any] = []
    after: list[Any] = []

    def write(x: Any, *, context: RefCtx) -> str:
        context.notes.set([*(context.notes.get() or []), "from-writer"])
        return "wrote"

    async def read(x: Any, *, context: RefCtx) -> str:
        await asyncio.sleep(0.02)
        seen_by_reader.append(context.notes.get())
        return "read"

    def check(x: Any, *, context: RefCtx) -> Any:
        after.append(context.notes.get())
        return x

    par = Step.parallel(
        {"writer": _fn("write", write), "reader": _fn("read", read)},
        reference_writers={"notes": "writer"},
    )
    runner = _ref_runner(par >> _fn("check", check), provider)
    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert provider.data["n"] == ["x", "from-writer"]
    assert provider.saves == [("n", ["x", "from-writer"])]  # saved once, by the writer's step
    assert seen_by_reader == [["x"]]  # the reader kept the value it started with
    assert after == [["x", "from-writer"]]
    final = result.final_pipeline_context
    assert isinstance(final, RefCtx)
    assert final.notes.get() == ["x", "from-writer"]


# --- map_over: order and concurrency -------------------------------------------------------


class Tracker:
    """An async map body that records starts, finishes and how many items ran at once."""

    def __init__(self, delay: Any = 0.01, fn: Any = lambda x: x * 10) -> None:
        self.delay = delay
        self.fn = fn
        self.started: list[Any] = []
        self.finished: list[Any] = []
        self.running = 0
        self.max_running = 0

    async def __call__(self, item: Any) -> Any:
        self.started.append(item)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.delay(item) if callable(self.delay) else self.delay)
            out = self.fn(item)
        finally:
            self.running -= 1
        self.finished.append(item)
        return out

    def step(self, name: str = "body") -> Step[Any, Any]:
        return Step.from_callable(self, name=name)


async def test_map_output_keeps_input_order_when_items_finish_out_of_order() -> None:
    items = list(range(6))
    tracker = Tracker(delay=lambda i: (6 - i) * 0.01)
    result = await _run(Step.map_over(tracker.step(), concurrency=6), items)

    assert result.success, result.feedback
    assert tracker.finished == list(reversed(items))  # later items finished first
    assert result.output == [0, 10, 20, 30, 40, 50]


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_map_runs_at_most_concurrency_items_at_once(concurrency: int) -> None:
    tracker = Tracker(delay=0.01)
    result = await _run(Step.map_over(tracker.step(), concurrency=concurrency), list(range(9)))

    assert result.success, result.feedback
    assert result.output == [i * 10 for i in range(9)]
    assert tracker.max_running == concurrency  # never more, and the bound is used
    assert sorted(tracker.started) == list(range(9))


async def test_map_items_from_a_context_field() -> None:
    tracker = Tracker(delay=0, fn=str.upper)
    mapped = Step.map_over(tracker.step(), items_from="docs", concurrency=2)
    result = await _run(mapped, "ignored input", initial_context_data={"docs": ["a", "b", "c"]})
    assert result.success, result.feedback
    assert result.output == ["A", "B", "C"]


async def test_map_items_from_a_callable_of_input_and_context() -> None:
    got: list[tuple[Any, Any]] = []

    def pick(data: Any, context: Ctx) -> list[str]:
        got.append((data, context.b))
        return [d for d in data["docs"] if d != "skip"]

    tracker = Tracker(delay=0, fn=len)
    mapped = Step.map_over(tracker.step(), items_from=pick)
    result = await _run(mapped, {"docs": ["aa", "skip", "bbb"]}, initial_context_data={"b": 4})
    assert result.output == [2, 3]
    assert got == [({"docs": ["aa", "skip", "bbb"]}, 4)]


async def test_map_items_from_an_async_callable() -> None:
    async def pick(data: Any, context: Any) -> range:
        return range(data)

    result = await _run(Step.map_over(_fn("sq", lambda x: x * x), items_from=pick), 4)
    assert result.output == [0, 1, 4, 9]


async def test_map_over_a_generator_output_and_an_empty_list() -> None:
    body = _fn("inc", lambda x: x + 1)
    result = await _run(_fn("gen", lambda n: (i for i in range(n))) >> Step.map_over(body), 3)
    assert result.output == [1, 2, 3]
    empty = await _run(Step.map_over(body), [])
    assert empty.success and empty.output == []


@pytest.mark.parametrize("items", [5, None, "abc"])
async def test_items_that_are_not_a_collection_fail_the_map(items: Any) -> None:
    after: list[Any] = []
    mapped = Step.map_over(_fn("body", lambda x: x), name="each")
    result = await _run(mapped >> _fn("after", after.append), items)

    assert not result.success
    feedback = result.step_history[0].feedback or ""
    assert "'each'" in feedback and "items must be iterable" in feedback
    assert type(items).__name__ in feedback
    assert after == []


async def test_an_unknown_context_field_fails_the_map_naming_it() -> None:
    result = await _run(Step.map_over(_fn("body", lambda x: x), items_from="documents"), None)
    assert not result.success
    assert "'documents'" in (result.feedback or "")


async def test_an_item_failure_fails_the_map_and_no_new_item_starts() -> None:
    def fail_on_2(x: int) -> int:
        if x == 2:
            raise ValueError("item 2 is corrupt")
        return x

    tracker = Tracker(delay=0, fn=fail_on_2)
    after: list[Any] = []
    mapped = Step.map_over(tracker.step(), concurrency=1)
    result = await _run(mapped >> _fn("after", after.append), list(range(6)))

    assert not result.success
    failed = result.step_history[0]
    assert "map[2]" in (failed.feedback or "") and "item 2 is corrupt" in (failed.feedback or "")
    assert tracker.started == [0, 1, 2]
    assert [(r.name, r.success) for r in failed.step_history] == [
        ("map[0]", True),
        ("map[1]", True),
        ("map[2]", False),
    ]
    assert after == []


async def test_with_concurrency_a_failure_stops_queued_items_but_lets_running_ones_end() -> None:
    def fail_first(x: int) -> int:
        if x == 0:
            raise ValueError("first item fails")
        return x

    tracker = Tracker(delay=lambda i: 0 if i == 0 else 0.03, fn=fail_first)
    result = await _run(Step.map_over(tracker.step(), concurrency=2), list(range(8)))

    assert not result.success
    assert sorted(tracker.started) == [0, 1]
    assert tracker.finished == [1]  # the item already running was not abandoned midway


async def test_map_records_each_item_with_its_nested_steps() -> None:
    body = _fn("parse", lambda x: x * 2) >> _fn("label", lambda x: f"#{x}")
    result = await _run(Step.map_over(body, concurrency=2, name="docs"), [1, 2, 3])

    assert result.success, result.feedback
    assert result.output == ["#2", "#4", "#6"]
    (mapped,) = result.step_history
    assert [r.name for r in mapped.step_history] == ["docs[0]", "docs[1]", "docs[2]"]
    assert [r.output for r in mapped.step_history] == ["#2", "#4", "#6"]
    for item in mapped.step_history:
        assert [r.name for r in item.step_history] == ["parse", "label"]


async def test_map_item_costs_sum_into_the_map_and_the_run() -> None:
    body = _fn("paid", lambda x: StepOutput(x, cost_usd=0.1, tokens=x))
    result = await _run(Step.map_over(body, concurrency=2), [1, 2, 3])

    (mapped,) = result.step_history
    assert [r.cost_usd for r in mapped.step_history] == pytest.approx([0.1, 0.1, 0.1])
    assert [r.token_counts for r in mapped.step_history] == [1, 2, 3]
    assert mapped.cost_usd == pytest.approx(0.3) and mapped.token_counts == 6
    assert result.total_cost_usd == pytest.approx(0.3) and result.total_tokens == 6


async def test_map_body_can_read_and_change_the_context() -> None:
    def count(x: str, *, context: Ctx) -> str:
        context.a += 1
        return f"{x}{context.b}"

    result = await _run(
        Step.map_over(_fn("count", count)), ["p", "q"], initial_context_data={"b": 9}
    )
    assert result.output == ["p9", "q9"]
    assert _ctx(result).a == 2


async def test_an_aborted_item_stops_the_map_no_item_starts_or_continues_after() -> None:
    async def body(x: int) -> int:
        started.append(x)
        if x == 1:
            await asyncio.sleep(0.01)
            raise Crash()
        await asyncio.sleep(0.05)
        finished.append(x)
        return x

    started: list[int] = []
    finished: list[int] = []
    runner = Flujo(Step.map_over(_fn("body", body), concurrency=3), persist_state=False)
    try:
        with pytest.raises(Crash):
            await runner.run_async(list(range(10)))
        at_abort = list(started)
        await asyncio.sleep(0.3)
        assert started == at_abort, "map items kept starting after the run was aborted"
        assert finished == [], "map items kept running after the run was aborted"
    finally:
        await _cancel_strays()


async def test_a_merge_that_raises_keeps_what_the_branches_spent() -> None:
    def merge(outputs: dict[str, Any]) -> Any:
        raise KeyError("summary")

    par = Step.parallel(
        {
            "a": _fn("a", lambda x: StepOutput(x, cost_usd=0.2, tokens=3)),
            "b": _fn("b", lambda x: StepOutput(x, cost_usd=0.3, tokens=4)),
        },
        merge=merge,
    )
    result = await _run(par, 1)

    assert not result.success
    (failed,) = result.step_history
    assert "KeyError" in (failed.feedback or "")
    assert [r.name for r in failed.step_history] == ["a", "b"]
    assert failed.cost_usd == pytest.approx(0.5) and failed.token_counts == 7
    assert result.total_cost_usd == pytest.approx(0.5) and result.total_tokens == 7
