"""Where step scopes cross other policies: retry, fallback, cache, loop, validators, limits.

In every case a ``set()`` is saved exactly when the attempt that made it commits:
once, with the last attempt's value, and never for an attempt that failed for any
reason (an exception, a validator, its own usage limit) nor for a cache hit.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from flujo import Flujo, Step
from flujo.containers import FlujoContainer
from flujo.domain.models import ContextReference, PipelineContext
from flujo.domain.policies import StepOutput, UsageLimits
from tests.doubles import RecordingProvider

TESTING_PROFILE = "testing"


def memory_container() -> Any:
    """A fresh all-in-memory container (run state included), so runs write nothing to disk."""
    return FlujoContainer.from_profile(TESTING_PROFILE)


class Ctx(PipelineContext):
    graph: ContextReference[list[str]] = ContextReference(provider_id="kg", key="graph")
    seen: list[int] = Field(default_factory=list)


def runner_of(pipeline: Any, kg: RecordingProvider, **kw: Any) -> Flujo[Any, Any, Ctx]:
    kw.setdefault("container", memory_container())
    return Flujo(pipeline, context_model=Ctx, state_providers={"kg": kg}, **kw)


def observer(seen: list[Any]) -> Step[Any, Any]:
    """A step that records the graph as the next step sees it."""

    def look(data: Any, *, context: Ctx) -> Any:
        seen.append(list(context.graph.get() or []))
        return data

    return Step.from_callable(look, name="look")


def setter(item: str, **kw: Any) -> Step[Any, Any]:
    """A step that appends ``item`` to the graph with ``set()`` and succeeds."""

    def write(data: Any, *, context: Ctx) -> Any:
        context.graph.set([*(context.graph.get() or []), item])
        return data

    return Step.from_callable(write, name=f"set-{item}", **kw)


async def test_retry_of_a_set_saves_once_the_last_attempts_value() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    attempts = 0
    after: list[Any] = []

    def write(data: Any, *, context: Ctx) -> Any:
        nonlocal attempts
        attempts += 1
        context.graph.set([*(context.graph.get() or []), f"attempt{attempts}"])
        if attempts < 3:
            raise RuntimeError(f"attempt {attempts} fails")
        return data

    pipeline = Step.from_callable(write, name="write", max_retries=2) >> observer(after)
    runner = runner_of(pipeline, kg)

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert result.step_history[0].attempts == 3
    assert after == [["a", "attempt3"]]
    assert kg.save_calls == [("graph", ["a", "attempt3"])]
    assert kg.load_calls == ["graph"]  # a failed attempt is dropped, not reloaded


async def test_fallback_drops_the_primarys_set_and_saves_its_own() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    seen_by_fallback: list[Any] = []
    after: list[Any] = []

    def primary(data: Any, *, context: Ctx) -> Any:
        context.graph.set([*(context.graph.get() or []), "primary"])
        raise RuntimeError("primary fails")

    def backup(data: Any, *, context: Ctx) -> Any:
        value = list(context.graph.get() or [])
        seen_by_fallback.append(value)
        context.graph.set([*value, "fallback"])
        return data

    step = Step.from_callable(primary, name="primary").fallback(
        Step.from_callable(backup, name="backup")
    )
    runner = runner_of(step >> observer(after), kg)

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert result.step_history[0].fallback == "backup"
    assert seen_by_fallback == [["a"]]
    assert after == [["a", "fallback"]]
    assert kg.save_calls == [("graph", ["a", "fallback"])]
    assert kg.load_calls == ["graph"]  # the primary's set() is dropped, not reloaded


async def test_cache_hit_in_a_context_with_references_does_not_save() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")
    runs = 0

    def compute(data: str, *, context: Ctx) -> str:
        nonlocal runs
        runs += 1
        context.graph.set([*(context.graph.get() or []), f"computed {data}"])
        return data.upper()

    cached = Step.cached(Step.from_callable(compute, name="compute")).with_config(
        cache_key_fn=lambda data, context: data
    )
    runner = runner_of(cached, kg)

    miss = await runner.run_async("x")
    assert miss.success, miss.feedback
    assert not miss.step_history[0].cache_hit
    assert kg.save_calls == [("graph", ["a", "computed x"])]

    hit = await runner.run_async("x")

    assert hit.success, hit.feedback
    assert hit.step_history[0].cache_hit
    assert hit.output == "X"
    assert runs == 1
    assert kg.save_calls == [("graph", ["a", "computed x"])]  # the hit saved nothing
    assert kg.data["graph"] == ["a", "computed x"]


async def test_loop_step_retried_after_a_failed_iteration_applies_each_iteration_once() -> None:
    kg = RecordingProvider({"graph": []}, name="kg")
    failed_once = False

    def body(n: int, *, context: Ctx) -> int:
        nonlocal failed_once
        n += 1
        context.seen.append(n)
        if n == 2 and not failed_once:
            failed_once = True
            raise RuntimeError("iteration 2 fails once")
        return n

    loop = Step.loop_until(
        Step.from_callable(body, name="body"),
        lambda out, ctx: out >= 3,
        max_loops=5,
        name="loop",
        max_retries=1,
    )
    runner = runner_of(loop, kg)

    result = await runner.run_async(0)

    assert result.success, result.feedback
    assert result.output == 3
    assert result.step_history[0].attempts == 2
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.seen == [1, 2, 3]


async def test_validator_rejection_drops_the_set() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")

    step = setter("rejected", validators=[lambda output: False])
    runner = runner_of(step, kg)

    result = await runner.run_async(None)

    assert not result.success
    assert "ValidationFailedError" in (result.step_history[0].feedback or "")
    assert kg.save_calls == []
    assert kg.data["graph"] == ["a"]
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.graph.get() == ["a"]


async def test_step_usage_limit_exceeded_drops_the_set() -> None:
    kg = RecordingProvider({"graph": ["a"]}, name="kg")

    def expensive(data: Any, *, context: Ctx) -> StepOutput[Any]:
        context.graph.set([*(context.graph.get() or []), "expensive"])
        return StepOutput(data, cost_usd=1.0)

    step = Step.from_callable(
        expensive, name="expensive", usage_limits=UsageLimits(total_cost_usd_limit=0.5)
    )
    runner = runner_of(step, kg)

    result = await runner.run_async(None)

    assert not result.success
    assert "UsageLimitExceededError" in (result.step_history[0].feedback or "")
    assert kg.save_calls == []
    assert kg.data["graph"] == ["a"]
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.graph.get() == ["a"]


async def test_in_place_change_in_a_lean_step_of_one_branch_does_not_reach_another() -> None:
    from flujo import ContextReference, Flujo, PipelineContext, Step
    from tests.doubles import RecordingProvider
    from tests.unit.test_state_providers_integration import memory_container

    class Ctx(PipelineContext):
        log: ContextReference[list[str]] = ContextReference(provider_id="kg", key="log")

    seen: dict[str, list[str]] = {}

    def grow(x: object, *, context: Ctx) -> object:
        value = context.log.get()
        assert value is not None
        value.append("grown")  # in place, in a step with no retry of its own
        return x

    def look(x: object, *, context: Ctx) -> object:
        seen["other"] = list(context.log.get() or [])
        return x

    par = Step.parallel(
        {"a": Step.from_callable(grow, name="grow"), "b": Step.from_callable(look, name="look")},
        reference_writers={"log": "a"},
    )
    kg = RecordingProvider({"log": ["start"]}, name="kg")
    runner = Flujo(par, context_model=Ctx, state_providers={"kg": kg}, container=memory_container())
    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen["other"] == ["start"], "branch b saw branch a's in-place change"
    assert kg.data["log"] == ["start", "grown"], "the writer branch's change is kept"


async def test_in_place_change_by_a_branch_that_may_only_read_fails_the_parallel() -> None:
    from flujo import ContextReference, Flujo, PipelineContext, Step
    from tests.doubles import RecordingProvider
    from tests.unit.test_state_providers_integration import memory_container

    class Ctx(PipelineContext):
        log: ContextReference[list[str]] = ContextReference(provider_id="kg", key="log")

    def grow(x: object, *, context: Ctx) -> object:
        value = context.log.get()
        assert value is not None
        value.append("sneaky")
        return x

    par = Step.parallel({"a": Step.from_callable(grow, name="grow")})
    kg = RecordingProvider({"log": ["start"]}, name="kg")
    runner = Flujo(par, context_model=Ctx, state_providers={"kg": kg}, container=memory_container())
    result = await runner.run_async(None)

    assert not result.success
    assert "ReferenceNotWritableError" in (result.feedback or "")
    assert kg.data["log"] == ["start"]


# -- the run's lean steps share one scope, reset for each attempt ---------------------------


async def test_lean_steps_in_a_row_each_commit_only_their_own_set() -> None:
    kg = RecordingProvider({"graph": []}, name="kg")
    after: list[Any] = []
    pipeline = setter("a") >> setter("b") >> observer(after) >> setter("c")
    runner = runner_of(pipeline, kg)

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert after == [["a", "b"]]
    assert kg.save_calls == [("graph", ["a"]), ("graph", ["a", "b"]), ("graph", ["a", "b", "c"])]


async def test_a_lean_step_after_a_failed_lean_step_starts_clean() -> None:
    kg = RecordingProvider({"graph": ["x"]}, name="kg")

    def fails_after_set(data: Any, *, context: Ctx) -> Any:
        context.graph.set(["dropped"])
        raise RuntimeError("boom")

    failing = Step.from_callable(fails_after_set, name="fails")
    recovered = Step.from_callable(fails_after_set, name="fails-then-falls-back").fallback(
        setter("fallback")
    )
    runner = runner_of(setter("a") >> recovered >> setter("b"), kg)

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert kg.data["graph"] == ["x", "a", "fallback", "b"]
    kg = RecordingProvider({"graph": []}, name="kg")
    result = await runner_of(setter("a") >> failing >> setter("b"), kg).run_async(None)
    assert not result.success
    assert kg.save_calls == [("graph", ["a"])]  # the failed step's set() is dropped


async def test_a_hook_between_steps_reads_the_committed_value_and_a_set_is_saved_at_the_end() -> (
    None
):
    from flujo.domain.events import HookEvent, StepFinished

    kg = RecordingProvider({"graph": []}, name="kg")
    seen: list[Any] = []
    contexts: list[Ctx] = []

    def look(data: Any, *, context: Ctx) -> Any:
        contexts.append(context)
        return data

    def hook(event: HookEvent) -> None:
        if isinstance(event, StepFinished) and contexts:
            ref = contexts[-1].graph
            seen.append(list(ref.get() or []))
            if event.step_name == "set-b":
                ref.set([*(ref.get() or []), "hook"])

    pipeline = Step.from_callable(look, name="look") >> setter("a") >> setter("b")
    runner = runner_of(pipeline, kg)
    runner.add_hook(hook)

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert seen == [[], ["a"], ["a", "b"]]
    assert kg.data["graph"] == ["a", "b", "hook"]


async def test_a_lean_step_in_a_thread_commits_its_set() -> None:
    kg = RecordingProvider({"graph": []}, name="kg")
    after: list[Any] = []
    runner = runner_of(setter("t", run_in_thread=True) >> observer(after), kg)

    result = await runner.run_async(None)

    assert result.success, result.feedback
    assert after == [["t"]]
    assert kg.save_calls == [("graph", ["t"])]


class _HookCtx(PipelineContext):
    log: ContextReference[list[str]] = ContextReference(provider_id="store", key="log")


async def test_a_hooks_set_between_steps_is_its_own_not_the_next_steps() -> None:
    """A hook is not a step attempt: its set() survives the next step failing, saved at the end."""
    from flujo.domain.events import HookEvent, StepFinished
    from flujo.providers import InMemoryStateProvider

    store: InMemoryStateProvider[list[str]] = InMemoryStateProvider({"log": []})
    seen: list[Any] = []

    def hook(event: HookEvent) -> None:
        if isinstance(event, StepFinished) and event.step_name == "first":
            context = holder[0]
            seen.append(context.log.get())
            context.log.set(["from the hook"])

    holder: list[_HookCtx] = []

    def first(data: int, *, context: _HookCtx) -> int:
        holder.append(context)
        return data

    def second(data: int, *, context: _HookCtx) -> int:
        raise RuntimeError("second fails")

    runner = Flujo(
        Step.from_callable(first, name="first") >> Step.from_callable(second, name="second"),
        context_model=_HookCtx,
        state_providers={"store": store},
        hooks=[hook],
        persist_state=False,
    )
    result = await runner.run_async(0)

    assert not result.success
    assert seen == [[]]
    assert store.data["log"] == ["from the hook"], "saved at the end, like a set() outside a run"
