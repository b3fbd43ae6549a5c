"""``runner.run()`` from many threads at once, over every state backend.

Each sync call runs on an event loop of its own; these tests check that runs on
different threads' loops share the runner's parts without breaking each other:
every run's result and stored record are its own, a run paused on one thread
resumes on another, and ``aclose()`` while threads run leaves them running.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import Field

from flujo import Flujo, PipelineContext, PipelineResult, Step
from flujo.containers import FlujoContainer
from flujo.domain.models import RunInfo
from flujo.state import PostgresBackend
from tests.integration.postgres import postgres_dsn
from tests.integration.redis_server import redis_url

T = TypeVar("T")

THREADS = 8
RUNS = 32
STEPS = 4
WAIT_S = 120.0
"""How long a test waits for its threads: a hang fails the test instead of the suite."""


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def state_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state URI of one backend (PostgreSQL starts from empty tables)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'runs.db'}"
    return asyncio.run(postgres_dsn())


class Marks(PipelineContext):
    tag: str = ""
    marks: list[str] = Field(default_factory=list)


def _mark(index: int) -> Step[Any, Any]:
    async def mark(data: dict[str, Any], *, context: Marks) -> dict[str, Any]:
        if index == 0:
            context.tag = data["tag"]
        assert context.tag == data["tag"], (context.tag, data["tag"])
        await asyncio.sleep(0.001)  # let the loop's other work (and other threads) interleave
        context.marks.append(f"{data['tag']}:{index}")
        return {**data, "seen": [*data["seen"], index]}

    return Step.from_callable(mark, name=f"mark{index}")


def _pipeline(steps: int = STEPS) -> Any:
    pipeline: Any = _mark(0)
    for index in range(1, steps):
        pipeline = pipeline >> _mark(index)
    return pipeline


def _runner(state_uri: str, pipeline: Any = None, **config: Any) -> Flujo[Any, Any, Marks]:
    container = FlujoContainer()
    container.config.from_dict({"state": {"uri": state_uri}, **config})
    return Flujo(
        pipeline if pipeline is not None else _pipeline(),
        context_model=Marks,
        container=container,
        pipeline_name="threads",
    )


def _inputs(count: int = RUNS) -> list[dict[str, Any]]:
    return [{"tag": f"tag-{i:03d}", "seen": []} for i in range(count)]


def in_threads(work: Callable[[T], Any], items: Sequence[T], threads: int = THREADS) -> list[Any]:
    """Call ``work`` on every item from ``threads`` daemon threads; return results in order.

    Each thread waits on a barrier first, so the calls start together. A call that
    raises fails the test with its exception; one that hangs fails it after WAIT_S.
    """
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(offset: int) -> None:
        barrier.wait()
        for index in range(offset, len(items), threads):
            try:
                results[index] = work(items[index])
            except BaseException as exc:
                errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(WAIT_S)
    assert not any(t.is_alive() for t in pool), f"threads still running after {WAIT_S} s"
    if errors:
        raise errors[0]
    return results


def _check(results: Sequence[PipelineResult[Marks]], inputs: Sequence[dict[str, Any]]) -> None:
    failures = [(r.run_id, r.status, r.step_history[-1:]) for r in results if not r.success]
    assert failures == []
    assert len({r.run_id for r in results}) == len(results)
    for result, given in zip(results, inputs, strict=True):
        assert result.output == {"tag": given["tag"], "seen": list(range(STEPS))}
        context = result.final_pipeline_context
        assert context is not None and context.run_id == result.run_id
        assert context.marks == [f"{given['tag']}:{i}" for i in range(STEPS)]


def _stored(runner: Flujo[Any, Any, Any], run_ids: Sequence[str]) -> list[RunInfo]:
    async def read() -> list[RunInfo]:
        try:
            return [await runner.get_run(run_id) for run_id in run_ids]
        finally:
            await runner.aclose()

    return asyncio.run(read())


def _check_stored(runner: Flujo[Any, Any, Any], results: Sequence[PipelineResult[Marks]]) -> None:
    for result, info in zip(results, _stored(runner, [r.run_id for r in results]), strict=True):
        assert info.status == "completed"
        assert [s.name for s in info.step_history] == [f"mark{i}" for i in range(STEPS)]
        assert info.step_history[-1].output == result.output


@pytest.fixture
def no_resource_warnings() -> Iterator[None]:
    """Fail if a connection was left for the garbage collector to close."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def _sqlite_closed(state_uri: str) -> bool:
    """Whether no connection holds the SQLite file (the last one to close removes the WAL)."""
    path = Path(state_uri.removeprefix("sqlite://"))
    return not path.with_name(path.name + "-wal").exists()


def test_runs_from_many_threads_are_each_correct_and_stored(
    state_uri: str, no_resource_warnings: None
) -> None:
    runner = _runner(state_uri)
    inputs = _inputs()
    results = in_threads(runner.run, inputs)
    _check(results, inputs)
    if state_uri.startswith("sqlite"):
        assert _sqlite_closed(state_uri)  # the last call to end closed the shared connection
    _check_stored(runner, results)


@pytest.mark.parametrize("shared", ["sqlite", "postgres"])
def test_runs_of_many_runners_on_one_store_from_many_threads(
    shared: str, tmp_path: Path, no_resource_warnings: None
) -> None:
    # (In-memory run state belongs to one container: runners cannot share it.)
    if shared == "sqlite":
        state_uri = f"sqlite://{tmp_path / 'runs.db'}"
    else:
        state_uri = asyncio.run(postgres_dsn())
    runners = [_runner(state_uri) for _ in range(4)]
    inputs = _inputs()
    results = in_threads(lambda i: runners[i % 4].run(inputs[i]), list(range(RUNS)))
    _check(results, inputs)
    _check_stored(runners[0], results)


def human_pipeline() -> Any:
    return (
        _mark(0)
        >> Step.human_in_the_loop("go on?", name="ask")
        >> Step.from_callable(_answer, name="answer")
    )


def _answer(answer: str, *, context: Marks) -> str:
    context.marks.append(answer)
    return f"{context.tag}: {answer}"


def test_a_run_paused_on_one_thread_resumes_on_another(
    state_uri: str, no_resource_warnings: None
) -> None:
    runner = _runner(state_uri, human_pipeline())
    inputs = _inputs(16)
    paused = in_threads(runner.run, inputs)
    assert [p.status for p in paused] == ["paused"] * len(inputs)
    # Thread n resumes the run thread n+1 started, so every resume crosses threads.
    shifted = paused[1:] + paused[:1]
    done = in_threads(lambda p: runner.resume(p, human_input=f"yes {p.run_id}"), shifted)
    for before, after in zip(shifted, done, strict=True):
        assert after.status == "completed" and after.run_id == before.run_id
        assert before.final_pipeline_context is not None
        tag = before.final_pipeline_context.tag
        assert after.output == f"{tag}: yes {before.run_id}"
        assert after.final_pipeline_context is not None
        assert after.final_pipeline_context.marks == [f"{tag}:0", f"yes {before.run_id}"]
    stored = _stored(runner, [p.run_id for p in paused])
    assert [s.status for s in stored] == ["completed"] * len(inputs)
    if state_uri.startswith("sqlite"):
        assert _sqlite_closed(state_uri)


def test_aclose_while_threads_run_leaves_their_runs_running(
    state_uri: str, no_resource_warnings: None
) -> None:
    # aclose() releases what the calling loop opened; the connections other threads' runs
    # use stay open until the last of those runs ends, which closes them.
    started = threading.Semaphore(0)
    go_on = threading.Event()

    def wait(data: dict[str, Any]) -> dict[str, Any]:
        started.release()
        assert go_on.wait(WAIT_S)
        return data

    pipeline = _mark(0) >> Step.from_callable(wait, name="wait") >> _mark(1)
    runner = _runner(state_uri, pipeline)
    inputs = _inputs(THREADS)
    outcome: list[Any] = []
    threads = threading.Thread(
        target=lambda: outcome.append(in_threads(runner.run, inputs)), daemon=True
    )
    threads.start()
    for _ in inputs:
        assert started.acquire(timeout=WAIT_S)  # every run is in flight, between two writes
    asyncio.run(runner.aclose())
    go_on.set()
    threads.join(WAIT_S)
    assert len(outcome) == 1, "the threads' runs did not end"
    results = outcome[0]
    assert [(r.status, r.output["seen"]) for r in results] == [("completed", [0, 1])] * THREADS
    if state_uri.startswith("sqlite"):
        assert _sqlite_closed(state_uri)
    stored = _stored(runner, [r.run_id for r in results])
    assert [[s.name for s in info.step_history] for info in stored] == [
        ["mark0", "wait", "mark1"]
    ] * THREADS


def test_a_sync_run_inside_a_run_of_the_same_runner(
    state_uri: str, no_resource_warnings: None
) -> None:
    # The inner call gets a thread and loop of its own; when it ends, the outer run,
    # still in flight, keeps the connections it uses.
    holder: dict[str, Flujo[Any, Any, Marks]] = {}

    async def nested(data: dict[str, Any], *, context: Marks) -> dict[str, Any]:
        if data["tag"].startswith("inner"):
            return data
        inner = holder["runner"].run({"tag": f"inner-{data['tag']}", "seen": []})
        assert inner.success, inner.step_history[-1].feedback
        context.marks.append(inner.run_id)
        return data

    pipeline = _mark(0) >> Step.from_callable(nested, name="nested") >> _mark(1)
    runner = holder["runner"] = _runner(state_uri, pipeline)
    results = in_threads(runner.run, _inputs(THREADS), threads=4)
    assert [r.status for r in results] == ["completed"] * THREADS
    inner_ids = [r.final_pipeline_context.marks[1] for r in results]
    stored = _stored(runner, [r.run_id for r in results] + inner_ids)
    assert [s.status for s in stored] == ["completed"] * 2 * THREADS
    if state_uri.startswith("sqlite"):
        assert _sqlite_closed(state_uri)


def test_postgres_backend_keeps_one_pool_per_loop(no_resource_warnings: None) -> None:
    # Two threads use one backend, each on its own loop; one closes its pool while the
    # other is between two writes: the other's pool is untouched and its writes land.
    backend = PostgresBackend(asyncio.run(postgres_dsn()))
    from flujo.testing import make_run, make_step

    closed = threading.Event()
    wrote_first = threading.Event()

    async def writer() -> int:
        await backend.save_run(make_run("w"))
        await backend.checkpoint(make_step("w", 0))
        wrote_first.set()
        assert await asyncio.to_thread(closed.wait, WAIT_S)
        for index in range(1, 20):
            await backend.checkpoint(make_step("w", index))
        steps = len(await backend.load_steps("w"))
        await backend.close()
        return steps

    async def closer() -> None:
        assert await asyncio.to_thread(wrote_first.wait, WAIT_S)
        await backend.save_run(make_run("c"))
        await backend.close()
        closed.set()

    counts = in_threads(lambda work: asyncio.run(work()), [writer, closer], threads=2)
    assert counts == [20, None]


def test_a_redis_cache_serves_runs_from_many_threads(
    tmp_path: Path, no_resource_warnings: None
) -> None:
    url = asyncio.run(redis_url())
    prefix = f"flujo-test:{uuid.uuid4().hex}:"
    calls: list[int] = []

    def double(x: int) -> int:
        calls.append(x)
        return x * 2

    step = Step.from_callable(double, name="double", cache=True)
    container = FlujoContainer()
    container.config.from_dict(
        {
            "state": {"uri": f"sqlite://{tmp_path / 'runs.db'}"},
            "cache": {"backend": "redis", "url": url, "prefix": prefix},
        }
    )
    runner = Flujo(step, container=container)
    values = [n % 4 for n in range(RUNS)]
    results = in_threads(runner.run, values)
    assert [r.output for r in results] == [v * 2 for v in values]
    assert sorted(set(calls)) == [0, 1, 2, 3]

    async def clean() -> None:
        cache = container.cache_backend()
        try:
            await cache.clear()
        finally:
            await cache.close()

    asyncio.run(clean())
