"""Runner hooks: typed events in order, failing hooks reported, PipelineAbortSignal stops a run."""

from __future__ import annotations

import asyncio
from typing import Any

from dependency_injector import providers

from flujo import Flujo, Step
from flujo.domain.errors import PipelineAbortSignal
from flujo.domain.events import (
    HookEvent,
    RunFinished,
    RunPaused,
    RunStarted,
    StepFailed,
    StepFinished,
    StepStarted,
)
from flujo.infra.state.memory import InMemoryBackend
from tests.helpers import RecordingTelemetry


class Ran:
    """Records which steps ran, in order."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def step(self, name: str, fail: bool = False) -> Step[Any, Any]:
        def body(x: int) -> int:
            self.names.append(name)
            if fail:
                raise ValueError(f"{name} failed")
            return x + 1

        return Step.from_callable(body, name=name)


def _three(ran: Ran, fail_at: str | None = None) -> Any:
    return ran.step("a", fail_at == "a") >> ran.step("b", fail_at == "b") >> ran.step("c")


def _shape(event: HookEvent) -> tuple[Any, ...]:
    if isinstance(event, StepStarted | StepFinished | StepFailed):
        return (type(event).__name__, event.step_name, event.index)
    if isinstance(event, RunPaused):
        return ("RunPaused", event.step_name, event.message)
    return (type(event).__name__,)


def _abort_on(kind: type, message: str = "stop here", step_name: str | None = None) -> Any:
    def hook(event: HookEvent) -> None:
        if isinstance(event, kind) and (
            step_name is None or getattr(event, "step_name", None) == step_name
        ):
            raise PipelineAbortSignal(message)

    return hook


# --- order of events ---------------------------------------------------------------------


async def test_events_of_a_run_come_in_order_with_their_fields() -> None:
    events: list[HookEvent] = []
    runner = Flujo(_three(Ran()), hooks=[events.append], pipeline_name="demo", persist_state=False)
    result = await runner.run_async(0)
    assert [_shape(e) for e in events] == [
        ("RunStarted",),
        ("StepStarted", "a", 0),
        ("StepFinished", "a", 0),
        ("StepStarted", "b", 1),
        ("StepFinished", "b", 1),
        ("StepStarted", "c", 2),
        ("StepFinished", "c", 2),
        ("RunFinished",),
    ]
    started, finished = events[0], events[-1]
    assert isinstance(started, RunStarted)
    assert (started.run_id, started.pipeline_name) == (result.run_id, "demo")
    assert isinstance(finished, RunFinished)
    assert finished.run_id == result.run_id
    assert finished.result.output == result.output == 3
    assert all(e.run_id == result.run_id for e in events)


async def test_a_failing_step_sends_step_failed_before_step_finished() -> None:
    events: list[HookEvent] = []
    ran = Ran()
    result = await Flujo(
        _three(ran, fail_at="b"), hooks=[events.append], persist_state=False
    ).run_async(0)
    assert ran.names == ["a", "b"]
    assert [_shape(e) for e in events] == [
        ("RunStarted",),
        ("StepStarted", "a", 0),
        ("StepFinished", "a", 0),
        ("StepStarted", "b", 1),
        ("StepFailed", "b", 1),
        ("StepFinished", "b", 1),
        ("RunFinished",),
    ]
    failed = events[4]
    assert isinstance(failed, StepFailed)
    assert failed.result.success is False
    assert failed.result.feedback is not None and "b failed" in failed.result.feedback
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.result.success is False
    assert result.status == "failed"


async def test_a_human_step_sends_run_paused() -> None:
    events: list[HookEvent] = []
    ran = Ran()
    pipeline = ran.step("a") >> Step.human_in_the_loop("Approve?", name="review") >> ran.step("c")
    runner = Flujo(pipeline, hooks=[events.append], state_backend=InMemoryBackend())
    result = await runner.run_async(0)
    assert result.status == "paused"
    assert [_shape(e) for e in events] == [
        ("RunStarted",),
        ("StepStarted", "a", 0),
        ("StepFinished", "a", 0),
        ("RunPaused", "review", "Approve?"),
        ("RunFinished",),
    ]
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.result.status == "paused"

    events.clear()
    resumed = await runner.resume_async(result, human_input=10)
    assert resumed.success and resumed.output == 11
    assert [_shape(e) for e in events] == [
        ("RunStarted",),
        ("StepStarted", "review", 1),
        ("StepFinished", "review", 1),
        ("StepStarted", "c", 2),
        ("StepFinished", "c", 2),
        ("RunFinished",),
    ]


# --- sync and async hooks ----------------------------------------------------------------


async def test_sync_and_async_hooks_both_receive_every_event_before_the_next_step() -> None:
    log: list[str] = []

    def sync_hook(event: HookEvent) -> None:
        if isinstance(event, StepFinished):
            log.append(f"sync:{event.step_name}")

    async def async_hook(event: HookEvent) -> None:
        await asyncio.sleep(0.001)  # the runner waits for it
        if isinstance(event, StepFinished):
            log.append(f"async:{event.step_name}")

    def step(name: str) -> Step[Any, Any]:
        def body(x: int) -> int:
            log.append(f"run:{name}")
            return x

        return Step.from_callable(body, name=name)

    await Flujo(
        step("a") >> step("b"), hooks=[sync_hook, async_hook], persist_state=False
    ).run_async(0)
    assert log == ["run:a", "sync:a", "async:a", "run:b", "sync:b", "async:b"]


# --- failing hooks -----------------------------------------------------------------------


async def test_a_failing_hook_is_reported_and_not_fatal() -> None:
    seen: list[str] = []

    def broken(event: HookEvent) -> None:
        raise RuntimeError("hook bug")

    async def broken_async(event: HookEvent) -> None:
        raise KeyError("async hook bug")

    telemetry = RecordingTelemetry()
    ran = Ran()
    runner = Flujo(
        _three(ran),
        hooks=[broken, broken_async, lambda e: seen.append(type(e).__name__)],
        persist_state=False,
    )
    runner.container.telemetry.override(providers.Object(telemetry))
    result = await runner.run_async(0)
    assert result.success and result.output == 3
    assert ran.names == ["a", "b", "c"]
    assert len(seen) == 8  # the good hook after the broken ones got every event
    sync_warnings = [w for w in telemetry.warnings if "hook bug" in w and "RuntimeError" in w]
    assert len(sync_warnings) == 8  # one per event
    assert "broken" in sync_warnings[0] and "RunStarted" in sync_warnings[0]
    assert any("async hook bug" in w and "KeyError" in w for w in telemetry.warnings)


# --- PipelineAbortSignal -----------------------------------------------------------------


async def test_abort_on_step_finished_stops_the_run() -> None:
    events: list[HookEvent] = []
    ran = Ran()
    backend = InMemoryBackend()
    runner = Flujo(
        _three(ran),
        hooks=[_abort_on(StepFinished, "budget review", step_name="a"), events.append],
        state_backend=backend,
    )
    result = await runner.run_async(0)
    assert ran.names == ["a"]  # later steps never ran
    assert result.status == "failed" and result.success is False
    assert result.output is None
    assert result.error is not None
    assert "PipelineAbortSignal" in result.error and "budget review" in result.error
    assert [r.name for r in result.step_history] == ["a"]
    assert result.step_history[0].success
    assert isinstance(events[-1], RunFinished)  # the run still reports its end
    assert events[-1].result.status == "failed"
    stored = await runner.get_run(result.run_id)
    assert stored.status == "failed"
    assert stored.error is not None and "budget review" in stored.error


async def test_abort_on_run_started_runs_no_step() -> None:
    ran = Ran()
    result = await Flujo(
        _three(ran), hooks=[_abort_on(RunStarted, "closed")], persist_state=False
    ).run_async(0)
    assert ran.names == []
    assert result.step_history == []
    assert result.status == "failed"
    assert result.error is not None and "closed" in result.error


async def test_abort_on_step_started_keeps_that_step_from_running() -> None:
    ran = Ran()
    result = await Flujo(
        _three(ran), hooks=[_abort_on(StepStarted, step_name="b")], persist_state=False
    ).run_async(0)
    assert ran.names == ["a"]
    assert [r.name for r in result.step_history] == ["a"]
    assert result.status == "failed"


async def test_abort_without_a_message_still_explains_itself() -> None:
    def hook(event: HookEvent) -> None:
        if isinstance(event, StepFinished):
            raise PipelineAbortSignal()

    result = await Flujo(_three(Ran()), hooks=[hook], persist_state=False).run_async(0)
    assert result.error is not None
    assert result.error.startswith("PipelineAbortSignal: ") and len(result.error) > 21


async def test_abort_on_run_finished_is_ignored() -> None:
    seen: list[str] = []
    ran = Ran()
    runner = Flujo(
        _three(ran),
        hooks=[_abort_on(RunFinished, "too late"), lambda e: seen.append(type(e).__name__)],
        persist_state=False,
    )
    result = await runner.run_async(0)
    assert result.success and result.status == "completed" and result.error is None
    assert ran.names == ["a", "b", "c"]
    # The abort had nothing to stop: the hooks after it still hear that the run finished.
    assert seen[-1] == "RunFinished"


# --- adding and removing hooks -----------------------------------------------------------


async def test_add_hook_and_remove_hook_apply_from_the_next_run() -> None:
    events: list[HookEvent] = []

    def hook(event: HookEvent) -> None:
        events.append(event)

    runner = Flujo(_three(Ran()), persist_state=False)
    await runner.run_async(0)
    assert events == []

    runner.add_hook(hook)
    await runner.run_async(0)
    assert len(events) == 8

    runner.remove_hook(hook)
    runner.remove_hook(hook)  # removing twice is harmless
    await runner.run_async(0)
    assert len(events) == 8


async def test_remove_hook_removes_a_bound_method() -> None:
    # `runner.add_hook(self.on_event)` / `runner.remove_hook(self.on_event)`: each attribute
    # access makes a new bound-method object, equal to the first but not identical.
    class Listener:
        def __init__(self) -> None:
            self.events: list[HookEvent] = []

        def on_event(self, event: HookEvent) -> None:
            self.events.append(event)

    listener = Listener()
    runner = Flujo(_three(Ran()), persist_state=False)
    runner.add_hook(listener.on_event)
    await runner.run_async(0)
    runner.remove_hook(listener.on_event)
    await runner.run_async(0)
    assert len(listener.events) == 8


async def test_add_hook_keeps_the_order_of_registration() -> None:
    order: list[str] = []
    runner = Flujo(Ran().step("a"), hooks=[lambda e: order.append("first")], persist_state=False)
    runner.add_hook(lambda e: order.append("second"))
    await runner.run_async(0)
    assert order[:2] == ["first", "second"]
