"""100 concurrent runs on one SQLite file: no "database is locked", no mixing of contexts."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from flujo import Flujo, PipelineContext, PipelineResult, Step
from flujo.containers import FlujoContainer

ROOT = Path(__file__).resolve().parents[2]

RUNS = 100
STEPS = 4


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)


class Tagged(PipelineContext):
    owner: str = ""
    marks: list[str] = Field(default_factory=list)


def _mark(index: int) -> Step[Any, Any]:
    async def mark(data: dict[str, Any], *, context: Tagged) -> dict[str, Any]:
        if index == 0:
            context.owner = data["tag"]
        # Every run must only ever see its own context, even while others interleave.
        assert context.owner == data["tag"], (context.owner, data["tag"])
        await asyncio.sleep(0)
        context.marks.append(f"{data['tag']}:{index}")
        return {**data, "seen": [*data["seen"], index]}

    return Step.from_callable(mark, name=f"mark{index}")


def _pipeline() -> Any:
    pipeline: Any = _mark(0)
    for index in range(1, STEPS):
        pipeline = pipeline >> _mark(index)
    return pipeline


def _runner(path: Path) -> Flujo[Any, Any, Tagged]:
    container = FlujoContainer()
    container.config.from_dict({"state": {"uri": f"sqlite://{path}"}})
    return Flujo(_pipeline(), context_model=Tagged, container=container, pipeline_name="tagged")


def _inputs() -> list[dict[str, Any]]:
    return [{"tag": f"tag-{i:03d}", "seen": []} for i in range(RUNS)]


def _check_results(results: list[PipelineResult[Tagged]], inputs: list[dict[str, Any]]) -> None:
    failures = [(r.run_id, r.feedback, r.error) for r in results if not r.success]
    assert failures == [], failures
    assert len({r.run_id for r in results}) == RUNS
    for result, given in zip(results, inputs, strict=True):
        assert result.output == {"tag": given["tag"], "seen": list(range(STEPS))}
        context = result.final_pipeline_context
        assert context is not None
        assert context.owner == given["tag"]
        assert context.marks == [f"{given['tag']}:{i}" for i in range(STEPS)]
        assert context.run_id == result.run_id


def _check_stored(path: Path, results: list[PipelineResult[Tagged]]) -> None:
    conn = sqlite3.connect(path)
    try:
        runs = dict(conn.execute("SELECT run_id, status FROM flujo_runs").fetchall())
        steps: dict[str, list[tuple[int, str, bytes]]] = {}
        for run_id, idx, name, context in conn.execute(
            "SELECT run_id, idx, name, context FROM flujo_steps ORDER BY run_id, idx"
        ):
            steps.setdefault(run_id, []).append((idx, name, bytes(context)))
    finally:
        conn.close()

    assert runs == {r.run_id: "completed" for r in results}
    for result in results:
        stored = steps[result.run_id]
        assert [(idx, name) for idx, name, _ in stored] == [(i, f"mark{i}") for i in range(STEPS)]
        assert result.final_pipeline_context is not None
        tag = result.final_pipeline_context.owner
        for idx, _, blob in stored:
            context = json.loads(blob)
            # Each checkpoint holds this run's own context as it was right after that step.
            assert context["run_id"] == result.run_id
            assert context["owner"] == tag
            assert context["marks"] == [f"{tag}:{i}" for i in range(idx + 1)]


async def test_100_concurrent_runs_of_one_runner_on_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    inputs = _inputs()
    async with _runner(path) as runner:
        results = list(await asyncio.gather(*(runner.run_async(data) for data in inputs)))

    _check_results(results, inputs)
    _check_stored(path, results)


async def test_100_concurrent_runs_of_many_runners_sharing_one_sqlite_file(
    tmp_path: Path,
) -> None:
    # Each runner has its own container, so its own SQLite connection to the same file.
    path = tmp_path / "shared.db"
    runners = [_runner(path) for _ in range(10)]
    assert len({id(r.container.state_backend()) for r in runners}) == len(runners)
    inputs = _inputs()
    try:
        results = list(
            await asyncio.gather(
                *(runners[i % len(runners)].run_async(data) for i, data in enumerate(inputs))
            )
        )
    finally:
        for runner in runners:
            await runner.aclose()

    _check_results(results, inputs)
    _check_stored(path, results)


async def test_concurrent_runs_can_all_be_listed_and_resumed_after_a_failure(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    failing = {f"tag-{i:03d}" for i in range(0, RUNS, 10)}
    broken = {"on": True}

    async def maybe_fail(data: dict[str, Any], *, context: Tagged) -> dict[str, Any]:
        await asyncio.sleep(0)
        if broken["on"] and data["tag"] in failing:
            raise RuntimeError(f"{data['tag']} failed")
        return data

    container = FlujoContainer()
    container.config.from_dict({"state": {"uri": f"sqlite://{path}"}})
    async with Flujo(
        _mark(0) >> Step.from_callable(maybe_fail, name="maybe") >> _mark(1),
        context_model=Tagged,
        container=container,
        pipeline_name="flaky",
    ) as runner:
        first = await asyncio.gather(*(runner.run_async(data) for data in _inputs()))
        failed = [r for r in first if not r.success]
        assert {r.final_pipeline_context.owner for r in failed if r.final_pipeline_context} == (
            failing
        )
        listed = await runner.list_runs(status="failed", limit=RUNS)
        assert {r.run_id for r in listed} == {r.run_id for r in failed}

        broken["on"] = False
        resumed = await asyncio.gather(*(runner.resume_async(r) for r in failed))

    for before, after in zip(failed, resumed, strict=True):
        assert after.success, after.feedback
        assert after.final_pipeline_context is not None
        owner = after.final_pipeline_context.owner
        assert before.final_pipeline_context is not None
        assert owner == before.final_pipeline_context.owner
        assert after.final_pipeline_context.marks == [f"{owner}:0", f"{owner}:1"]


THREADED_CHILD = textwrap.dedent(
    """
    import asyncio, concurrent.futures, json, sys
    from pathlib import Path

    from tests.integration.test_sqlite_concurrency import RUNS, _inputs, _runner

    path, threads = Path(sys.argv[1]), 4
    chunks = [_inputs()[i::threads] for i in range(threads)]

    def work(chunk):
        async def main():
            async with _runner(path) as runner:
                return await asyncio.gather(*(runner.run_async(d) for d in chunk))
        return asyncio.run(main())

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        results = [r for chunk in pool.map(work, chunks) for r in chunk]
    print(json.dumps({
        r.run_id: [r.success, r.feedback, r.final_pipeline_context.owner] for r in results
    }))
    """
)


def test_100_runs_from_several_threads_each_with_its_own_event_loop(tmp_path: Path) -> None:
    # Closest to several processes: each thread has its own loop, runner and connection.
    # It runs in a child process, so a crash inside SQLite is reported instead of ending pytest.
    path = tmp_path / "shared.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    child = subprocess.run(
        [sys.executable, "-c", THREADED_CHILD, str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    outcome: dict[str, list[Any]] = json.loads(child.stdout)

    assert len(outcome) == RUNS
    failures = {run_id: o for run_id, o in outcome.items() if not o[0]}
    assert failures == {}
    assert sorted(o[2] for o in outcome.values()) == sorted(d["tag"] for d in _inputs())
    conn = sqlite3.connect(path)
    try:
        for run_id, (_, _, tag) in outcome.items():
            rows = conn.execute(
                "SELECT idx, context FROM flujo_steps WHERE run_id = ? ORDER BY idx", (run_id,)
            ).fetchall()
            assert [idx for idx, _ in rows] == list(range(STEPS))
            last = json.loads(rows[-1][1])
            assert (last["run_id"], last["owner"]) == (run_id, tag)
            assert last["marks"] == [f"{tag}:{i}" for i in range(STEPS)]
    finally:
        conn.close()


def _child(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter, so a crash inside SQLite fails only this test."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONFAULTHANDLER": "1",
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    env.pop("FLUJO_STATE_URI", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path / "shared.db")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sync_runs_of_one_runner_from_several_threads(tmp_path: Path) -> None:
    # runner.run() from a thread pool (a sync web app does this): each call opens and closes
    # the runner's one SQLite backend, while the other threads' runs are still writing to it.
    child = _child(
        """
        import concurrent.futures
        from flujo import Flujo, Step

        pipeline = Step.from_callable(lambda x: x + 1, name="s0")
        for i in range(1, 5):
            pipeline = pipeline >> Step.from_callable(lambda x: x + 1, name=f"s{i}")
        runner = Flujo(pipeline, pipeline_name="threads")
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(runner.run, range(80)))
        print(sum(r.success for r in results), sorted(r.output for r in results))
        """,
        tmp_path,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split(" ", 1) == ["80", f"{list(range(5, 85))}\n"]


def test_closing_a_sqlite_backend_while_writes_are_in_flight_is_safe(tmp_path: Path) -> None:
    # StateBackend.close() promises the backend reopens on the next call; writes that were
    # already under way when it was called must still land, and nothing may crash.
    child = _child(
        """
        import asyncio, sys
        from flujo.domain.interfaces import RunRecord, StepRecord
        from flujo.infra.state.sqlite import SQLiteBackend

        async def main():
            backend = SQLiteBackend(sys.argv[1])

            async def writer(n):
                run_id = f"r{n}"
                await backend.save_run(
                    RunRecord(run_id, "p", "v", "running", 0, b"1", b"{}", 1.0, 1.0)
                )
                for k in range(100):
                    await backend.checkpoint(
                        StepRecord(run_id, k, "s", True, b"{}", b'{"a": 1}', 2.0)
                    )

            async def closer():
                for _ in range(100):
                    await asyncio.sleep(0.001)
                    await backend.close()

            await asyncio.gather(*(writer(n) for n in range(20)), closer())
            counts = [len(await backend.load_steps(f"r{n}")) for n in range(20)]
            await backend.close()
            print(counts == [100] * 20)

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.strip() == "True"
