"""Retries with exponential backoff and jitter, per-attempt timeouts, and fallback steps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dependency_injector import providers

from flujo import ConfigurationError, Flujo, Step, StepOutput
from flujo.application.core.executor_core import ExecutorCore
from flujo.domain.events import HookEvent, StepFailed, StepFinished
from flujo.domain.policies import ValidationResult
from tests.helpers import Flaky, RecordingTelemetry

GUARD = 2.0  # a test fails instead of hanging if execute never returns
TIMEOUT = 0.05


class SleepRecorder:
    """Stands in for ``asyncio.sleep``: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _executor(sleep: SleepRecorder, random_value: float = 0.5) -> ExecutorCore:
    return ExecutorCore(
        sleep=sleep, random_source=lambda: random_value, telemetry=RecordingTelemetry()
    )


async def _execute(executor: ExecutorCore, s: Step[Any, Any], data: Any) -> Any:
    return await asyncio.wait_for(executor.execute(s, data), GUARD)


def _always_fails(x: Any) -> Any:
    raise ValueError(f"primary broke on {x!r}")


# --- backoff -----------------------------------------------------------------------------


async def test_exponential_backoff_without_jitter_gives_exact_delays() -> None:
    sleep = SleepRecorder()
    flaky = Flaky(failures=10)
    s = Step.from_callable(flaky, name="s", max_retries=3, backoff_s=0.1, jitter=False)
    result = await _execute(_executor(sleep), s, 1)
    assert result.success is False
    assert result.attempts == 4 and flaky.calls == 4
    # one sleep between attempts, none after the last one
    assert sleep.delays == pytest.approx([0.1, 0.2, 0.4])


async def test_backoff_factor_and_cap_apply() -> None:
    sleep = SleepRecorder()
    s = Step.from_callable(
        Flaky(failures=10),
        name="s",
        max_retries=5,
        backoff_s=1.0,
        backoff_factor=3,
        max_backoff_s=10.0,
        jitter=False,
    )
    await _execute(_executor(sleep), s, 1)
    assert sleep.delays == pytest.approx([1.0, 3.0, 9.0, 10.0, 10.0])


async def test_jitter_scales_each_delay_by_the_random_source() -> None:
    sleep = SleepRecorder()
    s = Step.from_callable(Flaky(failures=10), name="s", max_retries=3, backoff_s=0.1)
    await _execute(_executor(sleep, random_value=0.5), s, 1)
    assert sleep.delays == pytest.approx([0.05, 0.1, 0.2])


async def test_jittered_delays_stay_within_the_exponential_bound() -> None:
    draws = iter([0.1, 0.99, 0.3])
    sleep = SleepRecorder()
    executor = ExecutorCore(sleep=sleep, random_source=lambda: next(draws))
    s = Step.from_callable(Flaky(failures=10), name="s", max_retries=3, backoff_s=1.0)
    await _execute(executor, s, 1)
    assert sleep.delays == pytest.approx([0.1, 1.98, 1.2])
    for retry, delay in enumerate(sleep.delays, start=1):
        assert 0.0 <= delay <= 2 ** (retry - 1)


async def test_no_sleep_before_a_retry_that_is_not_needed() -> None:
    sleep = SleepRecorder()
    flaky = Flaky(failures=1)
    s = Step.from_callable(flaky, name="s", max_retries=5, backoff_s=0.1, jitter=False)
    result = await _execute(_executor(sleep), s, "ok")
    assert result.success and result.attempts == 2
    assert sleep.delays == [0.1]


async def test_zero_backoff_never_sleeps() -> None:
    sleep = SleepRecorder()
    result = await _execute(_executor(sleep), Step.from_callable(Flaky(2), max_retries=2), 1)
    assert result.success and sleep.delays == []


@pytest.mark.parametrize(
    "policy",
    [
        {},  # plain: the first attempt takes the fast path
        {"validators": [lambda out: True]},  # the policy path from the first attempt
        {"timeout_s": 1.0},  # a guarded attempt
    ],
    ids=["plain", "validated", "timeout"],
)
async def test_backoff_is_the_same_on_every_path(policy: dict[str, Any]) -> None:
    sleep = SleepRecorder()
    flaky = Flaky(failures=2)
    s = Step.from_callable(flaky, name="s", max_retries=2, backoff_s=0.01, jitter=False, **policy)
    result = await _execute(_executor(sleep), s, "v")
    assert result.success, result.feedback
    assert (result.attempts, result.output, flaky.calls) == (3, "v", 3)
    assert sleep.delays == pytest.approx([0.01, 0.02])


async def test_retries_happen_through_the_runner() -> None:
    flaky = Flaky(failures=2)
    s = Step.from_callable(flaky, name="s", max_retries=2, backoff_s=0.001)
    result = await Flujo(s, persist_state=False).run_async("x")
    assert result.success and result.output == "x"
    assert result.step_history[0].attempts == 3
    assert flaky.calls == 3


async def test_a_runner_uses_a_sleep_given_through_the_container() -> None:
    sleep = SleepRecorder()
    s = Step.from_callable(Flaky(failures=2), name="s", max_retries=2, backoff_s=5, jitter=False)
    runner = Flujo(s, persist_state=False)
    runner.container.executor.override(
        providers.Factory(ExecutorCore, sleep=sleep, random_source=lambda: 0.5)
    )
    result = await asyncio.wait_for(runner.run_async(1), GUARD)
    assert result.success
    assert sleep.delays == [5, 10]


async def test_each_retry_span_is_recorded() -> None:
    telemetry = RecordingTelemetry()
    executor = ExecutorCore(sleep=SleepRecorder(), telemetry=telemetry)
    s = Step.from_callable(Flaky(failures=2), name="s", max_retries=2)
    await _execute(executor, s, 1)
    assert [sp.attributes["flujo.attempt"] for sp in telemetry.spans] == [1, 2, 3]
    assert [len(sp.exceptions) for sp in telemetry.spans] == [1, 1, 0]
    assert all(sp.ended for sp in telemetry.spans)


# --- per-attempt timeout -----------------------------------------------------------------


async def test_timed_out_attempts_are_retried_until_one_finishes() -> None:
    calls = 0

    async def slow_twice(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls <= 2:
            await asyncio.sleep(10)
        return x * 10

    sleep = SleepRecorder()
    s = Step.from_callable(
        slow_twice, timeout_s=TIMEOUT, max_retries=2, backoff_s=0.01, jitter=False
    )
    result = await _execute(_executor(sleep), s, 4)
    assert result.success, result.feedback
    assert (result.output, result.attempts, calls) == (40, 3, 3)
    assert sleep.delays == pytest.approx([0.01, 0.02])
    assert result.latency_s < 1.0


async def test_every_attempt_timing_out_fails_with_step_timeout_error() -> None:
    async def stuck(x: int) -> int:
        await asyncio.sleep(10)
        return x

    s = Step.from_callable(stuck, name="stuck", timeout_s=TIMEOUT, max_retries=1)
    result = await _execute(_executor(SleepRecorder()), s, 1)
    assert result.success is False
    assert result.attempts == 2
    assert result.feedback is not None
    assert "StepTimeoutError" in result.feedback and "stuck" in result.feedback
    assert result.latency_s < 1.0


# --- fallbacks ---------------------------------------------------------------------------


def _backup(tag: str = "backup") -> Step[Any, Any]:
    return Step.from_callable(lambda x: f"{tag}:{x}", name=tag)


async def test_fallback_runs_when_every_attempt_failed_and_is_recorded() -> None:
    sleep = SleepRecorder()
    primary = Step.from_callable(_always_fails, name="primary", max_retries=2).fallback(_backup())
    result = await _execute(_executor(sleep), primary, "in")
    assert result.success is True
    assert result.name == "primary"
    assert result.output == "backup:in"  # the fallback got the same input
    assert result.fallback == "backup"
    assert result.attempts == 3 + 1
    assert result.feedback is not None
    assert "ValueError" in result.feedback and "primary broke on 'in'" in result.feedback
    assert "'backup'" in result.feedback


async def test_fallback_gets_the_original_input_not_the_processed_one() -> None:
    primary = Step.from_callable(
        _always_fails, name="primary", input_processors=[lambda x: x.upper()]
    ).fallback(_backup())
    result = await _execute(_executor(SleepRecorder()), primary, "in")
    assert result.output == "backup:in"


async def test_fallback_does_not_run_when_the_step_succeeds() -> None:
    ran: list[Any] = []
    backup = Step.from_callable(lambda x: ran.append(x), name="backup")
    primary = Step.from_callable(Flaky(failures=1), name="primary", max_retries=1)
    result = await _execute(_executor(SleepRecorder()), primary.fallback(backup), 1)
    assert result.success and result.fallback is None and result.feedback is None
    assert ran == []


async def test_fallback_failing_too_fails_the_step_naming_both_errors() -> None:
    def backup_fails(x: Any) -> Any:
        raise KeyError("backup broke")

    primary = Step.from_callable(_always_fails, name="primary", max_retries=1).fallback(
        Step.from_callable(backup_fails, name="backup", max_retries=1)
    )
    result = await _execute(_executor(SleepRecorder()), primary, "in")
    assert result.success is False
    assert result.output is None
    assert result.fallback is None
    assert result.attempts == 2 + 2
    assert result.feedback is not None
    assert "primary broke" in result.feedback
    assert "backup broke" in result.feedback and "failed too" in result.feedback


async def test_fallback_of_a_fallback() -> None:
    second = Step.from_callable(_always_fails, name="second").fallback(_backup("third"))
    primary = Step.from_callable(_always_fails, name="first").fallback(second)
    result = await _execute(_executor(SleepRecorder()), primary, 1)
    assert result.success
    assert result.output == "third:1"
    assert result.fallback == "third"  # the step whose output was used
    assert result.attempts == 3


async def test_fallback_cost_is_counted() -> None:
    backup = Step.from_callable(lambda x: StepOutput(x, cost_usd=0.25, tokens=5), name="backup")
    primary = Step.from_callable(_always_fails, name="primary").fallback(backup)
    executor = _executor(SleepRecorder())
    result = await _execute(executor, primary, 1)
    assert (result.cost_usd, result.token_counts) == (0.25, 5)
    assert executor.usage_meter.totals() == (0.25, 5)


async def test_fallback_runs_after_validation_failures() -> None:
    primary = Step.from_callable(
        lambda x: x,
        name="primary",
        max_retries=1,
        validators=[lambda out: ValidationResult(False, "never good enough")],
    ).fallback(_backup())
    result = await _execute(_executor(SleepRecorder()), primary, 1)
    assert result.success and result.fallback == "backup"
    assert result.feedback is not None and "never good enough" in result.feedback


async def test_fallback_through_the_runner_is_a_successful_step() -> None:
    events: list[HookEvent] = []
    primary = Step.from_callable(_always_fails, name="primary").fallback(_backup())
    pipeline = primary >> Step.from_callable(lambda x: x + "!", name="after")
    result = await Flujo(pipeline, hooks=[events.append], persist_state=False).run_async("in")
    assert result.success and result.output == "backup:in!"
    assert result.step_history[0].fallback == "backup"
    assert not any(isinstance(e, StepFailed) for e in events)
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert finished[0].result.fallback == "backup"


async def test_the_stored_step_record_keeps_the_fallback_name() -> None:
    primary = Step.from_callable(_always_fails, name="primary").fallback(_backup())
    async with Flujo(primary) as runner:
        result = await runner.run_async("in")
        stored = await runner.get_run(result.run_id)
    assert result.step_history[0].fallback == "backup"
    assert stored.step_history[0].fallback == "backup"


# --- fallback configuration errors -------------------------------------------------------


def test_fallback_returns_the_step_itself() -> None:
    primary = Step.from_callable(_always_fails, name="primary")
    backup = _backup()
    assert primary.fallback(backup) is primary
    assert primary.fallback_step is backup


def test_fallback_cycle_is_a_configuration_error() -> None:
    a = Step.from_callable(_always_fails, name="a")
    b = Step.from_callable(_always_fails, name="b")
    c = Step.from_callable(_always_fails, name="c")
    a.fallback(b)
    b.fallback(c)
    with pytest.raises(ConfigurationError, match="cycle"):
        c.fallback(a)
    assert c.fallback_step is None  # the rejected fallback was not installed


def test_a_step_cannot_be_its_own_fallback() -> None:
    a = Step.from_callable(_always_fails, name="a")
    with pytest.raises(ConfigurationError, match="cycle"):
        a.fallback(a)


@pytest.mark.parametrize("other", [lambda x: x, "backup", None])
def test_a_fallback_must_be_a_step(other: Any) -> None:
    with pytest.raises(ConfigurationError, match="fallback must be a Step"):
        Step.from_callable(_always_fails, name="a").fallback(other)
