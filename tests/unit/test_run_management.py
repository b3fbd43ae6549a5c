"""Run management: list_runs, get_run, prune and delete_on_completion, with a controlled clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flujo import ConfigurationError, Flujo, Step
from flujo.domain.errors import RunNotFoundError
from flujo.domain.models import RunInfo
from flujo.infra.state.memory import InMemoryBackend
from flujo.infra.state.sqlite import SQLiteBackend
from flujo.testing import FakeClock, override_providers


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)


def _ok(x: Any) -> Any:
    return x


def _boom(x: Any) -> Any:
    raise ValueError("it broke")


def _pipeline(second: Callable[[Any], Any] = _ok) -> Any:
    return Step.from_callable(_ok, name="first") >> Step.from_callable(second, name="second")


@pytest.fixture(params=["memory", "sqlite"])
def backend_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], InMemoryBackend | SQLiteBackend]:
    shared = InMemoryBackend()
    if request.param == "memory":
        return lambda: shared
    return lambda: SQLiteBackend(tmp_path / "runs.db")


def _runner(
    backend: Any, clock: FakeClock, pipeline: Any = None, **kwargs: Any
) -> Flujo[Any, Any, Any]:
    runner = Flujo(pipeline or _pipeline(), state_backend=backend, **kwargs)
    override_providers(runner.container, clock=clock)
    return runner


async def _stored_runs(backend: Any, clock: FakeClock) -> dict[str, str]:
    """Store one run of each end status, each 100 s after the previous one."""
    ids: dict[str, str] = {}
    async with _runner(backend, clock, pipeline_name="p") as ok:
        clock.advance(100)
        ids["completed"] = (await ok.run_async(1, run_id="run-completed")).run_id
    async with _runner(backend, clock, _pipeline(_boom), pipeline_name="p") as bad:
        clock.advance(100)
        ids["failed"] = (await bad.run_async(1, run_id="run-failed")).run_id
    async with _runner(
        backend, clock, _pipeline() >> Step.human_in_the_loop("ok?"), pipeline_name="p"
    ) as waiting:
        clock.advance(100)
        ids["paused"] = (await waiting.run_async(1, run_id="run-paused")).run_id
    return ids


# --- list_runs -------------------------------------------------------------------------


async def test_list_runs_newest_first_with_status_filter_and_limit(
    backend_factory: Callable[[], Any],
) -> None:
    clock = FakeClock(1_700_000_000.0)
    await _stored_runs(backend_factory(), clock)

    async with _runner(backend_factory(), clock) as runner:
        everything = await runner.list_runs()
        assert [r.run_id for r in everything] == ["run-paused", "run-failed", "run-completed"]
        assert [r.run_id for r in await runner.list_runs(limit=2)] == ["run-paused", "run-failed"]
        assert [r.run_id for r in await runner.list_runs(status="failed")] == ["run-failed"]
        assert [r.run_id for r in await runner.list_runs(status="completed")] == ["run-completed"]
        assert await runner.list_runs(status="running") == []


async def test_list_runs_reports_run_info_fields_in_utc(
    backend_factory: Callable[[], Any],
) -> None:
    clock = FakeClock(1_700_000_000.0)
    async with _runner(backend_factory(), clock, pipeline_name="billing") as runner:
        await runner.run_async(1, run_id="r1")
        (info,) = await runner.list_runs()

    assert isinstance(info, RunInfo)
    assert info.run_id == "r1"
    assert (info.pipeline_name, info.pipeline_version) == ("billing", "latest")
    assert info.status == "completed"
    assert info.steps_completed == 2
    assert info.created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert info.created_at.utcoffset() == timedelta(0)
    assert info.updated_at.tzinfo is not None and info.updated_at.utcoffset() == timedelta(0)
    assert (info.error, info.pause_message) == (None, None)
    assert info.step_history == [], "list_runs does not load step results"


async def test_run_info_of_a_paused_and_a_failed_run(backend_factory: Callable[[], Any]) -> None:
    clock = FakeClock(1_700_000_000.0)
    await _stored_runs(backend_factory(), clock)
    async with _runner(backend_factory(), clock) as runner:
        by_id = {r.run_id: r for r in await runner.list_runs()}

    assert by_id["run-paused"].status == "paused"
    assert by_id["run-paused"].pause_message == "ok?"
    assert by_id["run-paused"].steps_completed == 2
    assert by_id["run-failed"].status == "failed"
    assert by_id["run-failed"].steps_completed == 1


async def test_updated_at_moves_with_each_resume_and_reorders_the_list() -> None:
    clock = FakeClock(1_700_000_000.0)
    backend = InMemoryBackend()
    await _stored_runs(backend, clock)
    runner = _runner(
        backend, clock, _pipeline() >> Step.human_in_the_loop("ok?"), pipeline_name="p"
    )
    clock.advance(1000)
    paused = await runner.get_run("run-paused")
    await runner.resume_async("run-paused", human_input="yes")

    listed = await runner.list_runs()
    assert listed[0].run_id == "run-paused"
    assert listed[0].status == "completed"
    assert listed[0].updated_at > paused.updated_at
    assert listed[0].created_at == paused.created_at


# --- get_run ---------------------------------------------------------------------------


async def test_get_run_returns_the_step_history(backend_factory: Callable[[], Any]) -> None:
    clock = FakeClock(1_700_000_000.0)
    await _stored_runs(backend_factory(), clock)
    async with _runner(backend_factory(), clock) as runner:
        failed = await runner.get_run("run-failed")
        completed = await runner.get_run("run-completed")

    assert [(s.name, s.success) for s in failed.step_history] == [
        ("first", True),
        ("second", False),
    ]
    assert failed.step_history[1].feedback is not None
    assert "it broke" in failed.step_history[1].feedback
    assert [s.output for s in completed.step_history] == [1, 1]
    assert completed.steps_completed == 2


async def test_get_run_of_an_unknown_id_names_it() -> None:
    runner = Flujo(_pipeline(), state_backend=InMemoryBackend())
    with pytest.raises(RunNotFoundError, match="who-knows"):
        await runner.get_run("who-knows")


# --- prune -----------------------------------------------------------------------------


@pytest.mark.parametrize("older_than", [timedelta(seconds=150), 150, 150.0])
async def test_prune_deletes_old_completed_and_failed_runs(
    backend_factory: Callable[[], Any], older_than: timedelta | float
) -> None:
    clock = FakeClock(1000.0)
    await _stored_runs(backend_factory(), clock)  # updated at 1100, 1200, 1300
    clock.set(1350.0)
    async with _runner(backend_factory(), clock) as runner:
        # cutoff 1200: only the completed run (1100) is older; failed (1200) is not older.
        assert await runner.prune(older_than=older_than) == 1
        left = [r.run_id for r in await runner.list_runs()]
        assert left == ["run-paused", "run-failed"]
        with pytest.raises(RunNotFoundError):
            await runner.get_run("run-completed")


async def test_prune_keeps_paused_runs_unless_asked(backend_factory: Callable[[], Any]) -> None:
    clock = FakeClock(1000.0)
    await _stored_runs(backend_factory(), clock)
    clock.set(10_000.0)
    async with _runner(backend_factory(), clock) as runner:
        assert await runner.prune(older_than=0) == 2
        assert [r.run_id for r in await runner.list_runs()] == ["run-paused"]
        assert await runner.prune(older_than=timedelta(hours=1), statuses=["paused"]) == 1
        assert await runner.list_runs() == []


async def test_prune_with_nothing_old_enough_deletes_nothing(
    backend_factory: Callable[[], Any],
) -> None:
    clock = FakeClock(1000.0)
    await _stored_runs(backend_factory(), clock)
    async with _runner(backend_factory(), clock) as runner:
        assert await runner.prune(older_than=timedelta(days=1)) == 0
        assert await runner.prune(older_than=0, statuses=[]) == 0
        assert len(await runner.list_runs()) == 3


async def test_prune_removes_the_step_records_too(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    backend = SQLiteBackend(tmp_path / "runs.db")
    try:
        runner = _runner(backend, clock)
        done = await runner.run_async(1)
        assert len(await backend.load_steps(done.run_id)) == 2
        clock.advance(10)
        assert await runner.prune(older_than=5) == 1
        assert list(await backend.load_steps(done.run_id)) == []
    finally:
        await backend.close()


@pytest.mark.parametrize("older_than", [-1, -0.5, timedelta(seconds=-1)])
async def test_negative_older_than_is_a_configuration_error(older_than: Any) -> None:
    runner = Flujo(_pipeline(), state_backend=InMemoryBackend())
    await runner.run_async(1)
    with pytest.raises(ConfigurationError, match="older_than"):
        await runner.prune(older_than=older_than)
    assert len(await runner.list_runs()) == 1


@pytest.mark.parametrize("limit", [0, -3])
async def test_limit_below_one_is_a_configuration_error(limit: int) -> None:
    runner = Flujo(_pipeline(), state_backend=InMemoryBackend())
    with pytest.raises(ConfigurationError, match="limit"):
        await runner.list_runs(limit=limit)


# --- delete_on_completion --------------------------------------------------------------


async def test_delete_on_completion_keeps_failed_and_paused_runs() -> None:
    backend = InMemoryBackend()
    ok = Flujo(_pipeline(), state_backend=backend, delete_on_completion=True)
    bad = Flujo(_pipeline(_boom), state_backend=backend, delete_on_completion=True)
    waiting = Flujo(
        _pipeline() >> Step.human_in_the_loop("ok?"),
        state_backend=backend,
        delete_on_completion=True,
    )

    done = await ok.run_async(1)
    failed = await bad.run_async(1)
    paused = await waiting.run_async(1)

    with pytest.raises(RunNotFoundError):
        await ok.get_run(done.run_id)
    assert list(await backend.load_steps(done.run_id)) == []
    assert (await ok.get_run(failed.run_id)).status == "failed"
    assert (await ok.get_run(paused.run_id)).status == "paused"

    finished = await waiting.resume_async(paused, human_input="yes")
    assert finished.success
    with pytest.raises(RunNotFoundError):
        await waiting.get_run(paused.run_id)


async def test_without_delete_on_completion_completed_runs_are_kept() -> None:
    runner = Flujo(_pipeline(), state_backend=InMemoryBackend())
    done = await runner.run_async(1)
    assert (await runner.get_run(done.run_id)).status == "completed"


# --- persist_state=False ---------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.list_runs(),
        lambda r: r.get_run("x"),
        lambda r: r.prune(older_than=0),
        lambda r: r.resume_async("x"),
    ],
    ids=["list_runs", "get_run", "prune", "resume_async"],
)
async def test_run_management_needs_durable_state(call: Callable[[Any], Any]) -> None:
    runner = Flujo(_pipeline(), persist_state=False)
    with pytest.raises(ConfigurationError, match="persist_state=False"):
        await call(runner)
