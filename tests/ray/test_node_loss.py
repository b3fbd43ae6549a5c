"""A node removed mid-step (``ray.cluster_utils.Cluster``, two nodes): the step runs again or fails.

The head's one CPU is held by a placeholder actor, so the step goes to the worker
node; the test removes that node while the step sleeps there, then frees the
head's CPU. With ``on_worker_lost="retry"`` the step runs again on the head and
the run succeeds; with ``"fail"`` the step fails with ``WorkerLostError``. Either
way the run ends, in seconds: never a hang. Both ways of shipping steps (actors,
tasks) are tested.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, Step
from flujo.backends import RayExecutionBackend
from tests.ray.conftest import TwoNodes

pytestmark = pytest.mark.ray

WORKERS = pytest.mark.parametrize("workers", ["actors", "tasks"])


def where(folder: str) -> str:
    """Say which node ran this try; the first try sleeps until its node is gone."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    marks = Path(folder)
    attempt = len(list(marks.glob("attempt-*"))) + 1
    (marks / f"attempt-{attempt}").write_text(node)
    if attempt == 1:
        time.sleep(120)
    return node


def _hold_cpu_of(node_id: str) -> Any:
    """Return an actor holding the one CPU of node ``node_id``, once it is up."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=1)
    class Holder:
        def ready(self) -> bool:
            return True

    holder = Holder.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
    ).remote()
    assert ray.get(holder.ready.remote(), timeout=60)
    return holder


async def _lose_the_worker_node(nodes: TwoNodes, folder: Path, holder: Any) -> None:
    """Wait for the step's first try on the worker node, remove that node, free the head."""
    import ray

    first = folder / "attempt-1"
    deadline = time.monotonic() + 60
    while not first.exists():
        assert time.monotonic() < deadline, "the step did not start on the cluster"
        await asyncio.sleep(0.05)
    assert first.read_text() == nodes.worker.node_id, "the step ran on the worker node"
    await asyncio.to_thread(nodes.cluster.remove_node, nodes.worker, allow_graceful=False)
    ray.kill(holder)


@WORKERS
async def test_a_step_whose_node_is_removed_runs_again_on_another_node(
    ray_two_nodes: TwoNodes, tmp_path: Path, workers: Any
) -> None:
    holder = _hold_cpu_of(ray_two_nodes.head_node_id)
    backend = RayExecutionBackend(on_worker_lost="retry", workers=workers)
    runner = Flujo(Step.from_callable(where, name="where"), backend=backend, persist_state=False)
    began = time.monotonic()
    run = asyncio.ensure_future(runner.run_async(str(tmp_path)))
    await _lose_the_worker_node(ray_two_nodes, tmp_path, holder)
    result = await asyncio.wait_for(run, 120)

    assert result.success, result.feedback
    assert result.output == ray_two_nodes.head_node_id, "the second try ran on the head"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempt-1", "attempt-2"]
    assert time.monotonic() - began < 90
    backend.close()


@WORKERS
async def test_a_step_whose_node_is_removed_fails_with_worker_lost_error(
    ray_two_nodes: TwoNodes, tmp_path: Path, workers: Any
) -> None:
    holder = _hold_cpu_of(ray_two_nodes.head_node_id)
    backend = RayExecutionBackend(on_worker_lost="fail", workers=workers)
    runner = Flujo(Step.from_callable(where, name="where"), backend=backend, persist_state=False)
    run = asyncio.ensure_future(runner.run_async(str(tmp_path)))
    await _lose_the_worker_node(ray_two_nodes, tmp_path, holder)
    lost_at = time.monotonic()
    result = await asyncio.wait_for(run, 60)

    assert not result.success
    feedback = result.feedback or ""
    assert "WorkerLostError" in feedback and "'where'" in feedback, feedback
    assert time.monotonic() - lost_at < 30, "the loss was reported, not waited out"
    assert [p.name for p in tmp_path.iterdir()] == ["attempt-1"], "it did not run again"
    backend.close()
