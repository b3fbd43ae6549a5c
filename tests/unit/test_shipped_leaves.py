"""The execution-backend seam: every leaf step shipped, its changes applied by the driver.

``ShippingBackend`` pickles each leaf step's work and outcome, as a remote backend
does. What a shipped step changes must land exactly as in-process: plain fields,
``set()`` saved once with the checkpoint, nothing from a failed step, retries and
fallbacks on the worker, nested leaves of every construct shipped, the cache on
the driver, and the run's own executor and providers used.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.application.core.execution_backend import LocalExecutionBackend
from flujo.application.core.executor_core import ExecutorCore
from flujo.providers import InMemoryStateProvider
from flujo.state import InMemoryBackend
from flujo.testing import Faults, FaultyProvider, ShippingBackend
from tests.unit.test_state_providers_integration import memory_container


class Ctx(PipelineContext):
    count: int = 0
    seen: list[str] = Field(default_factory=list)
    log: ContextReference[list[str]] = ContextReference(provider_id="kg", key="log")


FAILS_LEFT: dict[str, int] = {}


def add(data: Any, *, context: Ctx) -> Any:
    context.count += 1
    context.seen.append(f"add:{data}")
    context.log.set([*(context.log.get() or []), f"add:{data}"])
    return data


def flaky(data: Any, *, context: Ctx) -> Any:
    context.count += 100  # dropped with each failed attempt
    context.log.set(["from a failed attempt"])
    if FAILS_LEFT.get("flaky", 0) > 0:
        FAILS_LEFT["flaky"] -= 1
        raise RuntimeError("flaky failed")
    context.count -= 99
    return data


def broken(data: Any, *, context: Ctx) -> Any:
    context.count += 1000
    context.log.set(["never saved"])
    raise RuntimeError("broken")


def in_place(data: Any, *, context: Ctx) -> Any:
    value = context.log.get()
    assert value is not None
    value.append("in place")  # no set(): a watched value changed in place is saved too
    return data


def double(x: int) -> int:
    return x * 2


def _runner(
    pipeline: Any, shipping: ShippingBackend, store: Any, **kw: Any
) -> Flujo[Any, Any, Ctx]:
    return Flujo(
        pipeline,
        context_model=Ctx,
        state_providers={"kg": store},
        backend=shipping,
        container=memory_container(),
        **kw,
    )


async def test_a_shipped_steps_changes_land_once_with_its_checkpoint() -> None:
    store: InMemoryStateProvider[list[str]] = InMemoryStateProvider({"log": []})
    backend = InMemoryBackend()
    shipping = ShippingBackend()
    pipeline = Step.from_callable(add, name="a") >> Step.from_callable(add, name="b")
    result = await _runner(pipeline, shipping, store, state_backend=backend).run_async(1)

    assert result.success, result.feedback
    assert shipping.shipped == ["a", "b"]
    context = result.final_pipeline_context
    assert context is not None
    assert (context.count, context.seen) == (2, ["add:1", "add:1"])
    assert store.data["log"] == ["add:1", "add:1"]
    assert store.saves == 2, "one save per step, with its checkpoint"
    steps = await backend.load_steps(result.run_id)
    assert [s.name for s in steps] == ["a", "b"] and not any(s.pending for s in steps)


async def test_retries_run_on_the_worker_and_a_failed_attempt_changes_nothing() -> None:
    FAILS_LEFT["flaky"] = 2
    store: InMemoryStateProvider[list[str]] = InMemoryStateProvider({"log": []})
    shipping = ShippingBackend()
    step = Step.from_callable(flaky, name="flaky", max_retries=2)
    result = await _runner(step, shipping, store).run_async(1)

    assert result.success, result.feedback
    assert result.step_history[0].attempts == 3
    assert shipping.shipped == ["flaky"], "shipped once: the attempts ran where it went"
    context = result.final_pipeline_context
    assert context is not None and context.count == 1
    assert store.data["log"] == ["from a failed attempt"], "the successful attempt's set()"


async def test_a_failed_shipped_step_changes_neither_context_nor_provider() -> None:
    store: InMemoryStateProvider[list[str]] = InMemoryStateProvider({"log": ["before"]})
    result = await _runner(
        Step.from_callable(broken, name="broken"), ShippingBackend(), store
    ).run_async(1)

    assert not result.success and "broken" in (result.feedback or "")
    context = result.final_pipeline_context
    assert context is not None and context.count == 0
    assert store.data["log"] == ["before"] and store.saves == 0


async def test_a_fallback_runs_on_the_worker_from_the_state_before() -> None:
    store: InMemoryStateProvider[list[str]] = InMemoryStateProvider({"log": []})
    step = Step.from_callable(broken, name="broken").fallback(Step.from_callable(add, name="add"))
    result = await _runner(step, ShippingBackend(), store).run_async(5)

    assert result.success and result.step_history[0].fallback == "add"
    context = result.final_pipeline_context
    assert context is not None and context.count == 1
    assert store.data["log"] == ["add:5"]


async def test_an_in_place_change_made_on_the_worker_is_saved() -> None:
    store: InMemoryStateProvider[list[str]] = InMemoryStateProvider({"log": ["x"]})
    result = await _runner(
        Step.from_callable(in_place, name="p"), ShippingBackend(), store
    ).run_async(1)

    assert result.success, result.feedback
    assert store.data["log"] == ["x", "in place"]


async def test_every_nested_leaf_is_shipped_and_control_flow_stays_on_the_driver() -> None:
    store: InMemoryStateProvider[list[str]] = InMemoryStateProvider({"log": []})
    shipping = ShippingBackend()
    loop = Step.loop_until(
        Step.from_callable(add, name="in-loop"),
        lambda out, ctx: ctx.count >= 2,
        max_loops=5,
        name="loop",
    )
    mapped = Step.map_over(
        Step.from_callable(double, name="item"),
        items_from=lambda data, ctx: [1, 2, 3],
        concurrency=2,
        name="map",
    )
    branches = Step.parallel(
        {"x": Step.from_callable(double, name="px"), "y": Step.from_callable(double, name="py")},
        name="par",
    )
    result = await _runner(loop >> mapped >> branches, shipping, store).run_async(1)

    assert result.success, result.feedback
    assert sorted(shipping.shipped) == sorted(
        ["in-loop", "in-loop", "item", "item", "item", "px", "py"]
    )
    assert store.data["log"] == ["add:1", "add:1"]


async def test_the_cache_is_looked_up_on_the_driver() -> None:
    shipping = ShippingBackend()
    step = Step.from_callable(double, name="cached", cache=True)
    runner = Flujo(step, backend=shipping, container=memory_container(), persist_state=False)
    first = await runner.run_async(21)
    second = await runner.run_async(21)

    assert first.output == second.output == 42
    assert second.step_history[0].cache_hit
    assert shipping.shipped == ["cached"], "the hit never left the driver"


async def test_a_backend_given_to_the_runner_serves_each_run_with_the_runs_own_executor() -> None:
    """Flujo(backend=...) used to run steps with another executor and provider registry."""
    store: InMemoryStateProvider[list[str]] = InMemoryStateProvider({"log": []})
    given = LocalExecutionBackend(ExecutorCore())  # an executor that knows no provider
    runner = Flujo(
        Step.from_callable(add, name="a"),
        context_model=Ctx,
        state_providers={"kg": store},
        backend=given,
        container=memory_container(),
    )
    result = await runner.run_async(1)

    assert result.success, result.feedback
    assert store.data["log"] == ["add:1"]


async def test_a_step_that_cannot_ship_fails_clearly_and_the_run_ends_stored() -> None:
    import threading

    lock = threading.Lock()

    def holds_a_lock(data: Any) -> Any:
        with lock:
            return data

    backend = InMemoryBackend()
    runner = Flujo(
        Step.from_callable(holds_a_lock, name="locked"),
        backend=ShippingBackend(),
        state_backend=backend,
        container=memory_container(),
    )
    result = await runner.run_async(1)

    assert not result.success
    assert result.step_history[0].name == "locked"
    assert "pickle" in (result.feedback or "").lower() or "Can't" in (result.feedback or "")
    stored = await backend.load_run(result.run_id)
    assert stored is not None and stored.status == "failed"


def slow_add(data: Any, *, context: Ctx) -> Any:
    time.sleep(0.05)
    return add(data, context=context)


async def test_a_shipped_step_whose_save_fails_fails_with_its_own_latency() -> None:
    """Driven by hand (no runner), the driver saves a shipped set() when the step answers."""
    store = FaultyProvider(InMemoryStateProvider({"log": []}), save=Faults.always())
    executor = ExecutorCore(state_providers={"kg": store})
    ShippingBackend(executor)
    result = await executor.execute(Step.from_callable(slow_add, name="slow"), 1, context=Ctx())

    assert not result.success
    assert "StateSaveError" in (result.feedback or "") or "InjectedFault" in (
        result.feedback or ""
    ), result.feedback
    assert result.latency_s >= 0.05, "the failure reports the step's time, not the save's"
