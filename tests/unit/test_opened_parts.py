"""What a runner closes, and when: the calling loop's parts at once, shared ones when idle."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from flujo import Flujo, Step
from flujo.application.opened_parts import OpenedParts
from flujo.containers import FlujoContainer
from flujo.domain.interfaces import SharedAcrossLoops


class LoopPart:
    """A part whose connections belong to a loop: it records the loops it was closed on."""

    def __init__(self) -> None:
        self.closed_on: list[asyncio.AbstractEventLoop] = []

    async def close(self) -> None:
        self.closed_on.append(asyncio.get_running_loop())


class SharedPart(LoopPart):
    """One connection for every loop."""

    shared_across_loops = True


class BrokenPart:
    async def close(self) -> None:
        raise RuntimeError("cannot close")


def test_shared_parts_match_the_protocol() -> None:
    assert isinstance(SharedPart(), SharedAcrossLoops)
    assert not isinstance(LoopPart(), SharedAcrossLoops)


async def test_a_release_closes_the_parts_its_loop_used_and_idle_shared_ones() -> None:
    opened, loop_part, shared = OpenedParts(), LoopPart(), SharedPart()
    opened.add(loop_part)
    opened.add(shared)
    await opened.release()
    loop = asyncio.get_running_loop()
    assert loop_part.closed_on == [loop] and shared.closed_on == [loop]
    await opened.release()  # nothing left: each part is closed once
    assert len(loop_part.closed_on) == 1 and len(shared.closed_on) == 1


async def test_a_shared_part_outlives_a_release_while_a_run_is_in_flight() -> None:
    opened, shared, loop_part = OpenedParts(), SharedPart(), LoopPart()
    in_run, end_run = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        opened.add(shared)
        opened.add(loop_part)
        in_run.set()
        await end_run.wait()

    running = asyncio.create_task(opened.during(run()))
    await in_run.wait()
    await opened.release()
    assert shared.closed_on == []  # the run in flight still uses it
    assert len(loop_part.closed_on) == 1  # loop-bound: closed on this loop as asked
    end_run.set()
    await running
    assert len(shared.closed_on) == 1  # the last run to end closed what the release owed


async def test_a_release_leaves_the_parts_of_another_live_loop() -> None:
    opened, theirs = OpenedParts(), LoopPart()
    added, finish = threading.Event(), threading.Event()

    async def other_loop() -> None:
        opened.add(theirs)
        added.set()
        await asyncio.to_thread(finish.wait, 10)
        await opened.release()

    thread = threading.Thread(target=asyncio.run, args=(other_loop(),))
    thread.start()
    assert await asyncio.to_thread(added.wait, 10)
    await opened.release()
    assert theirs.closed_on == []
    finish.set()
    await asyncio.to_thread(thread.join, 10)
    assert len(theirs.closed_on) == 1 and theirs.closed_on[0] is not asyncio.get_running_loop()


async def test_parts_of_a_loop_that_ended_unreleased_are_closed_by_the_next_release() -> None:
    opened, left = OpenedParts(), LoopPart()

    async def forgetful() -> None:
        opened.add(left)

    await asyncio.to_thread(asyncio.run, forgetful())
    await opened.release()
    assert left.closed_on == [asyncio.get_running_loop()]


async def test_a_failing_close_does_not_keep_the_others_open() -> None:
    opened, broken, fine = OpenedParts(), BrokenPart(), LoopPart()
    opened.add(broken)
    opened.add(fine)
    with pytest.raises(RuntimeError, match="cannot close"):
        await opened.release()
    assert len(fine.closed_on) == 1


def test_a_part_resolved_outside_any_loop_is_closed_by_the_next_release() -> None:
    opened, part = OpenedParts(), LoopPart()
    opened.add(part)  # e.g. runner._parts() called from sync code
    asyncio.run(opened.release())
    assert len(part.closed_on) == 1


def test_the_sync_door_releases_its_loop_and_keeps_the_shared_parts_of_runs_in_flight() -> None:
    # Thread A's run waits inside a step while thread B's runs start and end: B's calls
    # close B's loop-bound parts each time, never A's shared part, which A's end closes.
    loop_part, shared = LoopPart(), SharedPart()
    a_inside, a_go_on = threading.Event(), threading.Event()

    def step(x: str) -> str:
        if x == "A":
            a_inside.set()
            assert a_go_on.wait(10)
        return x

    container = FlujoContainer()
    container.config.from_dict({"state": {"backend": "memory"}})
    container.cache_backend.override(loop_part)
    container.state_backend.override(shared)  # never called: only its close() matters here
    runner: Flujo[Any, Any, Any] = Flujo(
        Step.from_callable(step, name="s"), container=container, persist_state=False
    )
    runner._opened.add(shared)  # as a run using it would
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(runner.run("A").output))
    thread.start()
    assert a_inside.wait(10)
    assert [runner.run("B").output for _ in range(3)] == ["B"] * 3
    assert len(loop_part.closed_on) == 3 and shared.closed_on == []
    a_go_on.set()
    thread.join(10)
    assert outcome == ["A"]
    assert len(loop_part.closed_on) == 4 and len(shared.closed_on) == 1
