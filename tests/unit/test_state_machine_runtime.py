"""How ``Step.state_machine`` runs: transitions, limits, failures, retries and resume."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.domain.models import PipelineResult
from flujo.infra.state.sqlite import SQLiteBackend
from flujo.state import InMemoryBackend
from tests.helpers import DictStateProvider, Flaky


class Ctx(PipelineContext):
    next_state: str | None = None
    visited: list[str] = Field(default_factory=list)
    count: int = 0


class RefCtx(PipelineContext):
    visited: list[str] = Field(default_factory=list)
    log: ContextReference[list[str]] = ContextReference(provider_id="kg", key="log")


class Crash(BaseException):
    """Stands in for the process dying: nothing in flujo catches it."""


def _state(name: str, fn: Any = None, *, to: str | None = None, **options: Any) -> Step[Any, Any]:
    """A state that notes its visit, counts, optionally sets ``next_state``, and runs ``fn``."""

    def body(data: Any, *, context: Ctx) -> Any:
        context.visited = [*context.visited, name]
        context.count += 1
        if to is not None:
            context.next_state = to
        return data if fn is None else fn(data, context)

    return Step.from_callable(body, name=name, **options)


async def _run(step: Step[Any, Any], data: Any = None, **kw: Any) -> PipelineResult[Any]:
    runner = Flujo(step, context_model=kw.pop("context_model", Ctx), persist_state=False, **kw)
    return await runner.run_async(data)


def _ctx(result: PipelineResult[Any]) -> Any:
    assert result.final_pipeline_context is not None
    return result.final_pipeline_context


# --- transitions ---------------------------------------------------------------------------


async def test_output_mapped_transitions_move_back_and_forth_until_an_end_state() -> None:
    def back_or_on(data: Any, context: Ctx) -> str:
        return "again" if context.count < 5 else "enough"

    machine = Step.state_machine(
        {"a": _state("a"), "b": _state("b", back_or_on), "done": _state("done")},
        start="a",
        end=["done"],
        transitions={"a": "b", "b": {"again": "a", "enough": "done"}},
        max_transitions=10,
        name="sm",
    )
    result = await _run(machine, "x")
    assert result.success, result.feedback
    assert _ctx(result).visited == ["a", "b", "a", "b", "a", "b", "done"]
    assert result.output == "enough", "the last state's output (its input was b's output)"
    names = [r.name for r in result.step_history[0].step_history]
    assert names == ["a", "b", "a", "b", "a", "b", "done"], "one result per state run"


async def test_each_state_gets_the_previous_state_output_and_an_end_without_a_pipeline_stops() -> (
    None
):
    machine = Step.state_machine(
        {"one": _state("one", lambda d, c: d + 1), "two": _state("two", lambda d, c: d * 10)},
        start="one",
        end=["stop"],
        transitions={"one": "two", "two": "stop"},
        max_transitions=2,
    )
    result = await _run(machine, 1)
    assert result.success, result.feedback
    assert result.output == 20


async def test_an_output_the_mapping_does_not_know_fails_naming_the_outputs() -> None:
    machine = Step.state_machine(
        {"a": _state("a", lambda d, c: "maybe")},
        start="a",
        end=["yes", "no"],
        transitions={"a": {"yes": "yes", "no": "no"}},
        max_transitions=3,
        name="sm",
    )
    result = await _run(machine)
    assert not result.success
    assert "state_machine 'sm': state 'a' returned 'maybe'" in (result.feedback or "")
    assert "['yes', 'no']" in (result.feedback or "")


async def test_the_context_field_picks_the_next_state() -> None:
    machine = Step.state_machine(
        {"a": _state("a", to="c"), "b": _state("b", to="done"), "c": _state("c", to="b")},
        start="a",
        end=["done"],
        next_state_from="next_state",
        max_transitions=5,
    )
    result = await _run(machine)
    assert result.success, result.feedback
    assert _ctx(result).visited == ["a", "c", "b"]


async def test_the_field_is_cleared_before_each_state_so_an_old_value_cannot_move_twice() -> None:
    machine = Step.state_machine(
        {"a": _state("a", to="b"), "b": _state("b")},  # b forgets to set the field
        start="a",
        end=["done"],
        next_state_from="next_state",
        max_transitions=5,
        name="sm",
    )
    result = await _run(machine)
    assert not result.success
    assert _ctx(result).visited == ["a", "b"]
    feedback = result.feedback or ""
    assert "state 'b' did not set context.next_state" in feedback
    assert "['a', 'b', 'done']" in feedback


async def test_an_unknown_next_state_fails_naming_the_known_ones() -> None:
    machine = Step.state_machine(
        {"a": _state("a", to="nowhere"), "b": _state("b", to="done")},
        start="a",
        end=["done"],
        transitions={"a": ["b", "done"]},
        next_state_from="next_state",
        max_transitions=5,
        name="sm",
    )
    result = await _run(machine)
    assert not result.success
    feedback = result.feedback or ""
    assert "state_machine 'sm': state 'a' set context.next_state to 'nowhere'" in feedback
    assert "known: ['b', 'done']" in feedback, "the states that entry allows"


async def test_next_state_from_naming_no_context_field_fails_before_any_state_runs() -> None:
    class Bare(PipelineContext):
        visited: list[str] = Field(default_factory=list)

    machine = Step.state_machine(
        {"a": _state("a")}, start="a", end=["done"], next_state_from="phase", max_transitions=2
    )
    result = await _run(machine, context_model=Bare)
    assert not result.success
    assert "next_state_from names the field 'phase'" in (result.feedback or "")
    assert _ctx(result).visited == []


async def test_exceeding_max_transitions_fails_naming_the_step_and_the_limit() -> None:
    machine = Step.state_machine(
        {"a": _state("a"), "b": _state("b", lambda d, c: "loop" if c.count < 100 else "out")},
        start="a",
        end=["done"],
        transitions={"a": "b", "b": {"loop": "a", "out": "done"}},
        max_transitions=3,
        name="ping",
    )
    result = await _run(machine)
    assert not result.success
    feedback = result.feedback or ""
    assert "ControlFlowError: state_machine 'ping' reached max_transitions=3" in feedback
    assert _ctx(result).visited == ["a", "b", "a", "b"], "three moves made, the fourth refused"


async def test_the_move_into_an_end_state_counts_and_the_last_allowed_move_succeeds() -> None:
    def machine(limit: int) -> Step[Any, Any]:
        return Step.state_machine(
            {"a": _state("a"), "b": _state("b")},
            start="a",
            end=["done"],
            transitions={"a": "b", "b": "done"},
            max_transitions=limit,
        )

    assert (await _run(machine(2))).success
    assert not (await _run(machine(1))).success


# --- failures and retries ------------------------------------------------------------------


async def test_a_step_of_a_state_is_retried_by_its_own_policy() -> None:
    flaky = Flaky(2)
    machine = Step.state_machine(
        {"a": _state("a"), "b": Step.from_callable(flaky, name="flaky", max_retries=2)},
        start="a",
        end=["done"],
        transitions={"a": "b", "b": "done"},
        max_transitions=3,
    )
    result = await _run(machine, "in")
    assert result.success, result.feedback
    assert flaky.calls == 3
    assert result.output == "in"


async def test_a_failing_state_leaves_no_change_behind_but_finished_states_keep_theirs() -> None:
    provider = DictStateProvider({"log": []})

    def note(name: str, fail: bool = False) -> Step[Any, Any]:
        def body(data: Any, *, context: RefCtx) -> Any:
            context.visited = [*context.visited, name]
            context.log.set([*(context.log.get() or []), name])
            if fail:
                raise ValueError(f"{name} broke")
            return data

        return Step.from_callable(body, name=name)

    machine = Step.state_machine(
        {"a": note("a"), "b": note("b", fail=True)},
        start="a",
        end=["done"],
        transitions={"a": "b", "b": "done"},
        max_transitions=3,
        name="sm",
    )
    result = await _run(machine, context_model=RefCtx, state_providers={"kg": provider})
    assert not result.success
    assert "state_machine 'sm': state 'b' failed" in (result.feedback or "")
    assert "b broke" in (result.feedback or "")
    assert _ctx(result).visited == ["a"], "b's context change was dropped, a's kept"
    assert provider.data["log"] == [], "a failed step saves nothing it set()"
    history = result.step_history[0].step_history
    assert [(r.name, r.success) for r in history] == [("a", True), ("b", False)]


async def test_a_retried_state_machine_starts_again_without_the_failed_attempts_changes() -> None:
    flaky = Flaky(1)
    machine = Step.state_machine(
        {"a": _state("a"), "b": _state("b", lambda d, c: flaky(d))},
        start="a",
        end=["done"],
        transitions={"a": "b", "b": "done"},
        max_transitions=3,
        max_retries=1,
    )
    result = await _run(machine)
    assert result.success, result.feedback
    assert _ctx(result).visited == ["a", "b"], "the failed attempt's visits are gone"


# --- durable runs: checkpoints and resume --------------------------------------------------


def _durable_machine(ran: list[str], crash_in: str | None) -> Step[Any, Any]:
    def note(name: str) -> Step[Any, Any]:
        def body(data: Any, *, context: RefCtx) -> Any:
            ran.append(name)
            if name == crash_in:
                raise Crash
            context.visited = [*context.visited, name]
            context.log.set([*(context.log.get() or []), name])
            return f"{data}>{name}"

        return Step.from_callable(body, name=name)

    return Step.state_machine(
        {name: note(name) for name in ("a", "b", "c", "d")},
        start="a",
        end=["d"],
        transitions={"a": "b", "b": "c", "c": "d"},
        max_transitions=3,
        name="phases",
    )


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield InMemoryBackend()
        return
    sqlite = SQLiteBackend(tmp_path / "runs.db")
    yield sqlite
    await sqlite.close()


def _durable(backend: Any, provider: DictStateProvider, machine: Any) -> Any:
    return Flujo(
        Step.from_callable(lambda x: x, name="before") >> machine,
        context_model=RefCtx,
        state_backend=backend,
        state_providers={"kg": provider},
    )


async def test_a_crashed_machine_resumes_in_the_state_it_was_in_without_redoing_finished_ones(
    backend: Any,
) -> None:
    provider, ran = DictStateProvider({"log": []}), []
    with pytest.raises(Crash):
        await _durable(backend, provider, _durable_machine(ran, "c")).run_async("in", run_id="r1")
    assert ran == ["a", "b", "c"]
    assert provider.data["log"] == ["a", "b"], "each transition committed the states before it"

    ran.clear()
    resumed = await _durable(backend, provider, _durable_machine(ran, None)).resume_async("r1")
    assert resumed.success, resumed.feedback
    assert ran == ["c", "d"], "a and b were not run again"
    assert resumed.output == "in>a>b>c>d", "c got the input b had given it"
    assert _ctx(resumed).visited == ["a", "b", "c", "d"]
    assert provider.data["log"] == ["a", "b", "c", "d"], "no duplicate saves"


async def test_a_failed_durable_machine_resumes_after_its_last_transition(backend: Any) -> None:
    provider = DictStateProvider({"log": []})
    ran: list[str] = []

    def broken(name: str) -> Step[Any, Any]:
        def body(data: Any, *, context: RefCtx) -> Any:
            ran.append(name)
            context.visited = [*context.visited, name]
            if name == "b":
                raise ValueError("b broke")
            return data

        return Step.from_callable(body, name=name)

    machine = Step.state_machine(
        {"a": broken("a"), "b": broken("b")},
        start="a",
        end=["done"],
        transitions={"a": "b", "b": "done"},
        max_transitions=3,
        name="phases",
    )
    failed = await _durable(backend, provider, machine).run_async("in", run_id="r2")
    assert not failed.success
    fixed = _durable_machine(ran, None)
    ran.clear()
    resumed = await _durable(backend, provider, fixed).resume_async("r2")
    assert resumed.success, resumed.feedback
    assert ran == ["b", "c", "d"], "resumed in b, the state it failed in"
    assert _ctx(resumed).visited == ["a", "b", "c", "d"], "the failed b's change was not kept"


# --- crossings with other features ---------------------------------------------------------


async def test_a_timeout_on_the_machine_stops_it_between_states() -> None:
    import asyncio

    async def slow(data: Any) -> str:
        await asyncio.sleep(0.02)
        return "again"

    machine = Step.state_machine(
        {"a": Step.from_callable(slow, name="slow")},
        start="a",
        end=["done"],
        transitions={"a": {"again": "a", "stop": "done"}},
        max_transitions=1000,
        timeout_s=0.1,
    )
    result = await _run(machine)
    assert not result.success
    assert "StepTimeoutError" in (result.feedback or "")
    assert len(result.step_history[0].step_history) < 50


async def test_a_router_as_a_state_runs_its_chosen_branches_and_the_machine_goes_on() -> None:
    router = Step.router(
        lambda d, c: ["x", "y"],
        {
            "x": Step.from_callable(lambda d: 1, name="x"),
            "y": Step.from_callable(lambda d: 2, name="y"),
        },
        merge=lambda outs: "merged" if outs == {"x": 1, "y": 2} else "wrong",
    )
    machine = Step.state_machine(
        {"fan": router, "after": _state("after")},
        start="fan",
        end=["after"],
        transitions={"fan": {"merged": "after"}},
        max_transitions=2,
    )
    result = await _run(machine)
    assert result.success, result.feedback
    assert result.output == "merged"
    assert _ctx(result).visited == ["after"]


async def test_machines_in_parallel_branches_merge_and_conflict_as_branches_do() -> None:
    def set_count(value: int) -> Any:
        def body(data: Any, *, context: Ctx) -> Any:
            context.count = value
            return data

        return body

    def machine(name: str, value: int) -> Step[Any, Any]:
        return Step.state_machine(
            {"set": Step.from_callable(set_count(value), name=f"{name}-set")},
            start="set",
            end=["set"],
            max_transitions=1,
            name=name,
        )

    same = Step.parallel({"l": machine("l", 7), "r": machine("r", 7)})
    result = await _run(same)
    assert result.success, result.feedback
    assert _ctx(result).count == 7

    clash = Step.parallel({"l": machine("l", 1), "r": machine("r", 2)}, name="fan")
    result = await _run(clash)
    assert not result.success
    feedback = result.step_history[0].feedback or ""
    assert "ParallelConflictError: parallel 'fan': branches 'l' and 'r' both changed" in feedback
    assert _ctx(result).count == 0
