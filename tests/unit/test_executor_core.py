"""ExecutorCore: one step with retries, timeout, usage and failures turned into results."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from flujo import PipelineContext, Step, StepOutput, StepResult
from flujo.application.core.executor_core import ExecutorCore
from tests.helpers import DictCache, Flaky, RecordingTelemetry

# Long enough to be sure a step is stuck, short enough to keep the file fast.
TIMEOUT = 0.05
GUARD = 2.0  # a test fails instead of hanging if execute never returns


class Ctx(PipelineContext):
    count: int = 0


async def _execute(executor: ExecutorCore, s: Step[Any, Any], data: Any, **kw: Any) -> StepResult:
    return await asyncio.wait_for(executor.execute(s, data, **kw), GUARD)


# --- construction ------------------------------------------------------------------------


async def test_executor_core_works_without_arguments() -> None:
    executor = ExecutorCore()
    for part in ("serializer", "hasher", "cache_backend", "telemetry", "usage_meter"):
        assert getattr(executor, part) is not None, part
    assert dict(executor.state_providers) == {}
    result = await executor.execute(Step.from_callable(lambda x: x + 1, name="inc"), 1)
    assert isinstance(result, StepResult)
    assert result.success and result.output == 2


def test_default_usage_meters_are_not_shared() -> None:
    a, b = ExecutorCore(), ExecutorCore()
    a.usage_meter.add(1.0, 5)
    assert b.usage_meter.totals() == (0.0, 0)


async def test_injected_parts_are_used() -> None:
    telemetry, cache = RecordingTelemetry(), DictCache()
    executor = ExecutorCore(telemetry=telemetry, cache_backend=cache)
    assert executor.telemetry is telemetry
    assert executor.cache_backend is cache
    await executor.execute(Step.from_callable(lambda x: x, name="traced"), 1)
    assert telemetry.step_names == ["traced"]
    assert telemetry.spans[0].ended


async def test_enable_tracing_false_opens_no_span() -> None:
    telemetry = RecordingTelemetry()
    executor = ExecutorCore(telemetry=telemetry, enable_tracing=False)
    result = await executor.execute(Step.from_callable(lambda x: x, name="s"), 1)
    assert result.success
    assert telemetry.spans == []


async def test_a_telemetry_that_records_no_spans_is_given_none() -> None:
    class Silent(RecordingTelemetry):
        records_spans = False

    telemetry = Silent()
    result = await ExecutorCore(telemetry=telemetry).execute(Step.from_callable(lambda x: x), 1)
    assert result.success
    assert telemetry.spans == []


async def test_logging_telemetry_spans_follow_the_loggers_level_at_run_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from flujo.infra.telemetry import LoggingTelemetry

    step = Step.from_callable(lambda x: x, name="logged")
    with caplog.at_level("WARNING", logger="flujo.spans-test"):
        quiet = ExecutorCore(telemetry=LoggingTelemetry("flujo.spans-test"))
        assert not quiet.tracing
        await quiet.execute(step, 1)
    assert caplog.records == []
    with caplog.at_level("DEBUG", logger="flujo.spans-test"):
        loud = ExecutorCore(telemetry=LoggingTelemetry("flujo.spans-test"))
        assert loud.tracing
        await loud.execute(step, 1)
    assert any("logged" in record.getMessage() for record in caplog.records)


# --- a successful step -------------------------------------------------------------------


async def test_execute_with_context_returns_a_step_result() -> None:
    def bump(x: int, *, context: Ctx) -> int:
        context.count += x
        return context.count

    ctx = Ctx(count=1)
    result = await ExecutorCore().execute(Step.from_callable(bump), 2, context=ctx)
    assert result.name == "bump"
    assert result.success is True
    assert result.output == 3
    assert result.attempts == 1
    assert result.feedback is None
    assert result.latency_s >= 0
    assert (result.cost_usd, result.token_counts) == (0.0, 0)
    assert ctx.count == 3


# --- retries -----------------------------------------------------------------------------


async def test_failing_twice_then_succeeding_with_two_retries() -> None:
    flaky = Flaky(failures=2)
    s = Step.from_callable(flaky, name="flaky", max_retries=2)
    result = await _execute(ExecutorCore(), s, "ok")
    assert result.success, result.feedback
    assert result.attempts == 3
    assert result.output == "ok"
    assert flaky.calls == 3


async def test_async_step_retries() -> None:
    calls = 0

    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("transient")
        return x

    result = await _execute(ExecutorCore(), Step.from_callable(flaky, max_retries=1), 4)
    assert result.success, result.feedback
    assert (result.attempts, result.output, calls) == (2, 4, 2)


async def test_exhausting_retries_fails_with_the_last_exception() -> None:
    flaky = Flaky(failures=10, exc=KeyError)
    s = Step.from_callable(flaky, name="flaky", max_retries=2)
    result = await _execute(ExecutorCore(), s, "x")
    assert result.success is False
    assert result.attempts == 3
    assert flaky.calls == 3
    assert result.output is None
    assert result.feedback is not None
    assert "KeyError" in result.feedback
    assert "boom 3" in result.feedback


async def test_no_retries_means_one_attempt() -> None:
    flaky = Flaky(failures=1)
    result = await _execute(ExecutorCore(), Step.from_callable(flaky, name="once"), 1)
    assert result.success is False
    assert result.attempts == 1
    assert flaky.calls == 1
    assert result.feedback == "ValueError: boom 1"


async def test_failure_is_recorded_on_the_span() -> None:
    telemetry = RecordingTelemetry()
    executor = ExecutorCore(telemetry=telemetry)
    result = await executor.execute(Step.from_callable(Flaky(5), name="bad"), 1)
    assert not result.success
    (span,) = telemetry.spans
    assert span.ended
    assert [type(e) for e in span.exceptions] == [ValueError]


# --- timeouts ----------------------------------------------------------------------------


async def test_timeout_on_async_callable() -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(10)
        return x

    s = Step.from_callable(slow, timeout_s=TIMEOUT)
    result = await _execute(ExecutorCore(), s, 1)
    assert result.success is False
    assert result.feedback is not None
    assert "timeout" in result.feedback.lower() or "timed out" in result.feedback.lower()
    assert result.latency_s < 1.0


async def test_timeout_on_sync_callable() -> None:
    release = threading.Event()

    def blocking(x: int) -> int:
        release.wait(5)
        return x

    s = Step.from_callable(blocking, timeout_s=TIMEOUT)
    try:
        result = await _execute(ExecutorCore(), s, 1)
    finally:
        release.set()  # let the worker thread finish so the loop can close promptly
    assert result.success is False
    assert result.feedback is not None
    assert "timeout" in result.feedback.lower() or "timed out" in result.feedback.lower()
    assert result.latency_s < 1.0


async def test_each_attempt_gets_the_timeout_and_is_retried() -> None:
    calls = 0

    async def slow_then_fast(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return x

    s = Step.from_callable(slow_then_fast, timeout_s=TIMEOUT, max_retries=1)
    result = await _execute(ExecutorCore(), s, 8)
    assert result.success, result.feedback
    assert (result.attempts, result.output) == (2, 8)


async def test_steps_within_their_timeout_succeed() -> None:
    async def fast_async(x: int) -> int:
        return x + 1

    def fast_sync(x: int) -> int:
        return x + 2

    executor = ExecutorCore()
    a = await _execute(executor, Step.from_callable(fast_async, timeout_s=1.0), 1)
    b = await _execute(executor, Step.from_callable(fast_sync, timeout_s=1.0), 1)
    assert (a.success, a.output) == (True, 2)
    assert (b.success, b.output) == (True, 3)


# --- StepOutput and usage ----------------------------------------------------------------


async def test_step_output_is_unwrapped_and_metered() -> None:
    def priced(x: str) -> StepOutput[str]:
        return StepOutput(x.upper(), cost_usd=0.25, tokens=12)

    async def priced_async(x: str) -> StepOutput[str]:
        return StepOutput(x + "!", cost_usd=0.5, tokens=3)

    executor = ExecutorCore()
    first = await executor.execute(Step.from_callable(priced), "a")
    assert first.output == "A"
    assert not isinstance(first.output, StepOutput)
    assert (first.cost_usd, first.token_counts) == (0.25, 12)
    second = await executor.execute(Step.from_callable(priced_async), "b")
    assert second.output == "b!"
    assert (second.cost_usd, second.token_counts) == (0.5, 3)
    assert executor.usage_meter.totals() == (0.75, 15)


async def test_step_output_unwrapped_under_a_timeout_too() -> None:
    async def priced(x: int) -> StepOutput[int]:
        return StepOutput(x, cost_usd=0.1, tokens=1)

    executor = ExecutorCore()
    result = await executor.execute(Step.from_callable(priced, timeout_s=1.0), 5)
    assert (result.output, result.cost_usd, result.token_counts) == (5, 0.1, 1)
    assert executor.usage_meter.totals() == (0.1, 1)


async def test_plain_output_adds_no_usage() -> None:
    executor = ExecutorCore()
    await executor.execute(Step.from_callable(lambda x: x, name="free"), 1)
    assert executor.usage_meter.totals() == (0.0, 0)


# --- nothing escapes ---------------------------------------------------------------------


class CustomError(Exception):
    pass


def _raiser(exc: Exception) -> Any:
    def fn(x: Any) -> Any:
        raise exc

    return fn


def _async_raiser(exc: Exception) -> Any:
    async def fn(x: Any) -> Any:
        raise exc

    return fn


def _wrong_arity() -> Step[Any, Any]:
    # A callable that will fail with TypeError when flujo calls it with the input.
    def two_required(x: Any, y: Any) -> Any:
        return x

    return Step.from_callable(two_required, name="s")


class _RaisingAgent:
    async def run(self, data: Any, **kwargs: Any) -> Any:
        raise CustomError("agent failed")


@pytest.mark.parametrize(
    ("make_step", "expected"),
    [
        (lambda: Step.from_callable(_raiser(ValueError("v")), name="s"), "ValueError: v"),
        (lambda: Step.from_callable(_raiser(KeyError("k")), name="s"), "KeyError"),
        (lambda: Step.from_callable(_raiser(ZeroDivisionError("z")), name="s"), "ZeroDivision"),
        (lambda: Step.from_callable(_async_raiser(CustomError("c")), name="s"), "CustomError: c"),
        (
            lambda: Step.from_callable(_raiser(RuntimeError("t")), name="s", run_in_thread=True),
            "RuntimeError: t",
        ),
        (
            lambda: Step.from_callable(_async_raiser(TypeError("to")), name="s", timeout_s=1.0),
            "TypeError: to",
        ),
        (lambda: Step("s", agent=_RaisingAgent()), "CustomError: agent failed"),
        (_wrong_arity, "TypeError"),
    ],
)
async def test_exceptions_never_escape_execute(make_step: Any, expected: str) -> None:
    result = await _execute(ExecutorCore(), make_step(), "data")
    assert result.success is False
    assert result.feedback is not None
    assert expected in result.feedback


async def test_stop_iteration_in_user_code_fails_the_step() -> None:
    # ``next()`` on an exhausted iterator is a common slip; it must fail the step.
    def first_match(items: list[int]) -> int:
        return next(i for i in items if i > 10)

    executor = ExecutorCore()
    inline = await _execute(executor, Step.from_callable(first_match, name="inline"), [1])
    assert inline.success is False
    assert inline.feedback is not None and "StopIteration" in inline.feedback


async def test_stop_iteration_in_a_threaded_step_fails_the_step_without_hanging() -> None:
    def first_match(items: list[int]) -> int:
        return next(i for i in items if i > 10)

    s = Step.from_callable(first_match, name="threaded", run_in_thread=True)
    try:
        result = await asyncio.wait_for(ExecutorCore().execute(s, [1]), 0.5)
    except TimeoutError:
        pytest.fail("execute hung on a StopIteration raised in a worker thread")
    assert result.success is False
    assert result.feedback is not None and "StopIteration" in result.feedback


async def test_exception_with_unprintable_message_does_not_escape() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("cannot render")

    def fails(x: Any) -> Any:
        raise Unprintable()

    result = await _execute(ExecutorCore(), Step.from_callable(fails), 1)
    assert result.success is False
    assert result.feedback is not None and "Unprintable" in result.feedback


async def _doubled(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


def _hands_back_a_coroutine(x: int) -> Any:
    """A sync callable whose output is an awaitable: the step's output is what it gives."""
    return _doubled(x)


class _Awaitable:
    """An awaitable that is neither a coroutine nor of a type a step usually returns."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __await__(self) -> Any:
        yield from asyncio.sleep(0).__await__()
        return self.value


@pytest.mark.parametrize("processed", [False, True])  # the plain call, and the attempt pipeline
async def test_a_sync_step_returning_an_awaitable_gets_what_it_gives_and_plain_values_stay(
    processed: bool,
) -> None:
    def with_config(fn: Any, name: str) -> Step[Any, Any]:
        if processed:
            return Step.from_callable(fn, name=name, output_processors=[lambda out: out])
        return Step.from_callable(fn, name=name)

    core = ExecutorCore()
    coro = await core.execute(with_config(_hands_back_a_coroutine, "coro"), 4)
    other = await core.execute(with_config(lambda x: _Awaitable(x + 1), "awaitable"), 4)
    plain = await core.execute(with_config(lambda x: {"x": x}, "dict"), 4)
    assert (coro.success, coro.output) == (True, 8)
    assert (other.success, other.output) == (True, 5)
    assert (plain.success, plain.output) == (True, {"x": 4})
