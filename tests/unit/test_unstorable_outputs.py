"""A step output that cannot be stored fails the step; the run ends ``failed``, stored.

A value JSON cannot hold is stored as its ``repr``; one whose ``repr`` raises cannot be
stored at all. That used to escape ``run_async`` as the ``repr``'s own error and leave
the run ``running``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ConfigDict

from flujo import ContextReference, Flujo, PipelineContext, Step, StepConfig
from flujo.domain.events import HookEvent, RunFinished, StepFailed
from flujo.providers import SQLiteStateProvider
from flujo.state import InMemoryBackend, SQLiteBackend


class Unprintable:
    """Neither JSON nor describable: its repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr is broken")


class Opaque:
    """Not JSON, but describable."""

    def __repr__(self) -> str:
        return "<Opaque>"


def make_unprintable(data: int) -> Unprintable:
    return Unprintable()


def plus_one(data: int) -> int:
    return data + 1


def _assert_fails_naming_step_and_type(feedback: str | None, step: str) -> None:
    assert feedback is not None
    assert repr(step) in feedback and "Unprintable" in feedback
    assert "cannot be stored" in feedback and "repr() raised RuntimeError" in feedback


async def test_an_output_whose_repr_raises_fails_the_step_and_the_run_is_stored(
    tmp_path: Path,
) -> None:
    seen: list[HookEvent] = []
    pipeline = Step.from_callable(plus_one, name="first") >> Step.from_callable(
        make_unprintable, name="make"
    )
    runner = Flujo(
        pipeline,
        pipeline_name="unprintable",
        state_backend=SQLiteBackend(tmp_path / "runs.db"),
        hooks=[seen.append],
    )
    async with runner:
        result = await runner.run_async(1, run_id="u")
        stored = await runner.get_run("u")
    assert (result.status, result.success, result.output) == ("failed", False, None)
    assert [r.success for r in result.step_history] == [True, False]
    _assert_fails_naming_step_and_type(result.step_history[-1].feedback, "make")
    assert stored.status == "failed" and stored.steps_completed == 1
    assert stored.step_history[-1].feedback == result.step_history[-1].feedback
    assert any(isinstance(e, StepFailed) and e.step_name == "make" for e in seen)
    assert isinstance(seen[-1], RunFinished) and seen[-1].result.status == "failed"


async def test_the_failed_run_resumes_once_the_step_is_fixed(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "runs.db")
    broken = Flujo(Step.from_callable(make_unprintable, name="make"), state_backend=backend)
    fixed = Flujo(Step.from_callable(plus_one, name="make"), state_backend=backend)
    async with broken, fixed:
        assert (await broken.run_async(1, run_id="u")).status == "failed"
        resumed = await fixed.resume_async("u")
    assert (resumed.status, resumed.output) == ("completed", 2)


class Ledger(PipelineContext):
    booked: ContextReference[list[int]] = ContextReference(provider_id="ledger", key="booked")


def book_then_return_unprintable(data: int, *, context: Ledger) -> Unprintable:
    context.booked.set([*(context.booked.get() or []), data])
    return Unprintable()


def book(data: int, *, context: Ledger) -> int:
    context.booked.set([*(context.booked.get() or []), data])
    return data


async def test_what_the_failed_step_set_is_not_saved(tmp_path: Path) -> None:
    provider = SQLiteStateProvider(tmp_path / "ledger.db")
    await provider.save("booked", [0])
    backend = SQLiteBackend(tmp_path / "runs.db")

    def runner(fn: Any) -> Flujo[Any, Any, Any]:
        return Flujo(
            Step.from_callable(fn, name="book"),
            context_model=Ledger,
            state_backend=backend,
            state_providers={"ledger": provider},
        )

    async with runner(book_then_return_unprintable) as first, runner(book) as second:
        assert (await first.run_async(1, run_id="u")).status == "failed"
        assert await provider.load("booked") == [0]  # the failed step saved nothing
        assert (await second.resume_async("u")).status == "completed"
    assert await provider.load("booked") == [0, 1]  # booked exactly once
    await provider.close()


async def test_a_retried_step_is_not_retried_for_an_unstorable_output() -> None:
    calls: list[int] = []

    def counted(data: int) -> Unprintable:
        calls.append(data)
        return Unprintable()

    step = Step.from_callable(counted, name="make", config=StepConfig(max_retries=2))
    result = await Flujo(step, state_backend=InMemoryBackend()).run_async(1)
    assert result.status == "failed" and calls == [1]
    _assert_fails_naming_step_and_type(result.step_history[-1].feedback, "make")


async def test_without_durable_state_nothing_is_stored_so_the_run_completes() -> None:
    result = await Flujo(Step.from_callable(make_unprintable), persist_state=False).run_async(1)
    assert result.success and isinstance(result.output, Unprintable)


@pytest.mark.parametrize(
    "make_step",
    [
        lambda: Step.parallel({"a": Step.from_callable(make_unprintable, name="u")}, name="fan"),
        lambda: Step.loop_until(
            Step.from_callable(make_unprintable, name="u"), lambda out, ctx: True, max_loops=2
        ),
        lambda: Step.map_over(Step.from_callable(make_unprintable, name="u"), name="each"),
    ],
    ids=["parallel", "loop", "map"],
)
async def test_a_control_flow_step_holding_such_an_output_fails_and_is_stored(
    tmp_path: Path, make_step: Any
) -> None:
    step = make_step()
    runner = Flujo(step, state_backend=SQLiteBackend(tmp_path / "runs.db"))
    async with runner:
        result = await runner.run_async([1, 2], run_id="u")
        stored = await runner.get_run("u")
    assert result.status == "failed" and stored.status == "failed"
    _assert_fails_naming_step_and_type(result.step_history[-1].feedback, step.name)


async def test_a_describable_nested_output_is_stored_as_its_description(tmp_path: Path) -> None:
    fan = Step.parallel(
        {"a": Step.from_callable(lambda x: Opaque(), name="opaque")},
        merge=lambda outputs: "merged",
        name="fan",
    )
    runner = Flujo(fan, state_backend=SQLiteBackend(tmp_path / "runs.db"))
    async with runner:
        result = await runner.run_async(1, run_id="o")
        stored = await runner.get_run("o")  # readable: only the nested output is described
    assert result.success and result.output == "merged"
    assert stored.step_history[0].output == "merged"
    assert stored.step_history[0].step_history[0].output == {"__unserializable__": "<Opaque>"}


class Loose(PipelineContext):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Any = None


def put_unprintable(data: int, *, context: Loose) -> int:
    context.thing = Unprintable()
    return data


async def test_a_context_that_cannot_be_described_does_not_crash_the_run() -> None:
    runner = Flujo(
        Step.from_callable(put_unprintable, name="put"),
        context_model=Loose,
        state_backend=InMemoryBackend(),
    )
    result = await runner.run_async(1)
    assert result.status == "completed"
