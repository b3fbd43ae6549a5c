"""Resuming stored runs: failed and crashed runs continue after their last completed step."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from flujo import (
    ConfigurationError,
    ContextReference,
    Flujo,
    Pipeline,
    PipelineContext,
    Step,
    StepOutput,
    UsageLimits,
)
from flujo.application.core.pipeline_run import SCHEMA_VERSION
from flujo.domain.errors import (
    ResumeError,
    RunNotFoundError,
    StateBackendError,
    StateCorruptError,
)
from flujo.domain.events import HookEvent, RunFinished, RunStarted, StepStarted
from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.infra.state.memory import InMemoryBackend
from flujo.infra.state.sqlite import SQLiteBackend
from flujo.testing import FakeClock, override_providers
from tests.helpers import DictStateProvider
from tests.lifecycle_doubles import Mortal, ProcessDied, short_lease


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)


class Ctx(PipelineContext):
    count: int = 0
    trail: list[str] = Field(default_factory=list)


class RefCtx(PipelineContext):
    notes: ContextReference[list[str]] = ContextReference(provider_id="notes", key="n")


class Calls:
    """Counts how often each named step ran, and with what input."""

    def __init__(self) -> None:
        self.inputs: dict[str, list[Any]] = {}

    def count(self, name: str) -> int:
        return len(self.inputs.get(name, []))

    def step(self, name: str, fn: Callable[[Any], Any] = lambda x: x) -> Step[Any, Any]:
        def run(data: Any, *, context: Ctx) -> Any:
            self.inputs.setdefault(name, []).append(data)
            context.count += 1
            context.trail.append(name)
            return fn(data)

        return Step.from_callable(run, name=name)


def _boom(data: Any) -> Any:
    raise ValueError("step b is broken")


def _three_steps(calls: Calls, b: Callable[[Any], Any]) -> Pipeline[Any, Any]:
    return (
        calls.step("a", lambda x: x + 1) >> calls.step("b", b) >> calls.step("c", lambda x: x * 10)
    )


@pytest.fixture
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    backend = SQLiteBackend(tmp_path / "runs.db")
    yield backend
    await backend.close()


# --- a failed run continues from the failed step ---------------------------------------


async def test_resume_with_a_fixed_step_continues_from_the_failed_step() -> None:
    backend = InMemoryBackend()
    calls = Calls()
    broken = Flujo(
        _three_steps(calls, _boom), context_model=Ctx, state_backend=backend, pipeline_name="p"
    )
    failed = await broken.run_async(1)
    assert failed.status == "failed"
    assert calls.count("a") == 1 and calls.count("b") == 1 and calls.count("c") == 0

    fixed = Flujo(
        _three_steps(calls, lambda x: x + 100),
        context_model=Ctx,
        state_backend=backend,
        pipeline_name="p",
    )
    resumed = await fixed.resume_async(failed.run_id)

    assert resumed.success and resumed.status == "completed", resumed.feedback
    assert resumed.run_id == failed.run_id
    assert resumed.output == (1 + 1 + 100) * 10
    assert calls.count("a") == 1, "a completed step ran again on resume"
    assert calls.inputs["b"] == [2, 2], "the failed step must get the output of a as input"
    assert calls.count("c") == 1
    record = await backend.load_run(failed.run_id)
    assert record is not None
    assert (record.status, record.step_index) == ("completed", 3)


async def test_resume_accepts_the_failed_result_object() -> None:
    attempts = {"n": 0}

    def fails_once(x: int) -> int:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RuntimeError("first time only")
        return x

    calls = Calls()
    runner = Flujo(
        _three_steps(calls, fails_once), context_model=Ctx, state_backend=InMemoryBackend()
    )
    failed = await runner.run_async(4)
    assert not failed.success

    resumed = await runner.resume_async(failed)

    assert resumed.success, resumed.feedback
    assert resumed.output == 50
    assert calls.count("a") == 1


async def test_context_is_restored_from_the_last_completed_step() -> None:
    def dirty_then_fail(data: Any, *, context: Ctx) -> Any:
        context.count = 99  # changes made by the failed step must not survive
        context.trail.append("b-failed")
        raise ValueError("no")

    seen: list[tuple[int, list[str], str | None]] = []

    def b_ok(data: Any, *, context: Ctx) -> Any:
        seen.append((context.count, list(context.trail), context.run_id))
        return data

    calls = Calls()
    backend = InMemoryBackend()
    first = Flujo(
        calls.step("a") >> Step.from_callable(dirty_then_fail, name="b"),
        context_model=Ctx,
        state_backend=backend,
        initial_context_data={"trail": ["start"]},
    )
    failed = await first.run_async(0)
    assert not failed.success

    second = Flujo(
        calls.step("a") >> Step.from_callable(b_ok, name="b"),
        context_model=Ctx,
        state_backend=backend,
    )
    resumed = await second.resume_async(failed.run_id)

    assert resumed.success, resumed.feedback
    assert seen == [(1, ["start", "a"], failed.run_id)]
    final = resumed.final_pipeline_context
    assert isinstance(final, Ctx)
    assert final.count == 1 and final.trail == ["start", "a"]


async def test_a_run_failed_at_its_first_step_resumes_with_the_original_input() -> None:
    backend = InMemoryBackend()
    got: list[Any] = []

    def first_bad(x: Any) -> Any:
        raise ValueError("bad")

    def first_good(x: Any) -> Any:
        got.append(x)
        return x["n"] + 1

    failed = await Flujo(
        Step.from_callable(first_bad, name="first"), state_backend=backend
    ).run_async({"n": 41})
    assert not failed.success

    resumed = await Flujo(
        Step.from_callable(first_good, name="first"), state_backend=backend
    ).resume_async(failed.run_id)

    assert resumed.success, resumed.feedback
    assert got == [{"n": 41}]
    assert resumed.output == 42


async def test_step_history_includes_the_earlier_results() -> None:
    backend = InMemoryBackend()
    calls = Calls()
    failed = await Flujo(
        _three_steps(calls, _boom), context_model=Ctx, state_backend=backend
    ).run_async(1)
    resumed = await Flujo(
        _three_steps(calls, lambda x: x), context_model=Ctx, state_backend=backend
    ).resume_async(failed.run_id)

    assert [r.name for r in resumed.step_history] == ["a", "b", "c"]
    assert all(r.success for r in resumed.step_history)
    assert [r.output for r in resumed.step_history] == [2, 2, 20]


async def test_totals_include_the_cost_of_steps_before_the_resume() -> None:
    def priced(cost: float, tokens: int) -> Step[Any, Any]:
        def fn(x: int) -> StepOutput[int]:
            return StepOutput(x + 1, cost_usd=cost, tokens=tokens)

        return Step.from_callable(fn, name=f"cost{tokens}")

    def broken(x: int) -> int:
        raise ValueError("later")

    backend = InMemoryBackend()
    first = Flujo(
        priced(0.25, 10) >> Step.from_callable(broken, name="last"), state_backend=backend
    )
    failed = await first.run_async(0)
    assert not failed.success

    resumed = await Flujo(
        priced(0.25, 10) >> Step.from_callable(lambda x: StepOutput(x, 0.5, 7), name="last"),
        state_backend=backend,
    ).resume_async(failed.run_id)

    assert resumed.success, resumed.feedback
    assert resumed.total_cost_usd == pytest.approx(0.75)
    assert resumed.total_tokens == 17


async def test_resume_of_a_run_that_fails_again_can_be_resumed_once_more() -> None:
    attempts = {"n": 0}

    def fails_twice(x: int) -> int:
        attempts["n"] += 1
        if attempts["n"] <= 2:
            raise RuntimeError(f"attempt {attempts['n']}")
        return x

    calls = Calls()
    runner = Flujo(
        _three_steps(calls, fails_twice), context_model=Ctx, state_backend=InMemoryBackend()
    )
    failed = await runner.run_async(1)
    again = await runner.resume_async(failed)
    assert again.status == "failed"
    assert "attempt 2" in (again.feedback or "")

    done = await runner.resume_async(failed.run_id)
    assert done.success, done.feedback
    assert calls.count("a") == 1
    assert [r.name for r in done.step_history] == ["a", "b", "c"]


async def test_resume_keeps_created_at_and_moves_updated_at() -> None:
    backend = InMemoryBackend()
    calls = Calls()
    first = Flujo(_three_steps(calls, _boom), context_model=Ctx, state_backend=backend)
    override_providers(first.container, clock=FakeClock(1000.0))
    failed = await first.run_async(1)

    second = Flujo(_three_steps(calls, lambda x: x), context_model=Ctx, state_backend=backend)
    override_providers(second.container, clock=FakeClock(2000.0))
    await second.resume_async(failed.run_id)

    record = await backend.load_run(failed.run_id)
    assert record is not None
    assert record.created_at == 1000.0
    assert record.updated_at == 2000.0


async def test_get_run_after_a_resume_shows_each_step_once_and_successful() -> None:
    backend = InMemoryBackend()
    calls = Calls()
    failed = await Flujo(
        _three_steps(calls, _boom), context_model=Ctx, state_backend=backend
    ).run_async(1)
    runner = Flujo(_three_steps(calls, lambda x: x), context_model=Ctx, state_backend=backend)
    assert [(s.name, s.success) for s in (await runner.get_run(failed.run_id)).step_history] == [
        ("a", True),
        ("b", False),
    ]

    await runner.resume_async(failed.run_id)

    info = await runner.get_run(failed.run_id)
    assert info.status == "completed" and info.steps_completed == 3
    assert [(s.name, s.success) for s in info.step_history] == [
        ("a", True),
        ("b", True),
        ("c", True),
    ]


async def test_hooks_see_the_resumed_steps_with_their_pipeline_index() -> None:
    backend = InMemoryBackend()
    calls = Calls()
    failed = await Flujo(
        _three_steps(calls, _boom), context_model=Ctx, state_backend=backend
    ).run_async(1)
    events: list[HookEvent] = []
    runner = Flujo(
        _three_steps(calls, lambda x: x),
        context_model=Ctx,
        state_backend=backend,
        hooks=[events.append],
    )

    await runner.resume_async(failed.run_id)

    started = [(e.step_name, e.index) for e in events if isinstance(e, StepStarted)]
    assert started == [("b", 1), ("c", 2)]
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert events[-1].result.run_id == failed.run_id


async def test_usage_limits_count_the_cost_spent_before_the_resume() -> None:
    backend = InMemoryBackend()
    limits = UsageLimits(total_cost_usd_limit=0.6)

    def spend(cost: float, name: str) -> Step[Any, Any]:
        return Step.from_callable(lambda x: StepOutput(x, cost_usd=cost), name=name)

    failed = await Flujo(
        spend(0.5, "a") >> Step.from_callable(_boom, name="b"),
        state_backend=backend,
        usage_limits=limits,
    ).run_async(1)
    assert failed.status == "failed"

    resumed = await Flujo(
        spend(0.5, "a") >> spend(0.2, "b"), state_backend=backend, usage_limits=limits
    ).resume_async(failed.run_id)

    assert resumed.status == "failed"
    assert resumed.error is not None and "UsageLimitExceeded" in resumed.error
    assert resumed.total_cost_usd == pytest.approx(0.7)


async def test_a_run_whose_input_could_not_be_stored_cannot_resume_and_says_why() -> None:
    backend = InMemoryBackend()

    class Opaque:
        pass

    failed = await Flujo(Step.from_callable(_boom, name="a"), state_backend=backend).run_async(
        Opaque()
    )
    assert failed.status == "failed"
    runner = Flujo(Step.from_callable(lambda x: x, name="a"), state_backend=backend)
    with pytest.raises(ResumeError, match="JSON") as info:
        await runner.resume_async(failed.run_id)
    assert failed.run_id in str(info.value)


# --- references ------------------------------------------------------------------------


async def test_references_are_hydrated_again_on_resume() -> None:
    provider = DictStateProvider({"n": ["x"]})
    backend = InMemoryBackend()
    seen: list[list[str] | None] = []

    def add(item: str) -> Step[Any, Any]:
        def fn(data: Any, *, context: RefCtx) -> Any:
            context.notes.set([*(context.notes.get() or []), item])
            return data

        return Step.from_callable(fn, name=f"add-{item}")

    def look_then_fail(data: Any, *, context: RefCtx) -> Any:
        raise ValueError("later")

    def look(data: Any, *, context: RefCtx) -> Any:
        seen.append(context.notes.get())
        return data

    failed = await Flujo(
        add("a") >> Step.from_callable(look_then_fail, name="look"),
        context_model=RefCtx,
        state_backend=backend,
        state_providers={"notes": provider},
    ).run_async(None)
    assert not failed.success
    assert provider.data["n"] == ["x", "a"]
    assert provider.loads == ["n"]

    provider.data["n"] = ["changed while stopped"]
    resumed = await Flujo(
        add("a") >> Step.from_callable(look, name="look"),
        context_model=RefCtx,
        state_backend=backend,
        state_providers={"notes": provider},
    ).resume_async(failed.run_id)

    assert resumed.success, resumed.feedback
    assert provider.loads == ["n", "n"], "a resumed run must load its references again"
    assert seen == [["changed while stopped"]]


async def test_stored_context_holds_the_pointer_not_the_referenced_data(
    sqlite_backend: SQLiteBackend,
) -> None:
    provider = DictStateProvider({"n": ["secret-payload"]})

    def fail(data: Any) -> Any:
        raise ValueError("stop")

    def touch(data: Any, *, context: RefCtx) -> Any:
        return context.notes.get()

    failed = await Flujo(
        Step.from_callable(touch, name="touch") >> Step.from_callable(fail, name="fail"),
        context_model=RefCtx,
        state_backend=sqlite_backend,
        state_providers={"notes": provider},
    ).run_async(None)
    steps = await sqlite_backend.load_steps(failed.run_id)
    assert b"secret-payload" not in steps[0].context
    assert b'"provider_id":"notes"' in steps[0].context


# --- crashed runs ----------------------------------------------------------------------


async def test_a_crashed_run_resumes_after_its_last_checkpoint(
    sqlite_backend: SQLiteBackend,
) -> None:
    calls = Calls()
    dying = Mortal(sqlite_backend)

    def crash(x: Any) -> Any:
        dying.kill()  # the process dies: nothing it would still write reaches the file
        raise ProcessDied

    crashing = Flujo(
        calls.step("a", lambda x: x + 1)
        >> calls.step("b", lambda x: x + 1)
        >> calls.step("c", crash)
        >> calls.step("d", lambda x: x + 1),
        context_model=Ctx,
        state_backend=dying,
        pipeline_name="crashy",
    )
    short_lease(crashing.container)
    with pytest.raises(ProcessDied):
        await crashing.run_async(0, run_id="crashed-run")
    record = await sqlite_backend.load_run("crashed-run")
    assert record is not None
    assert (record.status, record.step_index) == ("running", 2)
    assert record.owner is not None and record.lease_until is not None
    await asyncio.sleep(max(record.lease_until - time.time(), 0.0))  # the dead owner's lease

    # A new process: a new backend on the same file, a runner with a working step c.
    await sqlite_backend.close()
    reopened = SQLiteBackend(sqlite_backend.path)
    try:
        recovered = Flujo(
            calls.step("a", lambda x: x + 1)
            >> calls.step("b", lambda x: x + 1)
            >> calls.step("c", lambda x: x + 1)
            >> calls.step("d", lambda x: x + 1),
            context_model=Ctx,
            state_backend=reopened,
            pipeline_name="crashy",
        )
        short_lease(recovered.container)
        listed = await recovered.list_runs(status="running")
        assert [r.run_id for r in listed] == ["crashed-run"]
        resumed = await recovered.resume_async("crashed-run")
    finally:
        await reopened.close()

    assert resumed.success, resumed.feedback
    assert resumed.output == 4
    assert (calls.count("a"), calls.count("b"), calls.count("d")) == (1, 1, 1)
    assert calls.inputs["c"] == [2, 2]  # the in-flight step runs again, once
    final = resumed.final_pipeline_context
    assert isinstance(final, Ctx)
    assert final.trail == ["a", "b", "c", "d"]
    assert final.count == 4


async def test_a_run_recorded_by_hand_as_running_resumes_from_its_step_index() -> None:
    backend = InMemoryBackend()
    await backend.save_run(
        RunRecord(
            run_id="hand",
            pipeline_name="p",
            pipeline_version="latest",
            status="running",
            step_index=1,
            input=b"5",
            context=b'{"run_id":"hand","count":0,"trail":[]}',
            created_at=1.0,
            updated_at=2.0,
        )
    )
    await backend.checkpoint(
        StepRecord(
            run_id="hand",
            index=0,
            name="a",
            success=True,
            result=b'{"name":"a","output":6,"success":true}',
            context=b'{"run_id":"hand","count":1,"trail":["a"]}',
            recorded_at=2.0,
        )
    )
    calls = Calls()
    runner = Flujo(
        _three_steps(calls, lambda x: x + 1),
        context_model=Ctx,
        state_backend=backend,
        pipeline_name="p",
    )

    resumed = await runner.resume_async("hand")

    assert resumed.success, resumed.feedback
    assert calls.count("a") == 0
    assert calls.inputs["b"] == [6]
    assert resumed.output == 70
    final = resumed.final_pipeline_context
    assert isinstance(final, Ctx)
    assert final.trail == ["a", "b", "c"]


# --- what cannot be resumed ------------------------------------------------------------


async def test_unknown_run_id_is_run_not_found_naming_it() -> None:
    runner = Flujo(Step.from_callable(lambda x: x, name="s"), state_backend=InMemoryBackend())
    with pytest.raises(RunNotFoundError, match="no-such-run"):
        await runner.resume_async("no-such-run")


async def test_a_completed_run_cannot_be_resumed() -> None:
    calls = Calls()
    runner = Flujo(
        _three_steps(calls, lambda x: x), context_model=Ctx, state_backend=InMemoryBackend()
    )
    done = await runner.run_async(1)
    with pytest.raises(ResumeError, match="completed") as info:
        await runner.resume_async(done)
    assert done.run_id in str(info.value)
    assert calls.count("a") == 1


async def test_a_run_of_another_pipeline_cannot_be_resumed() -> None:
    backend = InMemoryBackend()
    calls = Calls()
    failed = await Flujo(
        _three_steps(calls, _boom), context_model=Ctx, state_backend=backend, pipeline_name="one"
    ).run_async(1)
    other = Flujo(
        _three_steps(calls, lambda x: x),
        context_model=Ctx,
        state_backend=backend,
        pipeline_name="two",
    )
    with pytest.raises(ResumeError) as info:
        await other.resume_async(failed.run_id)
    message = str(info.value)
    assert failed.run_id in message and "'one'" in message and "'two'" in message
    assert calls.count("c") == 0
    record = await backend.load_run(failed.run_id)
    assert record is not None and record.status == "failed"  # untouched


async def test_resume_needs_persisted_state() -> None:
    runner = Flujo(Step.from_callable(lambda x: x, name="s"), persist_state=False)
    with pytest.raises(ConfigurationError, match="persist_state=False"):
        await runner.resume_async("any")


async def _failed_run_in_sqlite(backend: SQLiteBackend, *, at_first_step: bool = False) -> str:
    calls = Calls()
    pipeline = (
        calls.step("a", _boom) >> calls.step("b")
        if at_first_step
        else calls.step("a", lambda x: x + 1) >> calls.step("b", _boom)
    )
    failed = await Flujo(pipeline, context_model=Ctx, state_backend=backend).run_async(1)
    assert not failed.success
    await backend.close()
    return failed.run_id


def _fixed_runner(backend: SQLiteBackend) -> Flujo[Any, Any, Ctx]:
    calls = Calls()
    return Flujo(calls.step("a") >> calls.step("b"), context_model=Ctx, state_backend=backend)


def _corrupt(path: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            assert conn.execute(sql, params).rowcount == 1
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("sql", "at_first_step"),
    [
        ("UPDATE flujo_steps SET context = ? WHERE run_id = ? AND idx = 0", False),
        ("UPDATE flujo_steps SET result = ? WHERE run_id = ? AND idx = 0", False),
        ("UPDATE flujo_runs SET input = ? WHERE run_id = ?", True),
        ("UPDATE flujo_runs SET context = ? WHERE run_id = ?", True),
    ],
    ids=["step-context", "step-result", "run-input", "run-context"],
)
async def test_corrupt_stored_json_is_a_state_backend_error_naming_the_run(
    sqlite_backend: SQLiteBackend, sql: str, at_first_step: bool
) -> None:
    run_id = await _failed_run_in_sqlite(sqlite_backend, at_first_step=at_first_step)
    _corrupt(sqlite_backend.path, sql, b"\x80{not json", run_id)

    with pytest.raises(StateCorruptError, match=run_id) as info:
        await _fixed_runner(sqlite_backend).resume_async(run_id)
    assert isinstance(info.value, StateBackendError) and info.value.run_id == run_id
    assert "JSON" in str(info.value)


async def test_stored_context_of_the_wrong_shape_is_a_state_backend_error(
    sqlite_backend: SQLiteBackend,
) -> None:
    run_id = await _failed_run_in_sqlite(sqlite_backend)
    _corrupt(
        sqlite_backend.path,
        "UPDATE flujo_steps SET context = ? WHERE run_id = ? AND idx = 0",
        b'{"count": "not a number"}',
        run_id,
    )
    with pytest.raises(StateBackendError, match=run_id) as info:
        await _fixed_runner(sqlite_backend).resume_async(run_id)
    assert "count" in str(info.value)


async def test_stored_step_result_of_the_wrong_shape_is_a_state_backend_error(
    sqlite_backend: SQLiteBackend,
) -> None:
    run_id = await _failed_run_in_sqlite(sqlite_backend)
    _corrupt(
        sqlite_backend.path,
        "UPDATE flujo_steps SET result = ? WHERE run_id = ? AND idx = 0",
        b"[1, 2, 3]",
        run_id,
    )
    with pytest.raises(StateBackendError, match=run_id):
        await _fixed_runner(sqlite_backend).resume_async(run_id)


async def test_a_missing_step_record_is_a_state_backend_error(
    sqlite_backend: SQLiteBackend,
) -> None:
    # The header says step 0 completed, but its record is gone: the run cannot be rebuilt.
    run_id = await _failed_run_in_sqlite(sqlite_backend)
    _corrupt(sqlite_backend.path, "DELETE FROM flujo_steps WHERE run_id = ? AND idx = 0", run_id)
    runner = _fixed_runner(sqlite_backend)
    with pytest.raises(StateBackendError, match=run_id):
        await runner.resume_async(run_id)


async def test_a_newer_schema_version_is_refused(sqlite_backend: SQLiteBackend) -> None:
    run_id = await _failed_run_in_sqlite(sqlite_backend)
    _corrupt(
        sqlite_backend.path,
        "UPDATE flujo_runs SET schema_version = ? WHERE run_id = ?",
        SCHEMA_VERSION + 1,
        run_id,
    )
    calls = Calls()
    runner = Flujo(
        calls.step("a") >> calls.step("b"), context_model=Ctx, state_backend=sqlite_backend
    )
    with pytest.raises(StateBackendError, match="schema version") as info:
        await runner.resume_async(run_id)
    assert run_id in str(info.value)
    assert calls.inputs == {}


async def test_a_corrupt_run_is_left_as_it_was(sqlite_backend: SQLiteBackend) -> None:
    run_id = await _failed_run_in_sqlite(sqlite_backend)
    _corrupt(
        sqlite_backend.path,
        "UPDATE flujo_steps SET context = ? WHERE run_id = ? AND idx = 0",
        b"garbage",
        run_id,
    )
    with pytest.raises(StateBackendError):
        await _fixed_runner(sqlite_backend).resume_async(run_id)
    record = await sqlite_backend.load_run(run_id)
    assert record is not None and record.status == "failed"


# --- the sync door ---------------------------------------------------------------------


def test_sync_resume(tmp_path: Path) -> None:
    path = tmp_path / "sync.db"
    calls = Calls()

    def runner(b: Callable[[Any], Any]) -> Flujo[Any, Any, Ctx]:
        return Flujo(
            _three_steps(calls, b),
            context_model=Ctx,
            container=_sqlite_container(path),
        )

    failed = runner(_boom).run(1)
    assert not failed.success
    resumed = runner(lambda x: x).resume(failed.run_id)

    assert resumed.success, resumed.feedback
    assert resumed.output == 20
    assert calls.count("a") == 1
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT status, step_index FROM flujo_runs WHERE run_id = ?", (failed.run_id,)
        ).fetchone()
    finally:
        conn.close()
    assert row == ("completed", 3)


def test_sync_resume_of_an_unknown_run_raises() -> None:
    runner = Flujo(Step.from_callable(lambda x: x, name="s"))
    with pytest.raises(RunNotFoundError, match="ghost"):
        runner.resume("ghost")


def _sqlite_container(path: Path) -> Any:
    from flujo.containers import FlujoContainer

    container = FlujoContainer()
    container.config.from_dict({"state": {"uri": f"sqlite://{path}"}})
    return container
