"""Interrupted loops and maps resume without redoing the iterations or items they finished."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, Pipeline, PipelineContext, Step
from flujo.infra.state.sqlite import SQLiteBackend
from tests.helpers import read_only
from tests.integration.children import ROOT, spawn
from tests.integration.control_flow_child import CONCURRENCY, ITEMS

CHILD = Path(__file__).with_name("control_flow_child.py")
GUARD = 10.0


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)


class Crash(BaseException):
    """Stands in for the process dying mid-step: nothing in flujo catches it."""


class Ctx(PipelineContext):
    iterations: int = 0


class Backends:
    """Opens SQLite backends over one file (one per runner, like separate processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened: list[SQLiteBackend] = []

    def new(self) -> SQLiteBackend:
        backend = SQLiteBackend(self.path)
        self.opened.append(backend)
        return backend

    async def close(self) -> None:
        for backend in self.opened:
            await backend.close()


@pytest.fixture
async def backends(tmp_path: Path) -> AsyncIterator[Backends]:
    opened = Backends(tmp_path / "runs.db")
    yield opened
    await opened.close()


async def _cancel_strays() -> None:
    """Cancel tasks an aborted run left behind (there should be none)."""
    strays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in strays:
        task.cancel()
    await asyncio.gather(*strays, return_exceptions=True)


def _runner(pipeline: Pipeline[Any, Any], backends: Backends) -> Flujo[Any, Any, Ctx]:
    return Flujo(pipeline, context_model=Ctx, state_backend=backends.new(), pipeline_name="cf")


async def _crashing_run(runner: Flujo[Any, Any, Ctx], data: Any, run_id: str) -> None:
    with pytest.raises(Crash):
        await asyncio.wait_for(runner.run_async(data, run_id=run_id), GUARD)


async def _resume(runner: Flujo[Any, Any, Ctx], run_id: str) -> Any:
    return await asyncio.wait_for(runner.resume_async(run_id), GUARD)


# --- loops --------------------------------------------------------------------------------


def _loop_pipeline(body: Callable[..., Any], done: Callable[..., Any]) -> Pipeline[Any, Any]:
    loop = Step.loop_until(Step.from_callable(body, name="inc"), done, max_loops=10)
    return (
        Step.from_callable(lambda x: x, name="start")
        >> loop
        >> Step.from_callable(lambda x: x * 10, name="after")
    )


async def test_a_loop_aborted_mid_iteration_resumes_at_that_iteration(backends: Backends) -> None:
    calls: list[int] = []

    def body(crash_at: int | None) -> Callable[..., int]:
        def inc(x: int, *, context: Ctx) -> int:
            calls.append(x)
            context.iterations += 1
            if x == crash_at:
                raise Crash()
            return x + 1

        return inc

    def done(out: int, context: Ctx) -> bool:
        return out >= 5

    await _crashing_run(_runner(_loop_pipeline(body(2), done), backends), 0, "loop-run")
    assert calls == [0, 1, 2]

    resumed = await _resume(_runner(_loop_pipeline(body(None), done), backends), "loop-run")

    assert resumed.success, resumed.feedback
    assert resumed.output == 50
    # Iterations 1 and 2 are not run again; the one in flight (input 2) is.
    assert calls == [0, 1, 2, 2, 3, 4]
    assert [r.name for r in resumed.step_history] == ["start", "loop", "after"]
    # The context is the one the finished iterations left: each counted once.
    assert resumed.final_pipeline_context.iterations == 5


async def test_a_loop_aborted_in_its_exit_check_does_not_run_another_iteration(
    backends: Backends,
) -> None:
    calls: list[int] = []
    checks: list[int] = []

    def inc(x: int) -> int:
        calls.append(x)
        return x + 1

    def done(crash_on: int | None) -> Callable[..., bool]:
        def check(out: int, context: Ctx) -> bool:
            checks.append(out)
            if out == crash_on:
                raise Crash()  # e.g. a slow judge call when the process dies
            return out >= 3

        return check

    await _crashing_run(_runner(_loop_pipeline(inc, done(3)), backends), 0, "exit-run")
    assert calls == [0, 1, 2]

    resumed = await _resume(_runner(_loop_pipeline(inc, done(None)), backends), "exit-run")

    assert resumed.success, resumed.feedback
    assert calls == [0, 1, 2], "the finished third iteration already met the exit condition"
    assert resumed.output == 30


async def test_a_loop_aborted_after_its_last_allowed_iteration_still_checks_its_exit(
    backends: Backends,
) -> None:
    def inc(x: int) -> int:
        return x + 1

    def done(crash: bool) -> Callable[..., bool]:
        def check(out: int, context: Ctx) -> bool:
            if crash and out == 3:
                raise Crash()
            return out >= 3

        return check

    def pipeline(crash: bool) -> Pipeline[Any, Any]:
        return Pipeline.of(
            Step.loop_until(Step.from_callable(inc, name="inc"), done(crash), max_loops=3)
        )

    await _crashing_run(_runner(pipeline(True), backends), 0, "last-run")
    resumed = await _resume(_runner(pipeline(False), backends), "last-run")

    assert resumed.success, resumed.feedback
    assert resumed.output == 3


async def test_a_failed_loop_resumes_after_a_fix_from_the_failed_iteration(
    backends: Backends,
) -> None:
    calls: list[int] = []

    def body(broken: bool) -> Callable[..., int]:
        def inc(x: int) -> int:
            calls.append(x)
            if broken and x == 3:
                raise ValueError("iteration 4 is broken")
            return x + 1

        return inc

    def done(out: int, context: Ctx) -> bool:
        return out >= 5

    failed = await _runner(_loop_pipeline(body(True), done), backends).run_async(0)
    assert failed.status == "failed"
    assert "iteration 4 is broken" in (failed.feedback or "")

    resumed = await _resume(_runner(_loop_pipeline(body(False), done), backends), failed.run_id)

    assert resumed.success, resumed.feedback
    assert resumed.output == 50
    assert calls == [0, 1, 2, 3, 3, 4]


# --- maps ---------------------------------------------------------------------------------


def _map_pipeline(body: Callable[..., Any], concurrency: int) -> Pipeline[Any, Any]:
    return (
        Step.from_callable(lambda n: list(range(n)), name="items")
        >> Step.map_over(Step.from_callable(body, name="work"), concurrency=concurrency)
        >> Step.from_callable(lambda outs: outs, name="after")
    )


async def test_a_map_aborted_mid_item_resumes_without_redoing_finished_items(
    backends: Backends,
) -> None:
    finished: list[int] = []
    never = asyncio.Event()

    async def first(x: int) -> int:
        if x == 3:
            raise Crash()
        if x > 3:
            await never.wait()  # only reached if the map went on after the abort
        finished.append(x)
        return x * 10

    calls: list[int] = []

    def second(x: int) -> int:
        calls.append(x)
        return x * 10

    try:
        await _crashing_run(_runner(_map_pipeline(first, 1), backends), 6, "map1")
        assert finished == [0, 1, 2]

        resumed = await _resume(_runner(_map_pipeline(second, 1), backends), "map1")

        assert resumed.success, resumed.feedback
        assert resumed.output == [0, 10, 20, 30, 40, 50]
        assert calls == [3, 4, 5], "only the item in flight and the ones after it run again"
    finally:
        await _cancel_strays()


async def test_a_concurrent_map_aborted_mid_run_resumes_without_redoing_finished_items(
    backends: Backends,
) -> None:
    calls: list[int] = []
    finished: list[int] = []
    others_started = asyncio.Event()
    never = asyncio.Event()

    async def first(x: int) -> int:
        calls.append(x)
        if {4, 5} <= set(calls):
            others_started.set()
        if x < 3:
            await asyncio.sleep((3 - x) * 0.01)  # 2 finishes first, 0 last
            finished.append(x)
            return x * 10
        if x == 3:
            await asyncio.wait_for(others_started.wait(), GUARD)
            raise Crash()  # while items 4 and 5 are in flight
        await never.wait()
        return -1

    async def second(x: int) -> int:
        calls.append(x)
        return x * 10

    try:
        await _crashing_run(_runner(_map_pipeline(first, 3), backends), 6, "map3")
        assert finished == [2, 1, 0]
        assert sorted(calls) == [0, 1, 2, 3, 4, 5]

        resumed = await _resume(_runner(_map_pipeline(second, 3), backends), "map3")

        assert resumed.success, resumed.feedback
        assert resumed.output == [0, 10, 20, 30, 40, 50]
        runs = Counter(calls)
        assert {i: runs[i] for i in range(3)} == {0: 1, 1: 1, 2: 1}, "finished items ran again"
        assert {i: runs[i] for i in range(3, 6)} == {3: 2, 4: 2, 5: 2}  # the in-flight ones
    finally:
        await _cancel_strays()


async def test_a_failed_map_resumes_after_a_fix_without_redoing_finished_items(
    backends: Backends,
) -> None:
    done: list[int] = []
    attempts: list[int] = []

    def body(broken: bool) -> Callable[..., Any]:
        async def work(x: int) -> int:
            attempts.append(x)
            await asyncio.sleep(0.005 * (x % 3))
            if broken and x == 5:
                raise ValueError("item 5 is broken")
            done.append(x)
            return x * 10

        return work

    failed = await _runner(_map_pipeline(body(True), 2), backends).run_async(8)
    assert failed.status == "failed"
    assert "map[5]" in (failed.feedback or "") and "item 5 is broken" in (failed.feedback or "")
    finished_before = set(done)
    assert 5 not in finished_before and len(finished_before) < 8

    resumed = await _resume(_runner(_map_pipeline(body(False), 2), backends), failed.run_id)

    assert resumed.success, resumed.feedback
    assert resumed.output == [i * 10 for i in range(8)]
    assert sorted(done) == list(range(8)), "every item's work is done exactly once"
    assert Counter(attempts)[5] == 2


async def test_a_resumed_run_keeps_the_nested_history_of_earlier_control_flow_steps(
    backends: Backends,
) -> None:
    def last(broken: bool) -> Step[Any, Any]:
        def fn(x: Any) -> Any:
            if broken:
                raise ValueError("last step is broken")
            return x

        return Step.from_callable(fn, name="last")

    mapped = Step.map_over(Step.from_callable(lambda x: x * 2, name="double"), concurrency=2)
    failed = await _runner(mapped >> last(True), backends).run_async([1, 2, 3])
    assert [len(r.step_history) for r in failed.step_history] == [3, 0]

    runner = _runner(mapped >> last(False), backends)
    resumed = await _resume(runner, failed.run_id)

    assert resumed.success, resumed.feedback
    assert [r.name for r in resumed.step_history[0].step_history] == ["map[0]", "map[1]", "map[2]"]
    info = await runner.get_run(failed.run_id)
    assert [r.name for r in info.step_history[0].step_history] == ["map[0]", "map[1]", "map[2]"]


# --- a real crash: SIGKILL in the middle of a map, resumed in a new process ---------------


def _child(command: str, run_id: str, folder: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return spawn(CHILD, command, run_id, str(folder), env=env)


def _recorded_items(state_db: Path, run_id: str) -> set[int]:
    """Return the items the map's stored progress says are finished."""
    if not state_db.exists():
        return set()
    try:
        with read_only(state_db) as conn:
            row = conn.execute(
                "SELECT result FROM flujo_steps WHERE run_id = ? AND name = 'squares'", (run_id,)
            ).fetchone()
    except sqlite3.OperationalError:
        return set()  # tables not created yet
    if row is None:
        return set()
    partial = json.loads(row[0]).get("partial") or {}
    return {int(i) for i in partial.get("done", {})}


def test_sigkill_mid_map_then_resume_in_a_new_process(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    env.pop("FLUJO_STATE_URI", None)
    state_db = tmp_path / "state" / "flujo" / "runs.db"
    run_id = "map-crash-run"

    child = _child("run", run_id, tmp_path, env)
    deadline = time.monotonic() + 60
    while len(_recorded_items(state_db, run_id)) < 8:
        assert child.poll() is None, f"child ended early: {child.communicate()}"
        assert time.monotonic() < deadline, "child made no progress"
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    recorded = _recorded_items(state_db, run_id)
    assert 8 <= len(recorded) < ITEMS, "the kill must land mid-map"

    resumed = _child("resume", run_id, tmp_path, env)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, (out, err)
    printed = json.loads(out)
    assert printed == {"status": "completed", "output": [i * i for i in range(ITEMS)]}

    effects = Counter(int(line) for line in (tmp_path / "effects.log").read_text().split())
    assert sorted(effects) == list(range(ITEMS)), "an item's effect is missing"
    assert all(effects[i] == 1 for i in recorded), "an item recorded as finished ran again"
    repeated = [i for i, n in effects.items() if n > 1]
    # Only items in flight at the kill (at most `concurrency` of them) ran twice.
    assert len(repeated) <= CONCURRENCY
    assert all(effects[i] == 2 for i in repeated)


async def test_a_retried_map_does_not_redo_the_items_it_finished(tmp_path: Path) -> None:
    calls: list[int] = []
    failed_once: set[int] = set()

    def work(item: int) -> int:
        calls.append(item)
        if item == 3 and item not in failed_once:
            failed_once.add(item)
            raise RuntimeError("flaky item")
        return item * 10

    body = Step.from_callable(work, name="work")
    mapped = Step.map_over(body, name="each", max_retries=1)
    runner = Flujo(mapped, state_backend=SQLiteBackend(tmp_path / "retry.db"))
    result = await runner.run_async([1, 2, 3, 4])
    await runner.aclose()
    assert result.success and result.output == [10, 20, 30, 40]
    assert result.step_history[0].attempts == 2
    # The second attempt ran only the item that failed and the one never reached.
    assert calls == [1, 2, 3, 3, 4]
