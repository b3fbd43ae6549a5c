"""The shipped ``ray`` profile runs a pipeline on the cluster it names, on shared actors."""

from __future__ import annotations

import os

import pytest

from flujo import Flujo, Pipeline, Step
from flujo.containers import FlujoContainer
from tests.integration.postgres import postgres_dsn

pytestmark = pytest.mark.ray


def pid(x: object) -> int:
    return os.getpid()


async def test_the_ray_profile_runs_steps_on_the_cluster(
    ray_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUJO_STATE_URI", await postgres_dsn())
    container = FlujoContainer.from_profile("ray")
    container.config.from_dict({"execution": {"address": ray_address}})
    pipeline = Pipeline([Step.from_callable(pid, name=f"s{i}") for i in range(2)])
    async with Flujo(pipeline, container=container) as runner:
        first = await runner.run_async(0)
        second = await runner.run_async(0)

    assert first.success and second.success, (first.feedback, second.feedback)
    pids = {step.output for result in (first, second) for step in result.step_history}
    assert os.getpid() not in pids and len(pids) == 1, "one actor of the container's pool"
    assert len(container.ray_actors().actors()) == 1
    container.ray_actors().close()
