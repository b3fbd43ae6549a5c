"""Human-in-the-loop steps: a run pauses, keeps its state, and continues with validated input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from flujo import ConfigurationError, ContextReference, Flujo, PipelineContext, Step
from flujo.application.core.executor_core import ExecutorCore
from flujo.domain.dsl.step import HumanStep
from flujo.domain.errors import HumanInputError, ResumeError
from flujo.infra.state.memory import InMemoryBackend
from flujo.infra.state.sqlite import SQLiteBackend
from tests.helpers import DictStateProvider


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)


class Approval(BaseModel):
    approved: bool
    reviewer: str = Field(min_length=1)


class Draft(PipelineContext):
    drafts: int = 0


def _draft(text: str) -> dict[str, Any]:
    return {"text": text.upper()}


class Received:
    """A step that records the input it is given."""

    def __init__(self, name: str = "publish") -> None:
        self.name = name
        self.inputs: list[Any] = []

    def step(self) -> Step[Any, Any]:
        def publish(data: Any) -> Any:
            self.inputs.append(data)
            if isinstance(data, Approval):
                return f"{'published' if data.approved else 'rejected'} by {data.reviewer}"
            return data

        return Step.from_callable(publish, name=self.name)


def _review_pipeline(received: Received) -> Any:
    return (
        Step.from_callable(_draft, name="draft")
        >> Step.human_in_the_loop("Approve the draft?", Approval, name="review")
        >> received.step()
    )


def _runner(pipeline: Any, **kwargs: Any) -> Flujo[Any, Any, Any]:
    kwargs.setdefault("state_backend", InMemoryBackend())
    return Flujo(pipeline, **kwargs)


# --- pausing ---------------------------------------------------------------------------


async def test_a_human_step_pauses_the_run() -> None:
    received = Received()
    runner = _runner(_review_pipeline(received))

    result = await runner.run_async("hello")

    assert result.status == "paused"
    assert result.success is False
    assert result.pause_message == "Approve the draft?"
    assert result.output == {"text": "HELLO"}, "the output is the data waiting for review"
    assert [r.name for r in result.step_history] == ["draft"]
    assert received.inputs == [], "no step after the pause may run"


async def test_a_paused_run_is_stored_as_paused() -> None:
    runner = _runner(_review_pipeline(Received()), pipeline_name="review")
    result = await runner.run_async("hello")

    info = await runner.get_run(result.run_id)

    assert info.status == "paused"
    assert info.pause_message == "Approve the draft?"
    assert info.steps_completed == 1
    assert [r.name for r in info.step_history] == ["draft"]
    assert [r.run_id for r in await runner.list_runs(status="paused")] == [result.run_id]


async def test_a_human_step_first_in_the_pipeline_waits_with_the_run_input() -> None:
    received = Received()
    runner = _runner(Step.human_in_the_loop("Check the input", name="check") >> received.step())

    paused = await runner.run_async({"raw": 1})
    assert paused.status == "paused"
    assert paused.output == {"raw": 1}
    assert paused.step_history == []

    done = await runner.resume_async(paused, human_input={"raw": 2})
    assert done.success, done.feedback
    assert received.inputs == [{"raw": 2}]


# --- resuming --------------------------------------------------------------------------


async def test_resume_validates_input_into_the_model_for_the_next_step() -> None:
    received = Received()
    runner = _runner(_review_pipeline(received))
    paused = await runner.run_async("hello")

    done = await runner.resume_async(paused, human_input={"approved": True, "reviewer": "ana"})

    assert done.status == "completed" and done.success, done.feedback
    assert len(received.inputs) == 1
    assert isinstance(received.inputs[0], Approval)
    assert received.inputs[0] == Approval(approved=True, reviewer="ana")
    assert done.output == "published by ana"
    assert [r.name for r in done.step_history] == ["draft", "review", "publish"]
    assert done.step_history[1].output == Approval(approved=True, reviewer="ana")
    info = await runner.get_run(paused.run_id)
    assert info.status == "completed"
    assert info.pause_message is None


async def test_resume_by_run_id_from_a_new_runner_on_the_same_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    first_backend = SQLiteBackend(path)
    async with Flujo(_review_pipeline(Received()), state_backend=first_backend) as first:
        paused = await first.run_async("hello")
    assert paused.status == "paused"

    received = Received()
    async with Flujo(_review_pipeline(received), state_backend=SQLiteBackend(path)) as second:
        done = await second.resume_async(
            paused.run_id, human_input={"approved": False, "reviewer": "bo"}
        )

    assert done.success, done.feedback
    assert done.output == "rejected by bo"
    assert received.inputs == [Approval(approved=False, reviewer="bo")]


async def test_a_model_instance_is_accepted_as_human_input() -> None:
    received = Received()
    runner = _runner(_review_pipeline(received))
    paused = await runner.run_async("x")

    done = await runner.resume_async(paused, human_input=Approval(approved=True, reviewer="cy"))

    assert done.success, done.feedback
    assert received.inputs == [Approval(approved=True, reviewer="cy")]


async def test_invalid_input_is_a_one_line_error_naming_the_field_and_the_run_stays_paused() -> (
    None
):
    received = Received()
    runner = _runner(_review_pipeline(received))
    paused = await runner.run_async("hello")

    with pytest.raises(HumanInputError) as info:
        await runner.resume_async(paused, human_input={"approved": "maybe?", "reviewer": "ana"})

    message = str(info.value)
    assert "\n" not in message
    assert "approved" in message
    assert "review" in message and "Approval" in message
    assert received.inputs == []
    stored = await runner.get_run(paused.run_id)
    assert stored.status == "paused"
    assert stored.pause_message == "Approve the draft?"

    done = await runner.resume_async(paused, human_input={"approved": True, "reviewer": "ana"})
    assert done.success, done.feedback
    assert received.inputs == [Approval(approved=True, reviewer="ana")]


async def test_missing_required_field_names_the_field() -> None:
    runner = _runner(_review_pipeline(Received()))
    paused = await runner.run_async("hello")

    with pytest.raises(HumanInputError, match="reviewer"):
        await runner.resume_async(paused, human_input={"approved": True})


async def test_resuming_a_paused_run_without_input_names_what_it_waits_for() -> None:
    received = Received()
    runner = _runner(_review_pipeline(received))
    paused = await runner.run_async("hello")

    with pytest.raises(ResumeError) as info:
        await runner.resume_async(paused.run_id)

    assert "Approve the draft?" in str(info.value)
    assert paused.run_id in str(info.value)
    assert received.inputs == []
    assert (await runner.get_run(paused.run_id)).status == "paused"


async def test_human_input_to_a_run_that_is_not_paused_is_refused() -> None:
    attempts = {"n": 0}

    def flaky(x: Any) -> Any:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RuntimeError("first time")
        return x

    runner = _runner(Step.from_callable(flaky, name="flaky"))
    failed = await runner.run_async(1)
    assert failed.status == "failed"

    with pytest.raises(ResumeError, match="not paused"):
        await runner.resume_async(failed, human_input={"anything": 1})
    assert attempts["n"] == 1, "a refused resume must not run any step"


async def test_two_human_steps_pause_twice() -> None:
    received = Received("finish")
    runner = _runner(
        Step.human_in_the_loop("first?", name="first")
        >> Step.from_callable(lambda x: f"{x}+work", name="work")
        >> Step.human_in_the_loop("second?", Approval, name="second")
        >> received.step()
    )

    one = await runner.run_async("in")
    assert (one.status, one.pause_message) == ("paused", "first?")

    two = await runner.resume_async(one, human_input="answer-1")
    assert (two.status, two.pause_message) == ("paused", "second?")
    assert two.output == "answer-1+work"
    assert received.inputs == []
    stored = await runner.get_run(one.run_id)
    assert (stored.status, stored.pause_message, stored.steps_completed) == (
        "paused",
        "second?",
        2,
    )

    three = await runner.resume_async(two, human_input={"approved": True, "reviewer": "di"})
    assert three.success, three.feedback
    assert three.output == "published by di"
    assert [r.name for r in three.step_history] == ["first", "work", "second", "finish"]


async def test_without_input_model_the_raw_input_is_passed_through() -> None:
    received = Received()
    runner = _runner(
        Step.from_callable(_draft, name="draft")
        >> Step.human_in_the_loop("Edit it", name="edit")
        >> received.step()
    )
    paused = await runner.run_async("x")

    done = await runner.resume_async(paused, human_input={"free": ["form", 1]})

    assert done.success, done.feedback
    assert received.inputs == [{"free": ["form", 1]}]


async def test_a_human_step_last_in_the_pipeline_completes_with_the_input() -> None:
    runner = _runner(
        Step.from_callable(_draft, name="draft") >> Step.human_in_the_loop("ok?", Approval)
    )
    paused = await runner.run_async("x")
    done = await runner.resume_async(paused, human_input={"approved": True, "reviewer": "e"})
    assert done.success
    assert done.output == Approval(approved=True, reviewer="e")


async def test_a_step_failing_after_the_human_step_resumes_with_the_validated_model() -> None:
    # The human answer is stored as JSON; when the run is resumed after a later failure the
    # next step must still get an Approval, as it did the first time.
    attempts: list[Any] = []

    def publish(data: Approval) -> str:
        attempts.append(data)
        if len(attempts) == 1:
            raise RuntimeError("publishing service down")
        return f"published by {data.reviewer}"

    runner = _runner(
        Step.human_in_the_loop("ok?", Approval, name="review")
        >> Step.from_callable(publish, name="publish")
    )
    paused = await runner.run_async("doc")
    failed = await runner.resume_async(paused, human_input={"approved": True, "reviewer": "f"})
    assert failed.status == "failed"

    done = await runner.resume_async(failed)

    assert done.success, done.feedback
    assert all(isinstance(a, Approval) for a in attempts), attempts
    assert done.output == "published by f"


def test_sync_resume_with_human_input() -> None:
    received = Received()
    runner = _runner(_review_pipeline(received))
    paused = runner.run("sync")
    assert paused.status == "paused"

    done = runner.resume(paused, human_input={"approved": True, "reviewer": "g"})

    assert done.success, done.feedback
    assert received.inputs == [Approval(approved=True, reviewer="g")]


# --- construction ----------------------------------------------------------------------


def test_human_in_the_loop_builds_a_named_human_step() -> None:
    made = Step.human_in_the_loop("Approve?", Approval, name="gate")
    assert isinstance(made, HumanStep) and isinstance(made, Step)
    assert (made.name, made.message, made.input_model) == ("gate", "Approve?", Approval)


@pytest.mark.parametrize("message", ["", "   ", None, 3])
def test_a_human_step_needs_a_message(message: Any) -> None:
    with pytest.raises(ConfigurationError, match="message"):
        Step.human_in_the_loop(message)


@pytest.mark.parametrize("model", [dict, Approval(approved=True, reviewer="x"), "Approval", int])
def test_input_model_must_be_a_pydantic_model_class(model: Any) -> None:
    with pytest.raises(ConfigurationError, match="input_model"):
        Step.human_in_the_loop("Approve?", model)


async def test_a_human_step_run_directly_by_the_executor_fails_clearly() -> None:
    result = await ExecutorCore().execute(Step.human_in_the_loop("Approve?", name="gate"), "data")

    assert result.success is False
    assert result.feedback is not None
    assert "gate" in result.feedback and "human" in result.feedback
    assert "Flujo" in result.feedback


async def test_a_runner_without_durable_state_cannot_resume_a_pause() -> None:
    runner = Flujo(Step.human_in_the_loop("ok?", name="gate"), persist_state=False)
    paused = await runner.run_async("x")
    assert paused.status == "paused"
    with pytest.raises(ConfigurationError, match="persist_state"):
        await runner.resume_async(paused, human_input="yes")


# --- managed state around a pause ------------------------------------------------------


class Notes(PipelineContext):
    notes: ContextReference[list[str]] = ContextReference(provider_id="notes", key="n")


def _note(item: str) -> Step[Any, Any]:
    def add(data: Any, *, context: Notes) -> Any:
        context.notes.set([*(context.notes.get() or []), item])
        return data

    return Step.from_callable(add, name=f"note-{item}")


async def test_references_set_before_the_pause_are_saved_by_the_time_it_pauses() -> None:
    provider = DictStateProvider({"n": []})
    backend = InMemoryBackend()
    runner = Flujo(
        _note("drafted") >> Step.human_in_the_loop("ok?", name="gate") >> _note("approved"),
        context_model=Notes,
        state_providers={"notes": provider},
        state_backend=backend,
    )

    paused = await runner.run_async(None)

    assert paused.status == "paused"
    assert provider.data["n"] == ["drafted"]
    # The checkpoint holds the pointer; the data lives only in the provider.
    (record,) = await backend.load_steps(paused.run_id)
    assert b"drafted" not in record.context

    # A new runner (as after a restart) picks the value up from the provider.
    fresh = DictStateProvider(provider.data)
    resumed = await Flujo(
        _note("drafted") >> Step.human_in_the_loop("ok?", name="gate") >> _note("approved"),
        context_model=Notes,
        state_providers={"notes": fresh},
        state_backend=backend,
    ).resume_async(paused.run_id, human_input="yes")

    assert resumed.success, resumed.feedback
    assert fresh.data["n"] == ["drafted", "approved"]
    assert fresh.loads == ["n"]


async def test_the_human_input_reaches_the_context_of_the_next_step() -> None:
    seen: list[tuple[int, Any]] = []

    def count(data: Any, *, context: Draft) -> Any:
        context.drafts += 1
        return data

    def look(data: Any, *, context: Draft) -> Any:
        seen.append((context.drafts, data))
        return data

    runner = _runner(
        Step.from_callable(count, name="count")
        >> Step.human_in_the_loop("ok?", name="gate")
        >> Step.from_callable(look, name="look"),
        context_model=Draft,
    )
    paused = await runner.run_async(None)
    done = await runner.resume_async(paused, human_input="answer")

    assert done.success, done.feedback
    assert seen == [(1, "answer")]
