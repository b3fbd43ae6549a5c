"""A run always ends: stored ids are not reused, and however a run stops it is stored, resumable."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from flujo import Step
from flujo.domain.errors import (
    RunExistsError,
    StateBackendError,
    StateConflictError,
    StateError,
    StateLoadError,
)
from flujo.domain.events import HookEvent, RunFinished, RunStarted
from flujo.domain.interfaces import StepRecord
from flujo.infra.state.memory import InMemoryBackend
from flujo.infra.state.sqlite import SQLiteBackend
from flujo.providers import InMemoryStateProvider
from flujo.testing import Faults
from tests.lifecycle_doubles import (
    Journal,
    Mortal,
    ProcessDied,
    appender,
    journal_runner,
    memory_container,
    plain_switch,
    switch,
)

# --- run ids -------------------------------------------------------------------------------


async def test_starting_a_run_with_a_stored_id_is_refused() -> None:
    container, provider = memory_container(), InMemoryStateProvider[Any]()
    runner = journal_runner([appender(0), appender(1)], provider, container=container)
    first = await runner.run_async(0, run_id="x")

    with pytest.raises(RunExistsError, match=r"'x'.*completed.*replace=True"):
        await runner.run_async(100, run_id="x")

    assert isinstance(RunExistsError("x"), StateError)
    stored = await runner.get_run("x")
    assert stored.status == "completed" and [s.output for s in stored.step_history] == [1, 2]
    assert first.output == 2 and await provider.load("log") == [0, 1]  # nothing ran again


async def test_replace_deletes_the_old_runs_records_with_the_new_header() -> None:
    container, provider = memory_container(), InMemoryStateProvider[Any]()
    steps = [appender(i) for i in range(4)]
    await journal_runner(steps, provider, container=container).run_async(0, run_id="x")
    inner = container.state_backend()
    dying = Mortal(inner, die_after_checkpoints=1)
    with pytest.raises(ProcessDied):  # the new run dies after its first step
        await journal_runner(steps, provider, container=container, state_backend=dying).run_async(
            100, run_id="x", replace=True
        )
    assert [s.index for s in await inner.load_steps("x")] == [0]  # the old four are gone
    header = await inner.load_run("x")
    assert header.input == b"100" and header.status == "running"

    # A new owner, after the dead one's lease: the new run continues, not the old one.
    await asyncio.sleep(max((header.lease_until or 0.0) - container.clock(), 0.0))
    resumed = await journal_runner(steps, provider, container=container).resume_async("x")
    assert resumed.status == "completed"
    assert resumed.output == 104
    assert [r.output for r in resumed.step_history] == [101, 102, 103, 104]


async def test_replace_is_one_transaction_in_sqlite(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "runs.db")
    provider = InMemoryStateProvider[Any]()
    try:
        runner = journal_runner([appender(0), appender(1)], provider, state_backend=backend)
        await runner.run_async(0, run_id="x")
        with pytest.raises(RunExistsError):
            await runner.run_async(5, run_id="x")
        replaced = await runner.run_async(5, run_id="x", replace=True)
        assert replaced.output == 7
        assert [s.output for s in (await runner.get_run("x")).step_history] == [6, 7]
    finally:
        await backend.close()


def test_the_sync_door_takes_replace_too() -> None:
    runner = journal_runner([appender(0)], InMemoryStateProvider[Any]())
    assert runner.run(1, run_id="sync").output == 2
    with pytest.raises(RunExistsError):
        runner.run(1, run_id="sync")
    assert runner.run(10, run_id="sync", replace=True).output == 11


# --- a run always ends ---------------------------------------------------------------------


class FailingCheckpoint(InMemoryBackend):
    """Its checkpoints of ``step_name`` fail ``times`` times, as a store gone for a moment."""

    def __init__(self, step_name: str, times: int = 1) -> None:
        super().__init__()
        self.step_name = step_name
        self.times = times

    async def checkpoint(self, step: StepRecord) -> None:
        if step.name == self.step_name and self.times > 0:
            self.times -= 1
            raise StateBackendError("checkpoint failed: disk I/O error")
        await super().checkpoint(step)


async def test_a_backend_failure_in_a_checkpoint_ends_the_run_failed_stored_and_hooked() -> None:
    backend, provider = FailingCheckpoint("append2"), switch({"log": []})
    events: list[HookEvent] = []
    steps = [appender(i, in_place=True) for i in range(4)]
    runner = journal_runner(steps, provider, state_backend=backend, hooks=[events.append])

    with pytest.raises(StateBackendError, match="disk I/O"):
        await runner.run_async(0, run_id="r")

    stored = await backend.load_run("r")
    assert stored.status == "failed" and "StateBackendError" in (stored.error or "")
    # The end of the run wrote step 2's record again (the store was back), then saved
    # the in-place changes of the three steps that completed.
    assert (stored.step_index, stored.owner) == (3, None)
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert len(finished) == 1 and finished[0].result.status == "failed"
    assert [r.name for r in finished[0].result.step_history] == ["append0", "append1", "append2"]
    assert await provider.load("log") == [0, 1, 2]

    resumed = await runner.resume_async("r")
    assert resumed.status == "completed"
    assert await provider.load("log") == [0, 1, 2, 3]


async def test_a_checkpoint_that_keeps_failing_saves_no_in_place_change_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend, provider = FailingCheckpoint("append2", times=2), switch({"log": []})
    steps = [appender(i, in_place=True) for i in range(4)]
    runner = journal_runner(steps, provider, state_backend=backend)

    with caplog.at_level("WARNING"), pytest.raises(StateBackendError):
        await runner.run_async(0, run_id="r")

    stored = await backend.load_run("r")
    assert (stored.status, stored.step_index) == ("failed", 2)
    # Step 2 runs again on resume, so the change it made in place must not be saved now;
    # the changes before it share the value and are lost with it (at most once).
    assert await provider.load("log") == []
    assert any("checkpoint of step 'append2' failed" in r.getMessage() for r in caplog.records)
    resumed = await runner.resume_async("r")
    assert resumed.status == "completed" and await provider.load("log") == [2, 3]


async def _cancel_mid_run(runner: Any, run_id: str, started: asyncio.Event) -> None:
    task = asyncio.create_task(runner.run_async(0, run_id=run_id))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancelled_run_is_stored_cancelled_hooked_and_resumable() -> None:
    container, provider = memory_container(), switch({"log": []})
    events: list[HookEvent] = []
    started = asyncio.Event()
    hanging = [True]

    async def hang(data: int) -> int:
        started.set()
        if hanging[0]:
            await asyncio.Event().wait()
        return data

    steps = [appender(0, in_place=True), Step.from_callable(hang, name="hang"), appender(2)]
    runner = journal_runner(steps, provider, container=container, hooks=[events.append])
    await _cancel_mid_run(runner, "c", started)

    stored = await container.state_backend().load_run("c")
    assert (stored.status, stored.step_index, stored.owner) == ("cancelled", 1, None)
    assert "CancelledError" in (stored.error or "")
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert [f.result.status for f in finished] == ["cancelled"]
    assert await provider.load("log") == [0]  # step 0's in-place change, saved at the end
    assert [i.status for i in await runner.list_runs(status="cancelled")] == ["cancelled"]

    hanging[0] = False
    resumed = await runner.resume_async("c")
    assert resumed.status == "completed"
    assert [r.name for r in resumed.step_history] == ["append0", "hang", "append2"]
    assert await provider.load("log") == [0, 2]


async def test_what_a_cancelled_step_changed_in_place_is_not_saved() -> None:
    container, provider = memory_container(), switch({"log": []})
    started = asyncio.Event()

    async def hang(data: int, *, context: Journal) -> int:
        context.log.get().append(99)  # half done when the run is cancelled
        started.set()
        await asyncio.Event().wait()
        return data

    steps = [appender(0), Step.from_callable(hang, name="hang")]
    await _cancel_mid_run(journal_runner(steps, provider, container=container), "c", started)
    assert await provider.load("log") == [0]  # step 0's set(), not the cancelled step's 99


async def test_a_failed_end_of_run_save_is_made_by_the_resume_before_it_completes() -> None:
    container, provider = memory_container(), switch({"log": []})
    runner = journal_runner([appender(0, in_place=True)], provider, container=container)
    provider.inject(save=Faults.always())
    failed = await runner.run_async(0, run_id="owed")

    assert failed.status == "failed" and "StateSaveError" in (failed.error or "")
    stored = await container.state_backend().load_run("owed")
    assert (stored.status, stored.step_index) == ("failed", 1)
    owed = json.loads(stored.owed or b"null")
    assert [(o["provider_id"], o["key"], o["value"]) for o in owed] == [("journal", "log", [0])]
    assert await provider.load("log") == []

    provider.heal()
    other = journal_runner([appender(0, in_place=True)], provider, container=container)
    resumed = await other.resume_async("owed")
    assert resumed.status == "completed" and resumed.success
    assert await provider.load("log") == [0]  # what the first run owed, saved once
    assert (await container.state_backend().load_run("owed")).owed is None


async def test_an_owed_save_that_fails_again_keeps_the_run_failed_and_owing() -> None:
    container, provider = memory_container(), plain_switch({"log": []})
    steps = [appender(0, in_place=True), appender(1, in_place=True)]
    runner = journal_runner(steps, provider, container=container)
    provider.inject(save=Faults.always())
    await runner.run_async(0, run_id="owed")
    again = await runner.resume_async("owed")
    assert again.status == "failed" and "StateSaveError" in (again.error or "")
    assert json.loads((await container.state_backend().load_run("owed")).owed or b"[]")[0][
        "value"
    ] == [0, 1]
    provider.heal()
    done = await runner.resume_async("owed")
    assert done.status == "completed" and provider.inner.data["log"] == [0, 1]


async def test_an_owed_save_another_writer_overtook_conflicts_unless_told() -> None:
    container, provider = memory_container(), switch({"log": []})
    runner = journal_runner([appender(0, in_place=True)], provider, container=container)
    provider.inject(save=Faults.always())
    await runner.run_async(0, run_id="owed")
    provider.heal()
    await provider.save("log", ["someone else"])

    with pytest.raises(StateConflictError, match="journal:log"):
        await runner.resume_async("owed")
    assert await provider.load("log") == ["someone else"]
    done = await runner.resume_async("owed", on_pending="accept")
    assert done.status == "completed" and await provider.load("log") == ["someone else"]


async def test_a_run_whose_references_fail_to_load_is_stored_failed_and_resumable() -> None:
    container, provider = memory_container(), switch({"log": [7]})
    events: list[HookEvent] = []
    runner = journal_runner([appender(0)], provider, container=container, hooks=[events.append])
    provider.inject(load=Faults.always())
    with pytest.raises(StateLoadError, match="'journal'"):
        await runner.run_async(0, run_id="load")

    stored = await container.state_backend().load_run("load")
    assert (stored.status, stored.step_index, stored.owner) == ("failed", 0, None)
    assert "StateLoadError" in (stored.error or "")
    assert [type(e) for e in events] == [RunFinished]
    assert not [e for e in events if isinstance(e, RunStarted)]

    provider.heal()
    resumed = await runner.resume_async("load")
    assert resumed.status == "completed" and await provider.load("log") == [7, 0]
