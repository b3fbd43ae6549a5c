"""A save that lands but whose answer is lost: stored once, on a retry and on a resume.

The store committed and the connection dropped before it said so. A versioned
provider lets flujo tell its own earlier write from another writer's, so the
change is neither made twice nor reported as a conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from flujo import Flujo, Step
from flujo.domain.interfaces import Write
from flujo.providers import InMemoryStateProvider
from flujo.state import InMemoryBackend
from flujo.testing import Faults, FaultyProvider
from tests.unit.test_pending_commits import RAN, Ctx, _append
from tests.unit.test_state_providers_integration import memory_container


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


async def test_a_save_whose_reply_was_lost_is_known_landed_and_not_repeated() -> None:
    """The save lands, its answer is lost, the retry finds the run's own write: no duplicate."""

    def add(data: Any, *, context: Ctx) -> Any:
        RAN.append("add")
        context.log.set([*(context.log.get() or []), data])
        return data

    kg = FaultyProvider(InMemoryStateProvider({"log": []}), save=Faults(fail_after={1}))
    backend = InMemoryBackend()
    runner = Flujo(
        Step.from_callable(add, name="add", max_retries=1) >> _append("two"),
        context_model=Ctx,
        state_providers={"kg": kg, "aux": InMemoryStateProvider({"other": []})},
        state_backend=backend,
        container=memory_container(),
    )

    result = await runner.run_async(0, run_id="lost")

    assert result.success, result.feedback
    assert RAN == ["add", "two"], "the step ran once: its save had landed"
    assert (await kg.load("log")) == [0, "two"], "stored once"
    assert not any(s.pending for s in await backend.load_steps("lost"))


async def test_a_conflict_with_another_writer_after_a_lost_reply_still_fails() -> None:
    """Only the run's own write counts as landed: another writer's is a conflict."""
    inner: InMemoryStateProvider[Any] = InMemoryStateProvider({"log": []})

    def add(data: Any, *, context: Ctx) -> Any:
        context.log.set([*(context.log.get() or []), data])
        return data

    kg = FaultyProvider(inner, save=Faults(fail={1}))
    original = kg.save_versioned

    async def racing(writes: Sequence[Write[Any]]) -> list[int]:
        if kg.calls.get("save", 0) == 0:  # another process writes just before ours fails
            await inner.save_versioned([Write("log", ["theirs"], None, "elsewhere/0")])
        return await original(writes)

    kg.save_versioned = racing  # type: ignore[method-assign]
    runner = Flujo(
        Step.from_callable(add, name="add", max_retries=1),
        context_model=Ctx,
        state_providers={"kg": kg, "aux": InMemoryStateProvider({"other": []})},
        state_backend=InMemoryBackend(),
        container=memory_container(),
    )

    result = await runner.run_async(0, run_id="raced")

    assert not result.success
    assert "StateConflictError" in (result.feedback or "")
    assert (await inner.load("log")) == ["theirs"], "their write is kept"


async def test_a_lost_reply_without_retries_is_settled_from_versions_on_resume() -> None:
    """The failed step's record says its save failed; the versions say it landed."""

    def add(data: Any, *, context: Ctx) -> Any:
        RAN.append("add")
        context.log.set([*(context.log.get() or []), data])
        return data

    kg = FaultyProvider(InMemoryStateProvider({"log": []}), save=Faults(fail_after={1}))
    backend = InMemoryBackend()

    def runner() -> Flujo[Any, Any, Ctx]:
        return Flujo(
            Step.from_callable(add, name="add") >> _append("two"),
            context_model=Ctx,
            state_providers={"kg": kg, "aux": InMemoryStateProvider({"other": []})},
            state_backend=backend,
            container=memory_container(),
        )

    failed = await runner().run_async(0, run_id="lost")
    assert not failed.success and "StateSaveError" in (failed.feedback or "")

    resumed = await runner().resume_async("lost")

    assert resumed.success, resumed.feedback
    assert RAN == ["add", "two"], "not re-run: its save had landed"
    assert (await kg.load("log")) == [0, "two"]


def _loop(times: int) -> Step[Any, Any]:
    def add(data: Any, *, context: Ctx) -> Any:
        RAN.append("add")
        context.log.set([*(context.log.get() or []), len(RAN)])
        context.scratchpad["adds"] = context.scratchpad.get("adds", 0) + 1
        return data

    body = Step.from_callable(add, name="add")
    return Step.loop_until(
        body, lambda out, ctx: False, max_loops=times, on_max_loops="return", name="loop"
    )


def _loop_runner(kg: Any, backend: InMemoryBackend, times: int = 2) -> Flujo[Any, Any, Ctx]:
    return Flujo(
        _loop(times),
        context_model=Ctx,
        state_providers={"kg": kg, "aux": InMemoryStateProvider({"other": []})},
        state_backend=backend,
        container=memory_container(),
    )


async def test_a_loop_iteration_whose_save_reply_was_lost_is_not_run_again_on_resume() -> None:
    """The loop's failure must not replace the pending record its iteration left."""
    kg = FaultyProvider(InMemoryStateProvider({"log": []}), save=Faults(fail_after={1}))
    backend = InMemoryBackend()
    failed = await _loop_runner(kg, backend).run_async(0, run_id="loop")
    assert not failed.success and "StateSaveError" in (failed.feedback or "")

    resumed = await _loop_runner(kg, backend).resume_async("loop")

    assert resumed.success, resumed.feedback
    assert RAN == ["add", "add"], "the first iteration ran once"
    assert (await kg.load("log")) == [1, 2]
    assert resumed.final_pipeline_context is not None
    assert resumed.final_pipeline_context.scratchpad["adds"] == 2


async def test_a_resumed_loop_rerunning_an_iteration_restores_its_own_committed_context() -> None:
    """Second interruption, in the resumed process: the rerun starts from what it committed."""
    kg = FaultyProvider(InMemoryStateProvider({"log": []}), save=Faults(fail_after={1}))
    backend = InMemoryBackend()
    await _loop_runner(kg, backend, times=3).run_async(0, run_id="loop")
    kg.inject(save=Faults(fail={2}))  # the resumed run: iteration 2 commits, 3 does not land
    failed = await _loop_runner(kg, backend, times=3).resume_async("loop")
    assert not failed.success

    resumed = await _loop_runner(kg, backend, times=3).resume_async("loop")

    assert resumed.success, resumed.feedback
    assert (await kg.load("log")) == [1, 2, 4], "each iteration's change stored once"
    assert resumed.final_pipeline_context is not None
    assert resumed.final_pipeline_context.scratchpad["adds"] == 3, "plain changes once each"
