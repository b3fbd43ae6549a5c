"""Validators (bool or ValidationResult, sync or async, with context) and processors."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from flujo import Flujo, PipelineContext, Step, ValidationResult
from flujo.application.core.executor_core import ExecutorCore
from tests.helpers import RecordingTelemetry

GUARD = 2.0


class Ctx(PipelineContext):
    minimum: int = 0
    suffix: str = ""
    log: list[str] = Field(default_factory=list)


def _executor() -> ExecutorCore:
    return ExecutorCore(telemetry=RecordingTelemetry())


async def _execute(s: Step[Any, Any], data: Any, context: Any = None) -> Any:
    return await asyncio.wait_for(_executor().execute(s, data, context=context), GUARD)


class Outputs:
    """A step body returning the next of ``outputs`` on each call."""

    def __init__(self, *outputs: Any) -> None:
        self.outputs = list(outputs)
        self.calls = 0

    def __call__(self, data: Any) -> Any:
        self.calls += 1
        return self.outputs[min(self.calls, len(self.outputs)) - 1]


# --- validators --------------------------------------------------------------------------


async def test_a_validator_returning_true_passes() -> None:
    s = Step.from_callable(lambda x: x + 1, name="s", validators=[lambda out: out > 0])
    result = await _execute(s, 1)
    assert result.success and result.output == 2 and result.feedback is None


async def test_a_validator_returning_false_fails_the_step_naming_it() -> None:
    def is_positive(out: int) -> bool:
        return out > 0

    s = Step.from_callable(lambda x: x, name="s", validators=[is_positive])
    result = await _execute(s, -1)
    assert result.success is False
    assert result.output is None
    assert result.feedback is not None
    assert "ValidationFailedError" in result.feedback
    assert "is_positive" in result.feedback and "'s'" in result.feedback


async def test_validation_result_feedback_reaches_the_step_result() -> None:
    def has_title(out: dict[str, Any]) -> ValidationResult:
        if "title" not in out:
            return ValidationResult(False, "the summary has no title")
        return ValidationResult(True)

    s = Step.from_callable(lambda x: x, name="s", validators=[has_title])
    ok = await _execute(s, {"title": "t"})
    bad = await _execute(s, {"body": "b"})
    assert ok.success
    assert bad.success is False
    assert bad.feedback is not None
    assert "has_title" in bad.feedback and "the summary has no title" in bad.feedback


async def test_async_validators_are_awaited() -> None:
    async def slow_check(out: str) -> ValidationResult:
        await asyncio.sleep(0)
        return ValidationResult(out.islower(), "must be lower case")

    s = Step.from_callable(lambda x: x, name="s", validators=[slow_check])
    assert (await _execute(s, "abc")).success
    failed = await _execute(s, "ABC")
    assert failed.success is False
    assert failed.feedback is not None and "must be lower case" in failed.feedback


async def test_a_validator_with_keyword_only_context_receives_the_context() -> None:
    seen: list[Any] = []

    def above_minimum(out: int, *, context: Ctx) -> bool:
        seen.append(context)
        return out >= context.minimum

    s = Step.from_callable(lambda x: x, name="s", validators=[above_minimum])
    ctx = Ctx(minimum=5)
    assert (await _execute(s, 7, ctx)).success
    assert not (await _execute(s, 3, ctx)).success
    assert seen == [ctx, ctx]


async def test_a_failing_validator_is_a_failed_attempt_that_is_retried() -> None:
    body = Outputs("draft", "final")
    s = Step.from_callable(body, name="s", max_retries=2, validators=[lambda out: out == "final"])
    result = await _execute(s, None)
    assert result.success, result.feedback
    assert result.output == "final"
    assert result.attempts == 2 and body.calls == 2


async def test_exhausted_retries_report_the_validator_and_its_feedback() -> None:
    def never(out: Any) -> ValidationResult:
        return ValidationResult(False, "too short")

    body = Outputs("a")
    s = Step.from_callable(body, name="writer", max_retries=2, validators=[never])
    result = await _execute(s, None)
    assert result.success is False
    assert result.attempts == 3 and body.calls == 3
    assert result.feedback is not None
    assert "never" in result.feedback and "too short" in result.feedback
    assert "writer" in result.feedback


async def test_validators_run_in_order_and_stop_at_the_first_failure() -> None:
    ran: list[str] = []

    def first(out: Any) -> bool:
        ran.append("first")
        return False

    def second(out: Any) -> bool:
        ran.append("second")
        return True

    result = await _execute(Step.from_callable(lambda x: x, validators=[first, second]), 1)
    assert not result.success
    assert ran == ["first"]


async def test_validators_see_the_processed_output() -> None:
    seen: list[Any] = []

    def record(out: Any) -> bool:
        seen.append(out)
        return True

    s = Step.from_callable(
        lambda x: x, name="s", output_processors=[str.strip], validators=[record]
    )
    result = await _execute(s, "  padded  ")
    assert seen == ["padded"] and result.output == "padded"


async def test_a_validator_returning_a_non_bool_is_a_configuration_error_not_retried() -> None:
    body = Outputs("x")

    def sloppy(out: Any) -> Any:
        return "yes"  # a truthy string is not a verdict

    s = Step.from_callable(body, name="s", max_retries=3, validators=[sloppy])
    result = await _execute(s, None)
    assert result.success is False
    assert result.attempts == 1 and body.calls == 1
    assert result.feedback is not None
    assert "ConfigurationError" in result.feedback
    assert "sloppy" in result.feedback and "str" in result.feedback


async def test_a_validator_returning_none_is_a_configuration_error() -> None:
    s = Step.from_callable(lambda x: x, name="s", validators=[lambda out: None])
    result = await _execute(s, 1)
    assert result.success is False
    assert result.feedback is not None and "ConfigurationError" in result.feedback


async def test_a_validator_raising_fails_the_attempt() -> None:
    def crashes(out: Any) -> bool:
        raise RuntimeError("validator crashed")

    body = Outputs(1)
    s = Step.from_callable(body, name="s", max_retries=1, validators=[crashes])
    result = await _execute(s, None)
    assert result.success is False and body.calls == 2
    assert result.feedback is not None and "validator crashed" in result.feedback


async def test_validation_failure_fails_the_run() -> None:
    pipeline = Step.from_callable(
        lambda x: x, name="check", validators=[lambda out: ValidationResult(False, "nope")]
    ) >> Step.from_callable(lambda x: x, name="after")
    result = await Flujo(pipeline, persist_state=False).run_async(1)
    assert result.success is False
    assert [r.name for r in result.step_history] == ["check"]
    assert result.feedback is not None and "nope" in result.feedback


# --- processors --------------------------------------------------------------------------


async def test_input_processors_run_in_order_before_the_step() -> None:
    seen: list[Any] = []

    def body(x: str) -> str:
        seen.append(x)
        return x

    async def exclaim(x: str) -> str:
        await asyncio.sleep(0)
        return x + "!"

    s = Step.from_callable(body, name="s", input_processors=[str.upper, exclaim, str.strip])
    result = await _execute(s, " hi")
    assert seen == ["HI!"]
    assert result.output == "HI!"


async def test_output_processors_run_in_order_after_the_step() -> None:
    async def double(x: int) -> int:
        return x * 2

    s = Step.from_callable(
        lambda x: x, name="s", output_processors=[lambda x: x + 1, double, lambda x: x - 3]
    )
    assert (await _execute(s, 4)).output == (4 + 1) * 2 - 3


async def test_processors_with_keyword_only_context_receive_the_context() -> None:
    def tag_input(x: str, *, context: Ctx) -> str:
        context.log.append(f"in:{x}")
        return x + context.suffix

    async def tag_output(x: str, *, context: Ctx) -> str:
        context.log.append(f"out:{x}")
        return x.upper()

    s = Step.from_callable(
        lambda x: x, name="s", input_processors=[tag_input], output_processors=[tag_output]
    )
    ctx = Ctx(suffix="?")
    result = await _execute(s, "why", ctx)
    assert result.output == "WHY?"
    assert ctx.log == ["in:why", "out:why?"]


async def test_every_attempt_gets_the_processed_input() -> None:
    seen: list[Any] = []

    def flaky(x: str) -> str:
        seen.append(x)
        if len(seen) == 1:
            raise ConnectionError("transient")
        return x

    s = Step.from_callable(flaky, name="s", max_retries=1, input_processors=[str.upper])
    result = await _execute(s, "a")
    assert result.success and seen == ["A", "A"]


async def test_processors_run_through_the_runner_with_the_run_context() -> None:
    def add_suffix(x: str, *, context: Ctx) -> str:
        return x + context.suffix

    s = Step.from_callable(lambda x: x, name="s", output_processors=[add_suffix])
    runner = Flujo(s, context_model=Ctx, initial_context_data={"suffix": "."}, persist_state=False)
    result = await runner.run_async("end")
    assert result.output == "end."


async def test_an_input_processor_raising_fails_the_step() -> None:
    ran: list[Any] = []

    def bad_input(x: Any) -> Any:
        raise ValueError("cannot parse input")

    s = Step.from_callable(ran.append, name="s", input_processors=[bad_input])
    result = await _execute(s, "raw")
    assert result.success is False
    assert ran == []
    assert result.feedback is not None
    assert "ValueError" in result.feedback and "cannot parse input" in result.feedback


async def test_an_output_processor_raising_fails_the_step() -> None:
    async def bad_output(x: Any) -> Any:
        raise TypeError("cannot format output")

    s = Step.from_callable(lambda x: x, name="s", output_processors=[bad_output])
    result = await _execute(s, 1)
    assert result.success is False
    assert result.output is None
    assert result.feedback is not None
    assert "TypeError" in result.feedback and "cannot format output" in result.feedback
