"""How ``Step.router`` runs: the chosen branches, concurrently, merged as ``parallel`` merges."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.domain.models import PipelineResult
from tests.helpers import DictStateProvider


class Ctx(PipelineContext):
    wanted: list[str] = Field(default_factory=list)
    shared: int = 0
    a: int = 0
    b: int = 0


class RefCtx(PipelineContext):
    notes: ContextReference[list[str]] = ContextReference(provider_id="notes", key="n")


RAN: list[str] = []


def _branch(name: str, fn: Any = None) -> Step[Any, Any]:
    def body(data: Any, *, context: Ctx) -> Any:
        RAN.append(name)
        return f"{name}:{data}" if fn is None else fn(data, context)

    return Step.from_callable(body, name=name)


def _branches() -> dict[str, Step[Any, Any]]:
    return {name: _branch(name) for name in ("x", "y", "z")}


async def _run(step: Step[Any, Any], data: Any = "q", **kw: Any) -> PipelineResult[Any]:
    RAN.clear()
    runner = Flujo(step, context_model=kw.pop("context_model", Ctx), persist_state=False, **kw)
    return await asyncio.wait_for(runner.run_async(data), 10)


def _ctx(result: PipelineResult[Any]) -> Any:
    assert result.final_pipeline_context is not None
    return result.final_pipeline_context


async def test_choosing_no_branch_runs_nothing_and_outputs_an_empty_dict() -> None:
    result = await _run(Step.router(lambda d, c: [], _branches()))
    assert result.success, result.feedback
    assert result.output == {}
    assert RAN == []


async def test_choosing_one_branch_by_name_runs_only_it() -> None:
    result = await _run(Step.router(lambda d, c: "y", _branches()))
    assert result.success, result.feedback
    assert result.output == {"y": "y:q"}
    assert RAN == ["y"]
    assert [r.name for r in result.step_history[0].step_history] == ["y"]


async def test_several_chosen_branches_run_concurrently_in_branches_order() -> None:
    started: list[str] = []
    both = asyncio.Event()

    async def waits(name: str) -> Any:
        started.append(name)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 5)  # only returns if the other branch started too
        return name

    branches = {n: Step.from_callable(lambda d, n=n: waits(n), name=n) for n in ("x", "y", "z")}
    result = await _run(Step.router(lambda d, c: ["z", "x"], branches))
    assert result.success, result.feedback
    assert list(result.output) == ["x", "z"], "in the order branches lists them"
    assert sorted(started) == ["x", "z"]


async def test_choose_sees_the_input_and_context_and_may_be_async() -> None:
    async def choose(data: str, context: Ctx) -> list[str]:
        await asyncio.sleep(0)
        return [name for name in context.wanted if name in data]

    seed = _branch("seed", lambda d, c: setattr(c, "wanted", ["x", "z"]) or d)
    router = Step.router(choose, _branches())
    result = await _run(seed >> router, "x and y and z")
    assert result.success, result.feedback
    assert result.output == {"x": "x:x and y and z", "z": "z:x and y and z"}


async def test_an_unknown_branch_name_fails_naming_the_known_ones() -> None:
    result = await _run(Step.router(lambda d, c: ["x", "sales"], _branches(), name="ask"))
    assert not result.success
    assert result.feedback == (
        "ControlFlowError: router 'ask': choose returned 'sales', which is not one of the "
        "branches ['x', 'y', 'z']"
    )
    assert RAN == [], "nothing runs when a name is wrong"


async def test_merge_combines_the_chosen_outputs() -> None:
    router = Step.router(
        lambda d, c: ["x", "y"], _branches(), merge=lambda outs: " + ".join(outs.values())
    )
    result = await _run(router)
    assert result.success, result.feedback
    assert result.output == "x:q + y:q"


async def test_chosen_branches_changing_one_field_differently_conflict_as_in_parallel() -> None:
    def setter(value: int) -> Any:
        return lambda d, c: setattr(c, "shared", value)

    branches = {"x": _branch("x", setter(1)), "y": _branch("y", setter(2))}
    result = await _run(Step.router(lambda d, c: ["x", "y"], branches, name="ask"))
    assert not result.success
    feedback = result.step_history[0].feedback or ""
    assert "ParallelConflictError: router 'ask': branches 'x' and 'y' both changed" in feedback
    assert _ctx(result).shared == 0, "a conflict leaves the context as it was"


async def test_chosen_branches_changing_different_fields_merge() -> None:
    branches = {
        "x": _branch("x", lambda d, c: setattr(c, "a", 1)),
        "y": _branch("y", lambda d, c: setattr(c, "b", 2)),
        "z": _branch("z", lambda d, c: setattr(c, "shared", 9)),
    }
    result = await _run(Step.router(lambda d, c: ["x", "y"], branches))
    assert result.success, result.feedback
    ctx = _ctx(result)
    assert (ctx.a, ctx.b, ctx.shared) == (1, 2, 0), "the branch not chosen changed nothing"


async def test_a_failed_branch_fails_the_router_and_its_siblings_changes_are_dropped() -> None:
    def boom(d: Any, c: Ctx) -> Any:
        raise ValueError("no")

    branches = {"x": _branch("x", lambda d, c: setattr(c, "a", 1)), "y": _branch("y", boom)}
    result = await _run(Step.router(lambda d, c: ["x", "y"], branches, name="ask"))
    assert not result.success
    assert "router 'ask': branch" in (result.feedback or "")
    assert _ctx(result).a == 0


async def test_collect_keeps_the_successful_chosen_branches() -> None:
    def boom(d: Any, c: Ctx) -> Any:
        raise ValueError("no")

    branches = {"x": _branch("x", lambda d, c: setattr(c, "a", 1) or "ok"), "y": _branch("y", boom)}
    router = Step.router(lambda d, c: ["x", "y"], branches, on_branch_failure="collect")
    result = await _run(router)
    assert result.success, result.feedback
    assert result.output == {"x": "ok"}
    assert _ctx(result).a == 1


async def test_only_the_named_reference_writer_may_set_a_reference() -> None:
    provider = DictStateProvider({"n": []})

    def writer(name: str) -> Step[Any, Any]:
        def body(data: Any, *, context: RefCtx) -> Any:
            context.notes.set([*(context.notes.get() or []), name])
            return name

        return Step.from_callable(body, name=name)

    branches = {"x": writer("x"), "y": writer("y")}
    ok = Step.router(lambda d, c: ["x"], branches, reference_writers={"notes": "x"})
    result = await _run(ok, context_model=RefCtx, state_providers={"notes": provider})
    assert result.success, result.feedback
    assert provider.data["n"] == ["x"]

    denied = Step.router(lambda d, c: ["y"], branches, reference_writers={"notes": "x"}, name="r")
    result = await _run(denied, context_model=RefCtx, state_providers={"notes": provider})
    assert not result.success
    assert "router branch 'y' of 'r' may only read notes" in (result.feedback or "")
    assert provider.data["n"] == ["x"]
