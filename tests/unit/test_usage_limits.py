"""Cost and tokens: StepOutput, run totals, run and step UsageLimits, custom backends, resume."""

from __future__ import annotations

from typing import Any

import pytest

from flujo import Flujo, Step, StepOutput, StepResult, UsageLimits
from flujo.infra.state.memory import InMemoryBackend


class Spend:
    """A step body that returns its input + 1 and reports a fixed cost; counts its calls."""

    def __init__(self, cost_usd: float = 0.0, tokens: int = 0) -> None:
        self.cost_usd = cost_usd
        self.tokens = tokens
        self.calls = 0

    def __call__(self, x: int) -> StepOutput[int]:
        self.calls += 1
        return StepOutput(x + 1, cost_usd=self.cost_usd, tokens=self.tokens)


def _step(body: Any, name: str, **options: Any) -> Step[Any, Any]:
    # Typed loosely: a StepOutput-returning callable makes a Step[int, StepOutput[int]] for
    # mypy, though the runner hands the next step the unwrapped value.
    return Step.from_callable(body, name=name, **options)


def _pipeline(*bodies: Spend) -> Any:
    steps = [Step.from_callable(body, name=f"s{i}") for i, body in enumerate(bodies)]
    pipeline: Any = steps[0]
    for s in steps[1:]:
        pipeline = pipeline >> s
    return pipeline


# --- StepOutput and totals ---------------------------------------------------------------


async def test_step_output_is_unwrapped_and_totalled_per_run() -> None:
    runner = Flujo(_pipeline(Spend(0.25, 10), Spend(0.5, 20), Spend()), persist_state=False)
    result = await runner.run_async(0)
    assert result.success
    assert result.output == 3  # values, not StepOutput wrappers, flow between steps
    assert [(r.cost_usd, r.token_counts) for r in result.step_history] == [
        (0.25, 10),
        (0.5, 20),
        (0.0, 0),
    ]
    assert result.total_cost_usd == pytest.approx(0.75)
    assert result.total_tokens == 30


async def test_async_steps_report_usage_too() -> None:
    async def priced(x: int) -> StepOutput[int]:
        return StepOutput(x, cost_usd=0.1, tokens=3)

    result = await Flujo(Step.from_callable(priced), persist_state=False).run_async(1)
    assert (result.total_cost_usd, result.total_tokens) == (0.1, 3)


async def test_totals_belong_to_one_run() -> None:
    runner = Flujo(_pipeline(Spend(0.5, 5)), persist_state=False)
    await runner.run_async(0)
    second = await runner.run_async(0)
    assert (second.total_cost_usd, second.total_tokens) == (0.5, 5)


# --- run limits --------------------------------------------------------------------------


async def test_cost_limit_stops_the_run_after_the_step_that_crossed_it() -> None:
    bodies = [Spend(0.4), Spend(0.4), Spend(0.4), Spend(0.4)]
    runner = Flujo(
        _pipeline(*bodies), usage_limits=UsageLimits(total_cost_usd_limit=1.0), persist_state=False
    )
    result = await runner.run_async(0)
    assert result.success is False and result.status == "failed"
    assert [b.calls for b in bodies] == [1, 1, 1, 0]
    assert [r.name for r in result.step_history] == ["s0", "s1", "s2"]  # the partial result
    assert all(r.success for r in result.step_history)
    assert result.total_cost_usd == pytest.approx(1.2)
    assert result.error is not None
    assert result.error.startswith("UsageLimitExceededError")
    assert "1.000000" in result.error and "limit" in result.error


async def test_token_limit_stops_the_run_and_names_the_limit() -> None:
    bodies = [Spend(tokens=60), Spend(tokens=60), Spend(tokens=60)]
    runner = Flujo(
        _pipeline(*bodies), usage_limits=UsageLimits(total_tokens_limit=100), persist_state=False
    )
    result = await runner.run_async(0)
    assert result.success is False
    assert [b.calls for b in bodies] == [1, 1, 0]
    assert result.total_tokens == 120
    assert result.error is not None
    assert "UsageLimitExceededError" in result.error
    assert "120 tokens" in result.error and "100" in result.error


@pytest.mark.parametrize("limit", [0.05, 0.3, 0.55, 0.95, 1.45])
async def test_never_more_than_one_step_past_the_limit(limit: float) -> None:
    bodies = [Spend(0.25) for _ in range(6)]
    runner = Flujo(
        _pipeline(*bodies),
        usage_limits=UsageLimits(total_cost_usd_limit=limit),
        persist_state=False,
    )
    result = await runner.run_async(0)
    assert result.success is False
    costs = [r.cost_usd for r in result.step_history]
    assert sum(costs[:-1]) <= limit < sum(costs)  # the last step run is the one that crossed it
    assert sum(b.calls for b in bodies) == len(result.step_history)


async def test_spending_exactly_the_limit_is_allowed() -> None:
    runner = Flujo(
        _pipeline(Spend(0.5, 5), Spend(0.5, 5)),
        usage_limits=UsageLimits(total_cost_usd_limit=1.0, total_tokens_limit=10),
        persist_state=False,
    )
    result = await runner.run_async(0)
    assert result.success, result.error
    assert result.error is None


async def test_limits_reached_by_a_failed_run_are_checkpointed_as_failed() -> None:
    backend = InMemoryBackend()
    runner = Flujo(
        _pipeline(Spend(2.0), Spend()),
        usage_limits=UsageLimits(total_cost_usd_limit=1.0),
        state_backend=backend,
    )
    result = await runner.run_async(0)
    stored = await runner.get_run(result.run_id)
    assert stored.status == "failed"
    assert stored.error is not None and "UsageLimitExceededError" in stored.error
    assert [r.name for r in stored.step_history] == ["s0"]


async def test_the_cost_of_rejected_attempts_counts_toward_the_limit() -> None:
    # The first answer cost money even though a validator rejected it; a budget that ignores
    # it would be passed silently.
    calls = 0

    def answer(x: int) -> StepOutput[str]:
        nonlocal calls
        calls += 1
        return StepOutput("draft" if calls == 1 else "final", cost_usd=1.0, tokens=100)

    s = Step.from_callable(
        answer, name="answer", max_retries=1, validators=[lambda out: out == "final"]
    )
    after = Spend()
    runner = Flujo(
        s
        >> Step.from_callable(lambda x: 0, name="zero")
        >> Step.from_callable(after, name="after"),
        usage_limits=UsageLimits(total_cost_usd_limit=1.5),
        persist_state=False,
    )
    result = await runner.run_async(0)
    assert result.step_history[0].attempts == 2
    assert result.step_history[0].cost_usd == pytest.approx(2.0)
    assert result.step_history[0].token_counts == 200
    assert result.success is False and after.calls == 0


# --- step limits -------------------------------------------------------------------------


async def test_a_step_over_its_own_limit_fails_that_step() -> None:
    greedy: Step[Any, Any] = Step.from_callable(
        Spend(tokens=50), name="greedy", usage_limits=UsageLimits(total_tokens_limit=10)
    )
    after = Spend()
    result = await Flujo(
        greedy >> Step.from_callable(after, name="after"), persist_state=False
    ).run_async(0)
    assert result.success is False
    assert after.calls == 0
    (failed,) = result.step_history
    assert failed.success is False
    assert failed.feedback is not None
    assert "UsageLimitExceededError" in failed.feedback
    assert "'greedy'" in failed.feedback and "50 tokens" in failed.feedback


async def test_a_step_within_its_own_limit_succeeds() -> None:
    s = Step.from_callable(
        Spend(0.1, 5), name="s", usage_limits=UsageLimits(total_cost_usd_limit=0.2)
    )
    result = await Flujo(s, persist_state=False).run_async(0)
    assert result.success and result.total_cost_usd == pytest.approx(0.1)


async def test_a_step_over_its_own_limit_still_reports_what_it_spent() -> None:
    greedy = Step.from_callable(
        Spend(0.75, 50), name="greedy", usage_limits=UsageLimits(total_tokens_limit=10)
    )
    result = await Flujo(greedy, persist_state=False).run_async(0)
    assert result.success is False
    assert (result.step_history[0].cost_usd, result.step_history[0].token_counts) == (0.75, 50)
    assert (result.total_cost_usd, result.total_tokens) == (0.75, 50)


async def test_a_step_limit_rejection_can_be_rescued_by_a_fallback() -> None:
    cheap = Step.from_callable(Spend(0.01, 1), name="cheap")
    greedy = Step.from_callable(
        Spend(5.0), name="greedy", usage_limits=UsageLimits(total_cost_usd_limit=1.0)
    ).fallback(cheap)
    result = await Flujo(greedy, persist_state=False).run_async(0)
    assert result.success
    assert result.step_history[0].fallback == "cheap"
    assert result.step_history[0].feedback is not None
    assert "UsageLimitExceededError" in result.step_history[0].feedback


async def test_a_fallback_result_also_counts_what_the_failed_step_spent() -> None:
    # The primary's rejected output was paid for, whoever produced the final output.
    greedy = _step(
        Spend(5.0, 50), "greedy", usage_limits=UsageLimits(total_cost_usd_limit=1.0)
    ).fallback(_step(Spend(0.01, 1), "cheap"))
    result = await Flujo(greedy, persist_state=False).run_async(0)
    assert result.success and result.step_history[0].fallback == "cheap"
    assert result.step_history[0].cost_usd == pytest.approx(5.01)
    assert result.step_history[0].token_counts == 51
    assert result.total_cost_usd == pytest.approx(5.01)
    assert result.total_tokens == 51


# --- a custom execution backend ----------------------------------------------------------


class PricedBackend:
    """An ExecutionBackend that never calls the step: each step "costs" 0.3 and 7 tokens."""

    def __init__(self) -> None:
        self.executed: list[str] = []

    async def execute_step(
        self, step: Step[Any, Any], data: Any, *, context: Any, resources: Any
    ) -> StepResult:
        self.executed.append(step.name)
        return StepResult(name=step.name, output=data, cost_usd=0.3, token_counts=7)


async def test_limits_apply_to_results_from_a_custom_backend() -> None:
    backend = PricedBackend()
    pipeline = _pipeline(Spend(), Spend(), Spend(), Spend())
    runner = Flujo(
        pipeline,
        backend=backend,
        usage_limits=UsageLimits(total_tokens_limit=20),
        persist_state=False,
    )
    result = await runner.run_async(0)
    assert backend.executed == ["s0", "s1", "s2"]
    assert result.total_tokens == 21
    assert result.total_cost_usd == pytest.approx(0.9)
    assert result.success is False
    assert result.error is not None and "UsageLimitExceededError" in result.error


# --- resumed runs ------------------------------------------------------------------------


async def test_a_resumed_run_counts_the_cost_of_earlier_steps() -> None:
    first, last = Spend(0.6, 6), Spend(0.6, 6)
    pipeline: Any = (
        _step(first, "first")
        >> Step.human_in_the_loop("go on?", name="approve")
        >> _step(lambda x: 0, "reset")
        >> _step(last, "last")
        >> _step(Spend(), "never")
    )
    runner = Flujo(
        pipeline,
        usage_limits=UsageLimits(total_cost_usd_limit=1.0),
        state_backend=InMemoryBackend(),
    )
    paused = await runner.run_async(0)
    assert paused.status == "paused"
    assert paused.total_cost_usd == pytest.approx(0.6)

    resumed = await runner.resume_async(paused, human_input=0)
    assert (first.calls, last.calls) == (1, 1)
    assert resumed.total_cost_usd == pytest.approx(1.2)
    assert resumed.total_tokens == 12
    assert resumed.success is False
    assert resumed.error is not None and "UsageLimitExceededError" in resumed.error
    assert [r.name for r in resumed.step_history] == ["first", "approve", "reset", "last"]


async def test_a_resumed_run_within_the_limit_completes_with_full_totals() -> None:
    pipeline: Any = (
        _step(Spend(0.2, 2), "first")
        >> Step.human_in_the_loop("go on?", name="approve")
        >> _step(Spend(0.2, 2), "last")
    )
    runner = Flujo(
        pipeline, usage_limits=UsageLimits(total_tokens_limit=10), state_backend=InMemoryBackend()
    )
    paused = await runner.run_async(0)
    resumed = await runner.resume_async(paused.run_id, human_input=5)
    assert resumed.success, resumed.error
    assert resumed.output == 6
    assert resumed.total_cost_usd == pytest.approx(0.4)
    assert resumed.total_tokens == 4
