"""The last step's record and the final header in one write (``FinalCheckpoint``).

A run that saves nothing to a provider writes its last step's record together with
its final status: one round trip (a commit) less per run, and no moment where the
last step is stored but the run is not ended. These tests pin when that happens,
when it must not (hooks, references, a failed step), and what a failure of the
combined write leaves: an error, and a run that resumes at its last step.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flujo import ContextReference, Flujo, Pipeline, PipelineContext, Step
from flujo.domain.errors import StateBackendError
from flujo.domain.events import StepFinished
from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.providers import InMemoryStateProvider
from flujo.state import InMemoryBackend, SQLiteBackend
from flujo.testing import FakeClock, override_providers


class Spy(InMemoryBackend):
    """Counts the writes; ``finish_fails`` makes ``finish_run`` fail before writing."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.finish_fails = False

    async def checkpoint(self, step: StepRecord) -> None:
        self.calls["checkpoint"] += 1
        await super().checkpoint(step)

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        self.calls["save_run"] += 1
        await super().save_run(run, owner=owner)

    async def finish_run(self, step: StepRecord, run: RunRecord, *, owner: str | None) -> None:
        self.calls["finish_run"] += 1
        if self.finish_fails:
            raise StateBackendError("the database went away")
        await super().finish_run(step, run, owner=owner)


RAN: Counter[str] = Counter()


def _step(name: str) -> Step[Any, Any]:
    def body(x: int) -> int:
        RAN[name] += 1
        return x + 1

    return Step.from_callable(body, name=name)


def _three() -> Pipeline[int, int]:
    return Pipeline([_step("a"), _step("b"), _step("c")])


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    RAN.clear()


async def _stored(backend: InMemoryBackend, run_id: str) -> tuple[str, list[int]]:
    run = await backend.load_run(run_id)
    assert run is not None
    return run.status, [s.index for s in await backend.load_steps(run_id) if not s.pending]


async def test_the_last_record_is_written_with_the_final_header() -> None:
    backend = Spy()
    result = await Flujo(_three(), state_backend=backend).run_async(1, run_id="r")

    assert result.success and result.output == 4
    assert backend.calls == Counter(checkpoint=2, finish_run=1)
    assert await _stored(backend, "r") == ("completed", [0, 1, 2])


async def test_a_one_step_run_writes_its_header_and_then_one_write() -> None:
    backend = Spy()
    await Flujo(_step("only"), state_backend=backend).run_async(1, run_id="one")

    assert backend.calls == Counter(finish_run=1)
    assert await _stored(backend, "one") == ("completed", [0])


async def test_with_hooks_the_last_record_is_stored_before_step_finished() -> None:
    backend = Spy()
    seen: list[list[int]] = []

    async def hook(event: object) -> None:
        if isinstance(event, StepFinished):
            seen.append([s.index for s in await backend.load_steps(event.run_id)])

    await Flujo(_three(), state_backend=backend, hooks=[hook]).run_async(1, run_id="h")

    assert seen == [[0], [0, 1], [0, 1, 2]]
    assert backend.calls == Counter(checkpoint=3, save_run=1)


class Refs(PipelineContext):
    notes: ContextReference[list[str]] = ContextReference(provider_id="kg", key="notes")


async def test_a_run_with_references_writes_the_last_record_before_its_end_saves() -> None:
    # Saves at the end of the run (in-place changes) must follow the last record: a
    # crash between them would otherwise run the last step again over saved changes.
    def grow(x: int, *, context: Refs) -> int:
        notes = context.notes.get()
        assert notes is not None
        notes.append(f"saw {x}")  # in place, no set(): saved once, at the end
        return x

    backend, store = Spy(), InMemoryStateProvider({"notes": []})
    runner = Flujo(
        Step.from_callable(grow, name="grow"),
        context_model=Refs,
        state_backend=backend,
        state_providers={"kg": store},
    )
    await runner.run_async(1, run_id="refs")

    assert backend.calls["finish_run"] == 0 and backend.calls["checkpoint"] == 1
    assert store.data["notes"] == ["saw 1"]
    assert await _stored(backend, "refs") == ("completed", [0])


async def test_a_failed_last_step_is_recorded_as_before() -> None:
    def boom(x: int) -> int:
        raise ValueError("no")

    backend = Spy()
    pipeline = _step("a") >> Step.from_callable(boom, name="boom")
    result = await Flujo(pipeline, state_backend=backend).run_async(1, run_id="f")

    assert not result.success
    assert backend.calls == Counter(checkpoint=2, save_run=1)
    assert await _stored(backend, "f") == ("failed", [0, 1])


async def test_a_failed_combined_write_raises_and_the_run_resumes_at_its_last_step() -> None:
    backend, clock = Spy(), FakeClock()
    backend.finish_fails = True
    runner = Flujo(_three(), state_backend=backend)
    override_providers(runner.container, clock=clock)
    with pytest.raises(StateBackendError, match="went away"):
        await runner.run_async(1, run_id="lost")

    # Neither the last record nor the final status landed: once its lease expires the
    # run resumes there, as after a crash.
    assert await _stored(backend, "lost") == ("running", [0, 1])
    clock.advance(3600)
    backend.finish_fails = False
    RAN.clear()
    resumed = await runner.resume_async("lost", on_pending=None)
    assert resumed.success and resumed.output == 4
    assert Counter(c=1) == RAN, "only the step whose record did not land ran again"
    assert await _stored(backend, "lost") == ("completed", [0, 1, 2])


async def test_on_sqlite_the_run_ends_with_every_record_and_its_status(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "runs.db")
    try:
        result = await Flujo(_three(), state_backend=backend).run_async(1, run_id="sq")
        assert result.success
        run = await backend.load_run("sq")
        assert run is not None and (run.status, run.step_index) == ("completed", 3)
        assert [s.index for s in await backend.load_steps("sq")] == [0, 1, 2]
    finally:
        await backend.close()
