"""RayExecutionBackend against a real Ray head on loopback (the ``ray_address`` fixture).

What a shipped step changes lands as it does in-process; nested leaves go to the
cluster; a step past its timeout budget has its task cancelled; a lost worker is
retried or fails with ``WorkerLostError``, never a hang.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.backends import RayExecutionBackend
from flujo.providers import InMemoryStateProvider
from flujo.state import InMemoryBackend
from tests.unit.test_state_providers_integration import memory_container

pytestmark = pytest.mark.ray

WORKERS = pytest.mark.parametrize("workers", ["actors", "tasks"])


class Ctx(PipelineContext):
    count: int = 0
    pids: list[int] = Field(default_factory=list)
    log: ContextReference[list[str]] = ContextReference(provider_id="kg", key="log")


def add(data: Any, *, context: Ctx) -> Any:
    context.count += 1
    context.pids.append(os.getpid())
    context.log.set([*(context.log.get() or []), f"add:{data}"])
    return data


def double(x: int) -> int:
    return x * 2


def sleepy(x: int) -> int:
    time.sleep(60)
    return x


def dies_once(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(1)  # the worker process dies mid-task
    return "second worker"


def always_dies(marker: str) -> str:
    os._exit(1)


@WORKERS
async def test_shipped_steps_change_context_and_references_once(
    ray_address: str, workers: Any
) -> None:
    store: InMemoryStateProvider[list[str]] = InMemoryStateProvider({"log": []})
    backend = InMemoryBackend()
    pipeline = (
        Step.from_callable(add, name="first")
        >> Step.map_over(
            Step.from_callable(double, name="item"),
            items_from=lambda data, ctx: [1, 2, 3, 4],
            concurrency=2,
            name="items",
        )
        >> Step.loop_until(
            Step.from_callable(add, name="again"),
            lambda out, ctx: ctx.count >= 3,
            max_loops=5,
            name="loop",
        )
    )
    runner = Flujo(
        pipeline,
        context_model=Ctx,
        state_providers={"kg": store},
        backend=RayExecutionBackend(address=ray_address, workers=workers),
        state_backend=backend,
        container=memory_container(),
    )
    result = await runner.run_async(1)

    assert result.success, result.feedback
    context = result.final_pipeline_context
    assert context is not None and context.count == 3
    assert os.getpid() not in context.pids, "the steps ran on Ray workers"
    assert store.data["log"] == ["add:1", "add:[2, 4, 6, 8]", "add:[2, 4, 6, 8]"]
    assert store.saves == 3, "each set() saved once, with its checkpoint"
    assert not any(s.pending for s in await backend.load_steps(result.run_id))


@WORKERS
async def test_a_step_past_its_timeout_budget_has_its_task_cancelled(
    ray_address: str, workers: Any
) -> None:
    runner = Flujo(
        Step.from_callable(sleepy, name="sleepy", timeout_s=0.2),
        backend=RayExecutionBackend(address=ray_address, workers=workers),
        persist_state=False,
    )
    start = time.perf_counter()
    result = await runner.run_async(1)

    assert not result.success
    assert "StepTimeoutError" in (result.feedback or "")
    assert time.perf_counter() - start < 30, "it did not wait for the sleeping task"


@WORKERS
async def test_a_lost_worker_is_retried(ray_address: str, tmp_path: Path, workers: Any) -> None:
    runner = Flujo(
        Step.from_callable(dies_once, name="dies"),
        backend=RayExecutionBackend(address=ray_address, on_worker_lost="retry", workers=workers),
        persist_state=False,
    )
    result = await runner.run_async(str(tmp_path / "marker"))

    assert result.success, result.feedback
    assert result.output == "second worker"


@WORKERS
async def test_a_lost_worker_fails_the_step_with_worker_lost_error(
    ray_address: str, workers: Any
) -> None:
    runner = Flujo(
        Step.from_callable(always_dies, name="dies"),
        backend=RayExecutionBackend(address=ray_address, on_worker_lost="fail", workers=workers),
        persist_state=False,
    )
    result = await runner.run_async("x")

    assert not result.success
    assert "WorkerLostError" in (result.feedback or "") and "'dies'" in (result.feedback or "")
