"""The pool of leaf actors on a real cluster: kept across steps and runs, grown for parallel
steps, and an actor a deadline kills leaves the pool without losing the steps queued on it."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, Pipeline, Step
from flujo.backends import RayExecutionBackend

pytestmark = pytest.mark.ray


def pid(x: Any) -> int:
    return os.getpid()


def nap_pid(x: Any) -> tuple[int, float, float]:
    began = time.monotonic()
    time.sleep(0.5)
    return os.getpid(), began, time.monotonic()


async def blocks(path: str) -> str:
    """Block the worker's event loop, so the step's own timeout cannot fire there."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(60)
    return "never"


def _alive(process: int) -> bool:
    try:
        os.kill(process, 0)
    except ProcessLookupError:
        return False
    return True


async def test_steps_and_runs_share_one_actor(ray_address: str) -> None:
    backend = RayExecutionBackend(address=ray_address)
    runner = Flujo(
        Pipeline([Step.from_callable(pid, name=f"s{i}") for i in range(3)]),
        backend=backend,
        persist_state=False,
    )
    first = await runner.run_async(0)
    second = await runner.run_async(0)

    assert first.success and second.success
    pids = {step.output for result in (first, second) for step in result.step_history}
    assert len(pids) == 1 and os.getpid() not in pids, "one actor ran all six steps"
    assert len(backend.pool.actors()) == 1
    backend.close()
    assert backend.pool.actors() == []


async def test_a_map_gets_an_actor_per_concurrent_item(ray_address: str) -> None:
    backend = RayExecutionBackend(address=ray_address, actors=2)
    runner = Flujo(
        Step.map_over(
            Step.from_callable(nap_pid, name="nap"),
            items_from=lambda data, ctx: [1, 2, 3, 4],
            concurrency=2,
            name="naps",
        ),
        backend=backend,
        persist_state=False,
    )
    await runner.run_async(0)  # the pool's actors start
    result = await runner.run_async(0)

    assert result.success, result.feedback
    spans = result.output
    assert len({p for p, _, _ in spans}) == 2, "two actors"
    (_, a_start, a_end), (_, b_start, b_end) = spans[0], spans[1]
    assert a_start < b_end and b_start < a_end, "the first two items ran at the same time"
    backend.close()


async def test_a_wedged_step_has_its_actor_killed_and_the_pool_goes_on(
    ray_address: str, tmp_path: Path
) -> None:
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: unhandled.append(ctx))
    backend = RayExecutionBackend(address=ray_address, actors=1)
    wedged = Flujo(
        Step.from_callable(blocks, name="blocks", timeout_s=0.2),
        backend=backend,
        persist_state=False,
    )
    began = time.monotonic()
    result = await wedged.run_async(str(tmp_path / "pid"))

    assert not result.success
    assert "StepTimeoutError" in (result.feedback or "") and "actor was killed" in (
        result.feedback or ""
    )
    assert time.monotonic() - began < 30
    killed = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 20
    while _alive(killed):
        assert time.monotonic() < deadline, "the wedged actor's process still runs"
        await asyncio.sleep(0.1)
    after = await Flujo(
        Step.from_callable(pid, name="pid"), backend=backend, persist_state=False
    ).run_async(0)
    assert after.success and after.output != killed, "a new actor took its place"
    backend.close()
    # The killed call's answer (ActorDiedError) reached the driver after the step was
    # given up: nothing awaits it, and it must not surface as an unretrieved error.
    gc.collect()
    await asyncio.sleep(0)
    assert not unhandled, [ctx.get("message") for ctx in unhandled]


async def test_a_step_queued_on_an_actor_killed_for_a_deadline_is_not_lost(
    ray_address: str, tmp_path: Path
) -> None:
    # One actor; on_worker_lost="fail": a step counted as lost would fail at once.
    backend = RayExecutionBackend(address=ray_address, actors=1, on_worker_lost="fail")
    wedged = Flujo(
        Step.from_callable(blocks, name="blocks", timeout_s=0.2),
        backend=backend,
        persist_state=False,
    )
    quick = Flujo(Step.from_callable(pid, name="pid"), backend=backend, persist_state=False)
    marker = tmp_path / "pid"
    first = asyncio.ensure_future(wedged.run_async(str(marker)))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the wedged step did not start"
        await asyncio.sleep(0.05)
    second = asyncio.ensure_future(quick.run_async(0))  # queued behind it on the one actor
    blocked, queued = await asyncio.wait_for(asyncio.gather(first, second), 60)

    assert not blocked.success and "StepTimeoutError" in (blocked.feedback or "")
    assert queued.success, queued.feedback
    assert queued.output != int(marker.read_text()), "it ran on the actor that replaced it"
    backend.close()
