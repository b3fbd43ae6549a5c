"""branch_on and loop_until at run time: choices, exits, failures, nesting, policies, usage."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from dependency_injector import providers

from flujo import (
    Flujo,
    PipelineContext,
    PipelineResult,
    Step,
    StepOutput,
    StepResult,
    UsageLimits,
    ValidationResult,
)
from tests.helpers import Flaky, RecordingTelemetry

GUARD = 5.0  # a test fails instead of hanging if a run never returns


class Ctx(PipelineContext):
    route: str = "a"
    hits: int = 0


class Calls:
    """Step bodies that record their inputs by name."""

    def __init__(self) -> None:
        self.inputs: dict[str, list[Any]] = {}

    def of(self, name: str) -> list[Any]:
        return self.inputs.get(name, [])

    def step(self, name: str, fn: Any = lambda x: x, **options: Any) -> Step[Any, Any]:
        def body(data: Any) -> Any:
            self.inputs.setdefault(name, []).append(data)
            return fn(data)

        return Step.from_callable(body, name=name, **options)


async def _run(
    pipeline: Any, data: Any, *, context: type[PipelineContext] = Ctx, **kw: Any
) -> PipelineResult[Any]:
    runner = Flujo(pipeline, context_model=context, persist_state=False, **kw)
    return await asyncio.wait_for(runner.run_async(data), GUARD)


def _names(results: list[StepResult]) -> list[str]:
    return [r.name for r in results]


def _inc(x: int) -> int:
    return x + 1


# --- branch_on: choosing -----------------------------------------------------------------


async def test_branch_runs_the_branch_the_condition_names() -> None:
    calls = Calls()
    seen: list[tuple[Any, Any]] = []

    def kind(output: Any, context: Any) -> str:
        seen.append((output, context))
        return str(output["kind"])

    branch = Step.branch_on(
        kind,
        {
            "text": calls.step("text", lambda d: f"text:{d['v']}"),
            "image": calls.step("image", lambda d: f"image:{d['v']}"),
        },
    )
    result = await _run(branch, {"kind": "image", "v": 7})

    assert result.success, result.feedback
    assert result.output == "image:7"
    assert calls.of("text") == []
    assert calls.of("image") == [{"kind": "image", "v": 7}]  # the branch gets the same input
    ((output, context),) = seen
    assert output == {"kind": "image", "v": 7}
    assert isinstance(context, Ctx) and context.run_id == result.run_id


async def test_async_condition_reads_the_context() -> None:
    async def by_route(output: Any, context: Ctx) -> str:
        await asyncio.sleep(0)
        return context.route

    calls = Calls()
    branch = Step.branch_on(
        by_route,
        {"a": calls.step("a", lambda x: "went a"), "b": calls.step("b", lambda x: "went b")},
    )
    runner = Flujo(branch, context_model=Ctx, persist_state=False)

    to_b = await runner.run_async(1, initial_context_data={"route": "b"})
    to_a = await runner.run_async(1, initial_context_data={"route": "a"})

    assert (to_b.output, to_a.output) == ("went b", "went a")
    assert calls.of("a") == [1] and calls.of("b") == [1]


async def test_condition_gets_the_previous_steps_output() -> None:
    got: list[Any] = []

    def cond(output: Any, context: Any) -> str:
        got.append(output)
        return "big" if output > 10 else "small"

    pipeline = Step.from_callable(lambda x: x * 10, name="times10") >> Step.branch_on(
        cond,
        {
            "big": Step.from_callable(lambda x: f"big {x}", name="big"),
            "small": Step.from_callable(lambda x: f"small {x}", name="small"),
        },
    )
    result = await _run(pipeline, 3)
    assert got == [30]
    assert result.output == "big 30"


@pytest.mark.parametrize("chosen", ["zzz", None, 3])
async def test_default_runs_for_an_unknown_key(chosen: Any) -> None:
    calls = Calls()
    branch = Step.branch_on(
        lambda out, ctx: chosen,
        {"a": calls.step("a")},
        default=calls.step("fallback-branch", lambda x: f"default got {x}"),
    )
    result = await _run(branch, "in")
    assert result.success, result.feedback
    assert result.output == "default got in"
    assert calls.of("a") == []
    assert _names(result.step_history[0].step_history) == ["fallback-branch"]


async def test_unknown_key_without_default_fails_naming_the_key_and_the_known_ones() -> None:
    calls = Calls()
    pipeline = Step.branch_on(
        lambda out, ctx: "audio",
        {"text": calls.step("text"), "image": calls.step("image")},
        name="by-kind",
    ) >> calls.step("after")

    result = await _run(pipeline, "x")

    assert not result.success and result.status == "failed"
    (failed,) = result.step_history
    assert failed.name == "by-kind" and not failed.success
    feedback = failed.feedback or ""
    assert "'audio'" in feedback
    assert "'text'" in feedback and "'image'" in feedback
    assert "no default" in feedback
    assert calls.of("text") == calls.of("image") == calls.of("after") == []


async def test_a_condition_that_raises_fails_the_step_with_its_error() -> None:
    def cond(out: Any, ctx: Any) -> str:
        raise LookupError("no route for this input")

    result = await _run(Step.branch_on(cond, {"a": Step.from_callable(_inc, name="a")}), 1)
    assert not result.success
    assert "LookupError" in (result.feedback or "")
    assert "no route for this input" in (result.feedback or "")


async def test_a_branch_body_can_be_a_pipeline() -> None:
    calls = Calls()
    body = calls.step("double", lambda x: x * 2) >> calls.step("plus3", lambda x: x + 3)
    pipeline = Step.branch_on(
        lambda out, ctx: "p", {"p": body, "q": calls.step("q")}
    ) >> calls.step("after", lambda x: -x)

    result = await _run(pipeline, 5)

    assert result.success, result.feedback
    assert result.output == -13
    assert calls.of("plus3") == [10] and calls.of("after") == [13]
    assert _names(result.step_history) == ["branch", "after"]
    nested = result.step_history[0].step_history
    assert _names(nested) == ["double", "plus3"]
    assert [r.output for r in nested] == [10, 13]
    assert result.step_history[0].output == 13


async def test_a_failing_step_in_a_branch_fails_the_branch_with_nested_history() -> None:
    def broken(x: Any) -> Any:
        raise ValueError("cannot parse")

    calls = Calls()
    body = calls.step("ok", _inc) >> Step.from_callable(broken, name="parse") >> calls.step("z")
    pipeline = Step.branch_on(lambda o, c: "p", {"p": body}) >> calls.step("after")

    result = await _run(pipeline, 1)

    assert not result.success
    branch = result.step_history[-1]
    assert branch.name == "branch" and not branch.success
    assert "'parse'" in (branch.feedback or "") and "cannot parse" in (branch.feedback or "")
    assert [(r.name, r.success) for r in branch.step_history] == [("ok", True), ("parse", False)]
    assert calls.of("z") == calls.of("after") == []


# --- loop_until ----------------------------------------------------------------------------


async def test_loop_runs_its_body_on_its_own_output_until_the_exit_condition() -> None:
    calls = Calls()
    loop = Step.loop_until(calls.step("inc", _inc), lambda out, ctx: out >= 3, max_loops=10)
    result = await _run(loop >> calls.step("after"), 0)

    assert result.success, result.feedback
    assert result.output == 3
    assert calls.of("inc") == [0, 1, 2]
    assert calls.of("after") == [3]
    (looped, _) = result.step_history
    assert _names(looped.step_history) == ["inc", "inc", "inc"]
    assert [r.output for r in looped.step_history] == [1, 2, 3]


async def test_exit_condition_gets_the_output_and_the_context() -> None:
    seen: list[tuple[Any, int, str | None]] = []

    def count(x: str, *, context: Ctx) -> str:
        context.hits += 1
        return x + "!"

    def enough(output: str, context: Ctx) -> bool:
        seen.append((output, context.hits, context.run_id))
        return context.hits >= 2

    loop = Step.loop_until(Step.from_callable(count, name="count"), enough, max_loops=5)
    result = await _run(loop, "go")

    assert result.success, result.feedback
    assert result.output == "go!!"
    assert seen == [("go!", 1, result.run_id), ("go!!", 2, result.run_id)]
    final = result.final_pipeline_context
    assert isinstance(final, Ctx) and final.hits == 2


async def test_async_exit_condition() -> None:
    async def done(output: int, context: Any) -> bool:
        await asyncio.sleep(0)
        return output == 2

    loop = Step.loop_until(Step.from_callable(_inc, name="inc"), done, max_loops=5)
    result = await _run(loop, 0)
    assert (result.success, result.output) == (True, 2)


async def test_reaching_max_loops_fails_the_loop_clearly() -> None:
    calls = Calls()
    loop = Step.loop_until(
        calls.step("inc", _inc), lambda out, ctx: False, max_loops=3, name="refine"
    )
    result = await _run(loop >> calls.step("after"), 0)

    assert not result.success and result.status == "failed"
    (failed,) = result.step_history
    assert failed.name == "refine" and not failed.success
    assert "max_loops=3" in (failed.feedback or "")
    assert "'refine'" in (failed.feedback or "")
    assert calls.of("inc") == [0, 1, 2]
    assert len(failed.step_history) == 3
    assert calls.of("after") == []


async def test_on_max_loops_return_gives_the_last_output() -> None:
    calls = Calls()
    loop = Step.loop_until(
        calls.step("inc", _inc), lambda out, ctx: False, max_loops=3, on_max_loops="return"
    )
    result = await _run(loop >> calls.step("after", lambda x: x * 100), 0)

    assert result.success, result.feedback
    assert result.step_history[0].output == 3
    assert calls.of("after") == [3]
    assert result.output == 300


async def test_a_failing_body_fails_the_loop_with_its_nested_history() -> None:
    def check(x: int) -> int:
        if x >= 2:
            raise ValueError(f"{x} is too big")
        return x

    calls = Calls()
    body = calls.step("inc", _inc) >> Step.from_callable(check, name="check")
    loop = Step.loop_until(body, lambda out, ctx: False, max_loops=10)
    result = await _run(loop >> calls.step("after"), 0)

    assert not result.success
    (failed,) = result.step_history
    assert not failed.success
    assert "'check'" in (failed.feedback or "") and "2 is too big" in (failed.feedback or "")
    assert [(r.name, r.success) for r in failed.step_history] == [
        ("inc", True),
        ("check", True),
        ("inc", True),
        ("check", False),
    ]
    assert calls.of("inc") == [0, 1]
    assert calls.of("after") == []


async def test_a_loop_inside_a_branch() -> None:
    calls = Calls()
    loop = Step.loop_until(
        calls.step("double", lambda x: x * 2), lambda out, ctx: out > 20, max_loops=10
    )
    branch = Step.branch_on(
        lambda out, ctx: "grow" if out > 0 else "skip",
        {"grow": loop, "skip": calls.step("skip")},
    )
    result = await _run(branch, 3)

    assert result.success, result.feedback
    assert result.output == 24
    (branched,) = result.step_history
    (looped,) = branched.step_history
    assert looped.name == "loop" and looped.output == 24
    assert _names(looped.step_history) == ["double", "double", "double"]
    assert calls.of("skip") == []


async def test_a_branch_inside_a_loop_is_chosen_again_each_iteration() -> None:
    branch = Step.branch_on(
        lambda out, ctx: "even" if out % 2 == 0 else "odd",
        {
            "even": Step.from_callable(lambda x: x + 1, name="even"),
            "odd": Step.from_callable(lambda x: x + 3, name="odd"),
        },
    )
    loop = Step.loop_until(branch, lambda out, ctx: out >= 8, max_loops=10)
    result = await _run(loop, 0)
    assert result.output == 8  # 0 -even-> 1 -odd-> 4 -even-> 5 -odd-> 8
    inner = result.step_history[0].step_history
    assert [r.step_history[0].name for r in inner] == ["even", "odd", "even", "odd"]


# --- step policies on a whole control-flow step --------------------------------------------


async def test_max_retries_on_a_branch_runs_the_whole_branch_again() -> None:
    flaky = Flaky(failures=1)
    branch = Step.branch_on(
        lambda o, c: "a",
        {"a": Step.from_callable(flaky, name="flaky")},
        max_retries=1,
    )
    result = await _run(branch, "v")

    assert result.success, result.feedback
    (branched,) = result.step_history
    assert branched.attempts == 2
    assert flaky.calls == 2
    assert _names(branched.step_history) == ["flaky"]  # the last attempt's nested results


async def test_without_retries_a_failing_branch_fails_after_one_attempt() -> None:
    flaky = Flaky(failures=1)
    branch = Step.branch_on(lambda o, c: "a", {"a": Step.from_callable(flaky, name="flaky")})
    result = await _run(branch, "v")
    assert not result.success
    assert result.step_history[0].attempts == 1 and flaky.calls == 1


async def test_a_retried_loop_starts_again_from_its_input() -> None:
    calls = Calls()
    flaky = Flaky(failures=1)

    def body(x: int) -> int:
        calls.inputs.setdefault("body", []).append(x)
        out: int = flaky(x)
        return out + 1

    loop = Step.loop_until(
        Step.from_callable(body, name="body"), lambda o, c: o >= 2, max_loops=5, max_retries=2
    )
    result = await _run(loop, 0)

    assert result.success, result.feedback
    assert result.output == 2
    assert calls.of("body") == [0, 0, 1]
    assert result.step_history[0].attempts == 2


async def test_validators_check_a_loops_output() -> None:
    def small(output: int) -> ValidationResult:
        return ValidationResult(output < 3, f"{output} is not below 3")

    calls = Calls()
    rejected = Step.loop_until(
        calls.step("inc", _inc), lambda o, c: o >= 3, max_loops=5, validators=[small]
    )
    result = await _run(rejected >> calls.step("after"), 0)

    assert not result.success
    feedback = result.step_history[0].feedback or ""
    assert "ValidationFailedError" in feedback and "3 is not below 3" in feedback
    assert "'loop'" in feedback
    assert calls.of("after") == []

    accepted = Step.loop_until(
        Step.from_callable(_inc, name="inc"), lambda o, c: o >= 2, max_loops=5, validators=[small]
    )
    assert (await _run(accepted, 0)).output == 2


async def test_a_rejected_loop_output_is_retried_with_max_retries() -> None:
    runs = {"n": 0}

    def first_run_only_fails(output: int) -> bool:
        runs["n"] += 1
        return runs["n"] > 1

    calls = Calls()
    loop = Step.loop_until(
        calls.step("inc", _inc),
        lambda o, c: o >= 2,
        max_loops=5,
        validators=[first_run_only_fails],
        max_retries=1,
    )
    result = await _run(loop, 0)
    assert result.success, result.feedback
    assert calls.of("inc") == [0, 1, 0, 1]
    assert result.step_history[0].attempts == 2


async def test_a_cached_branch_is_a_hit_the_second_time_and_its_steps_do_not_run() -> None:
    calls = Calls()
    branch = Step.branch_on(
        lambda o, c: "a",
        {"a": calls.step("expensive", lambda x: x * 2) >> calls.step("more", _inc)},
        cache=True,
    )
    runner = Flujo(branch, context_model=Ctx, persist_state=False)

    first = await runner.run_async(10)
    second = await runner.run_async(10)
    other = await runner.run_async(11)

    assert first.output == second.output == 21
    assert other.output == 23
    assert calls.of("expensive") == [10, 11]
    assert calls.of("more") == [20, 22]
    assert first.step_history[0].cache_hit is False
    assert second.step_history[0].cache_hit is True
    assert other.step_history[0].cache_hit is False


async def test_a_failing_loop_falls_back() -> None:
    calls = Calls()
    loop = Step.loop_until(
        calls.step("inc", _inc), lambda o, c: False, max_loops=2, name="refine"
    ).fallback(calls.step("give-up", lambda x: f"fallback for {x}"))
    result = await _run(loop >> calls.step("after"), 0)

    assert result.success, result.feedback
    (looped, _) = result.step_history
    assert looped.fallback == "give-up"
    assert looped.output == "fallback for 0"  # the fallback gets the loop's own input
    assert "max_loops=2" in (looped.feedback or "")
    assert calls.of("after") == ["fallback for 0"]


async def test_timeout_stops_a_loop_of_async_steps() -> None:
    calls = Calls()

    async def slow(x: int) -> int:
        calls.inputs.setdefault("slow", []).append(x)
        await asyncio.sleep(0.02)
        return x + 1

    loop = Step.loop_until(
        Step.from_callable(slow, name="slow"), lambda o, c: False, max_loops=100, timeout_s=0.1
    )
    started = time.perf_counter()
    result = await _run(loop, 0)
    elapsed = time.perf_counter() - started

    assert not result.success
    assert "StepTimeoutError" in (result.feedback or "")
    assert "timeout_s=0.1" in (result.feedback or "")
    assert elapsed < 1.0
    assert len(calls.of("slow")) < 100


async def test_timeout_stops_a_loop_of_sync_steps() -> None:
    # A sync body runs inline, but the loop must still stop once its time is up.
    calls = Calls()

    def slow(x: int) -> int:
        calls.inputs.setdefault("slow", []).append(x)
        time.sleep(0.02)
        return x + 1

    loop = Step.loop_until(
        Step.from_callable(slow, name="slow"),
        lambda o, c: False,
        max_loops=25,
        on_max_loops="return",
        timeout_s=0.1,
    )
    result = await _run(loop, 0)

    assert not result.success, "a loop with timeout_s=0.1 ran 0.5 s and succeeded"
    assert "StepTimeoutError" in (result.feedback or "")
    assert len(calls.of("slow")) < 25


# --- telemetry and usage -------------------------------------------------------------------


async def test_nested_steps_get_their_own_spans() -> None:
    telemetry = RecordingTelemetry()
    loop = Step.loop_until(Step.from_callable(_inc, name="inc"), lambda o, c: o >= 2, max_loops=5)
    branch = Step.branch_on(lambda o, c: "a", {"a": loop}, name="route")
    runner = Flujo(branch, context_model=Ctx, persist_state=False)
    runner.container.telemetry.override(providers.Object(telemetry))

    result = await runner.run_async(0)

    assert result.success, result.feedback
    names = telemetry.step_names
    assert sorted(names) == ["inc", "inc", "loop", "route"]
    assert names.index("route") < names.index("loop") < names.index("inc")
    assert all(span.ended for span in telemetry.spans)


async def test_nested_costs_sum_into_the_construct_and_the_run() -> None:
    def spend(cost: float, tokens: int) -> Any:
        def fn(x: int) -> StepOutput[int]:
            return StepOutput(x + 1, cost_usd=cost, tokens=tokens)

        return fn

    loop = Step.loop_until(
        Step.from_callable(spend(0.1, 10), name="think"), lambda o, c: o >= 3, max_loops=5
    )
    branch = Step.branch_on(
        lambda o, c: "a",
        {"a": Step.from_callable(spend(0.25, 5), name="a1") >> Step.from_callable(_inc, name="a2")},
    )
    result = await _run(loop >> branch, 0)

    assert result.success, result.feedback
    looped, branched = result.step_history
    assert looped.cost_usd == pytest.approx(0.3) and looped.token_counts == 30
    assert branched.cost_usd == pytest.approx(0.25) and branched.token_counts == 5
    assert result.total_cost_usd == pytest.approx(0.55)
    assert result.total_tokens == 35


async def test_every_attempt_of_a_retried_loop_counts_toward_its_cost() -> None:
    attempts = {"n": 0}

    def body(x: int) -> StepOutput[int]:
        attempts["n"] += 1
        if attempts["n"] == 2:
            raise ConnectionError("dropped")
        return StepOutput(x + 1, cost_usd=0.5, tokens=1)

    loop = Step.loop_until(
        Step.from_callable(body, name="body"), lambda o, c: o >= 2, max_loops=5, max_retries=1
    )
    result = await _run(loop, 0)
    assert result.success, result.feedback
    # Attempt 1: one paid iteration, then a failure; attempt 2: two paid iterations.
    assert result.step_history[0].cost_usd == pytest.approx(1.5)
    assert result.total_cost_usd == pytest.approx(1.5)
    assert result.total_tokens == 3


async def test_run_usage_limits_stop_the_run_after_the_construct() -> None:
    calls = Calls()

    def paid(x: int) -> StepOutput[int]:
        return StepOutput(x + 1, cost_usd=0.3)

    loop = Step.loop_until(Step.from_callable(paid, name="paid"), lambda o, c: o >= 3, max_loops=5)
    result = await _run(
        loop >> calls.step("after"), 0, usage_limits=UsageLimits(total_cost_usd_limit=0.5)
    )

    assert not result.success and result.status == "failed"
    assert result.error is not None and "UsageLimitExceededError" in result.error
    assert result.total_cost_usd == pytest.approx(0.9)
    assert calls.of("after") == []


async def test_a_timed_out_loop_still_reports_what_its_iterations_spent() -> None:
    async def paid(x: int) -> StepOutput[int]:
        await asyncio.sleep(0.03)
        return StepOutput(x + 1, cost_usd=0.1, tokens=2)

    loop = Step.loop_until(
        Step.from_callable(paid, name="paid"), lambda o, c: False, max_loops=50, timeout_s=0.1
    )
    result = await _run(loop, 0)

    assert not result.success
    (timed_out,) = result.step_history
    assert "StepTimeoutError" in (timed_out.feedback or "")
    finished = [r for r in timed_out.step_history if r.name == "paid" and r.success]
    assert len(finished) >= 2, "the iterations that finished before the timeout are not recorded"
    assert timed_out.cost_usd == pytest.approx(0.1 * len(finished))
    assert result.total_cost_usd == pytest.approx(timed_out.cost_usd)
    assert result.total_tokens == 2 * len(finished)


async def test_an_exit_condition_that_raises_keeps_what_the_loop_spent() -> None:
    def paid(x: int) -> StepOutput[int]:
        return StepOutput(x + 1, cost_usd=0.25, tokens=5)

    def judge(output: int, context: Any) -> bool:
        if output >= 2:
            raise ConnectionError("judge unavailable")
        return False

    loop = Step.loop_until(Step.from_callable(paid, name="paid"), judge, max_loops=5)
    result = await _run(loop, 0, usage_limits=UsageLimits(total_cost_usd_limit=10.0))

    assert not result.success
    (failed,) = result.step_history
    assert "judge unavailable" in (failed.feedback or "")
    assert _names(failed.step_history) == ["paid", "paid"]
    assert failed.cost_usd == pytest.approx(0.5) and failed.token_counts == 10
    assert result.total_cost_usd == pytest.approx(0.5)
