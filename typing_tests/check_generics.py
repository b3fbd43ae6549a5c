"""Static checks of flujo's generics, run by mypy in CI (`mypy flujo typing_tests`)."""

from __future__ import annotations

from typing import Any, assert_type

from flujo import (
    ContextReference,
    Flujo,
    Pipeline,
    PipelineContext,
    PipelineResult,
    Step,
    StepOutput,
    step,
)


class Ctx(PipelineContext):
    ref: ContextReference[list[int]] = ContextReference(provider_id="p", key="k")


async def to_len(data: str) -> int:
    return len(data)


def to_str(data: int, *, context: Ctx) -> str:
    return str(data)


@step
async def double(data: int) -> int:
    return data * 2


async def priced(data: int) -> StepOutput[str]:
    return StepOutput(str(data), cost_usd=0.01, tokens=3)


def priced_sync(data: str) -> StepOutput[int]:
    return StepOutput(len(data))


def check() -> None:
    first = Step.from_callable(to_len)
    assert_type(first, Step[str, int])
    second = Step.from_callable(to_str)
    assert_type(second, Step[int, str])
    assert_type(double, Step[int, int])
    pipeline = first >> double >> second
    assert_type(pipeline, Pipeline[str, str])
    runner = Flujo(pipeline, context_model=Ctx)
    assert_type(runner, Flujo[str, str, Ctx])
    result = runner.run("abc")
    assert_type(result, PipelineResult[Ctx])
    context = result.final_pipeline_context
    assert context is not None
    assert_type(context.ref.get(), list[int] | None)
    plain = Flujo(first)
    assert_type(plain, Flujo[str, int, PipelineContext])
    # A step returning StepOutput[T] outputs T: the runner unwraps it.
    assert_type(Step.from_callable(priced), Step[int, str])
    assert_type(step(priced_sync), Step[str, int])
    assert_type(first >> Step.from_callable(priced) >> step(priced_sync), Pipeline[str, int])
    # The control-flow constructors (bound onto Step by the package) keep their types.
    assert_type(Step.branch_on(to_str, {"a": first}), Step[Any, Any])
    assert_type(Step.loop_until(double, to_str, max_loops=2), Step[Any, Any])
    assert_type(Step.parallel({"a": first}), Step[Any, Any])
    assert_type(first >> Step.map_over(double), Pipeline[str, list[Any]])
    machine = Step.state_machine(
        {"a": first}, start="a", end=["done"], transitions={"a": "done"}, max_transitions=3
    )
    assert_type(machine, Step[Any, Any])
    assert_type(Step.router(to_str, {"a": first}), Step[Any, Any])
    assert_type(Pipeline.of(first).to_yaml(), str)
