"""The behaviour every ``StateBackend`` must have, as a pytest base class.

It covers round trips, append-only checkpoints and the progress of running runs
(failed and pending step records do not count as completed), listing, deleting,
pruning, large payloads, close-and-reuse, concurrent runs, threads that each
use the backend from an event loop of their own (as ``runner.run()`` does) —
and, through ``RunLeaseContract``, leases and run ids.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest

from flujo.domain.interfaces import RunRecord, StateBackend, StepRecord
from flujo.domain.models import RunStatus
from flujo.testing.lease_contract import RunLeaseContract

__all__ = ["StateBackendContract", "make_run", "make_step"]


def make_run(
    run_id: str,
    *,
    status: RunStatus = "running",
    step_index: int = 0,
    updated_at: float = 1000.0,
    pipeline_name: str = "contract",
) -> RunRecord:
    """Return a small run header for tests."""
    return RunRecord(
        run_id=run_id,
        pipeline_name=pipeline_name,
        pipeline_version="1",
        status=status,
        step_index=step_index,
        input=b'"input"',
        context=b'{"run_id":"%s"}' % run_id.encode(),
        created_at=updated_at,
        updated_at=updated_at,
    )


def make_step(
    run_id: str,
    index: int,
    *,
    result: bytes = b"{}",
    success: bool = True,
    recorded_at: float = 2000.0,
    pending: bool = False,
) -> StepRecord:
    """Return a step record for tests."""
    return StepRecord(
        run_id=run_id,
        index=index,
        name=f"step{index}",
        success=success,
        result=result,
        context=b'{"index":%d}' % index,
        recorded_at=recorded_at,
        pending=pending,
    )


class StateBackendContract(RunLeaseContract):
    """Subclass with a ``backend`` fixture returning a fresh, empty ``StateBackend``.

    It runs the lease and run-id checks of ``RunLeaseContract`` too; give a
    ``backend_factory`` fixture to make its racers two processes (see there).
    """

    @pytest.fixture
    def backend(self) -> Any:
        """Override: return a fresh, empty backend."""
        raise NotImplementedError("define a `backend` fixture in your subclass")

    @pytest.mark.asyncio
    async def test_saved_run_loads_back_equal(self, backend: StateBackend) -> None:
        run = dataclasses.replace(make_run("r1"), error="why", pause_message="wait")
        await backend.save_run(run)
        assert await backend.load_run("r1") == run

    @pytest.mark.asyncio
    async def test_unknown_run_is_none_and_has_no_steps(self, backend: StateBackend) -> None:
        assert await backend.load_run("missing") is None
        assert list(await backend.load_steps("missing")) == []

    @pytest.mark.asyncio
    async def test_save_run_replaces_the_header(self, backend: StateBackend) -> None:
        await backend.save_run(make_run("r1"))
        await backend.save_run(make_run("r1", status="completed", step_index=3))
        loaded = await backend.load_run("r1")
        assert loaded is not None and (loaded.status, loaded.step_index) == ("completed", 3)

    @pytest.mark.asyncio
    async def test_checkpoint_appends_steps_and_reports_progress(
        self, backend: StateBackend
    ) -> None:
        await backend.save_run(make_run("r1"))
        for index in range(3):
            await backend.checkpoint(make_step("r1", index, recorded_at=2000.0 + index))
        steps = list(await backend.load_steps("r1"))
        assert [s.index for s in steps] == [0, 1, 2]
        assert steps[1] == make_step("r1", 1, recorded_at=2001.0)
        loaded = await backend.load_run("r1")
        assert loaded is not None
        assert (loaded.step_index, loaded.updated_at, loaded.status) == (3, 2002.0, "running")
        assert loaded.context == make_run("r1").context  # the header is not rewritten
        listed = await backend.list_runs(status="running", limit=5)
        assert [(r.run_id, r.step_index) for r in listed if isinstance(r, RunRecord)] == [("r1", 3)]

    @pytest.mark.asyncio
    async def test_a_failed_step_is_not_counted_as_completed(self, backend: StateBackend) -> None:
        await backend.save_run(make_run("r1"))
        await backend.checkpoint(make_step("r1", 0))
        await backend.checkpoint(make_step("r1", 1, success=False))
        loaded = await backend.load_run("r1")
        assert loaded is not None and loaded.step_index == 1
        assert [s.success for s in await backend.load_steps("r1")] == [True, False]

    @pytest.mark.asyncio
    async def test_a_pending_step_loads_back_pending(self, backend: StateBackend) -> None:
        await backend.save_run(make_run("r1"))
        await backend.checkpoint(make_step("r1", 0))
        await backend.checkpoint(make_step("r1", 1, pending=True))
        steps = list(await backend.load_steps("r1"))
        assert steps == [make_step("r1", 0), make_step("r1", 1, pending=True)]
        assert [s.pending for s in steps] == [False, True]

    @pytest.mark.asyncio
    async def test_a_pending_step_is_not_counted_as_completed(self, backend: StateBackend) -> None:
        await backend.save_run(make_run("r1"))
        await backend.checkpoint(make_step("r1", 0))
        await backend.checkpoint(make_step("r1", 1, pending=True))
        loaded = await backend.load_run("r1")
        assert loaded is not None and loaded.step_index == 1
        listed = await backend.list_runs(status="running", limit=5)
        assert [(r.run_id, r.step_index) for r in listed if isinstance(r, RunRecord)] == [("r1", 1)]

    @pytest.mark.asyncio
    async def test_checkpointing_a_pending_step_again_commits_it(
        self, backend: StateBackend
    ) -> None:
        await backend.save_run(make_run("r1"))
        await backend.checkpoint(make_step("r1", 0, pending=True, result=b'{"try":1}'))
        await backend.checkpoint(make_step("r1", 0, result=b'{"try":1}', recorded_at=2001.0))
        (step,) = await backend.load_steps("r1")
        assert step == make_step("r1", 0, result=b'{"try":1}', recorded_at=2001.0)
        loaded = await backend.load_run("r1")
        assert loaded is not None
        assert (loaded.step_index, loaded.updated_at) == (1, 2001.0)

    @pytest.mark.asyncio
    async def test_a_finished_run_reports_its_header(self, backend: StateBackend) -> None:
        await backend.save_run(make_run("r1"))
        await backend.checkpoint(make_step("r1", 0, recorded_at=5000.0))
        await backend.save_run(make_run("r1", status="failed", step_index=0, updated_at=4000.0))
        loaded = await backend.load_run("r1")
        assert loaded is not None
        assert (loaded.status, loaded.step_index, loaded.updated_at) == ("failed", 0, 4000.0)

    @pytest.mark.asyncio
    async def test_checkpoint_of_a_retried_step_replaces_it(self, backend: StateBackend) -> None:
        await backend.save_run(make_run("r1"))
        await backend.checkpoint(make_step("r1", 0, result=b'{"try":1}', success=False))
        await backend.checkpoint(make_step("r1", 0, result=b'{"try":2}'))
        steps = list(await backend.load_steps("r1"))
        assert len(steps) == 1 and steps[0].result == b'{"try":2}' and steps[0].success

    @pytest.mark.asyncio
    async def test_large_binary_payloads_round_trip(self, backend: StateBackend) -> None:
        blob = b'{"data":"' + b"x" * 1_000_000 + b'"}'
        await backend.save_run(dataclasses.replace(make_run("big"), context=blob))
        await backend.checkpoint(make_step("big", 0, result=blob))
        loaded = await backend.load_run("big")
        assert loaded is not None and loaded.context == blob
        (step,) = await backend.load_steps("big")
        assert step.result == blob

    @pytest.mark.asyncio
    async def test_list_runs_filters_orders_and_limits(self, backend: StateBackend) -> None:
        await backend.save_run(make_run("old", status="completed", updated_at=1.0))
        await backend.save_run(make_run("new", status="completed", updated_at=3.0))
        await backend.save_run(make_run("mid", status="paused", updated_at=2.0))
        everything = [r.run_id for r in await backend.list_runs(status=None, limit=10)]
        assert everything == ["new", "mid", "old"]
        completed = [r.run_id for r in await backend.list_runs(status="completed", limit=10)]
        assert completed == ["new", "old"]
        assert [r.run_id for r in await backend.list_runs(status=None, limit=1)] == ["new"]

    @pytest.mark.asyncio
    async def test_delete_run_removes_header_and_steps(self, backend: StateBackend) -> None:
        await backend.save_run(make_run("r1"))
        await backend.checkpoint(make_step("r1", 0))
        await backend.delete_run("r1")
        await backend.delete_run("never-existed")
        assert await backend.load_run("r1") is None
        assert list(await backend.load_steps("r1")) == []

    @pytest.mark.asyncio
    async def test_prune_deletes_only_old_runs_in_the_statuses(self, backend: StateBackend) -> None:
        await backend.save_run(make_run("old-done", status="completed", updated_at=10.0))
        await backend.save_run(make_run("old-failed", status="failed", updated_at=10.0))
        await backend.save_run(make_run("old-paused", status="paused", updated_at=10.0))
        await backend.save_run(make_run("new-done", status="completed", updated_at=99.0))
        await backend.checkpoint(make_step("old-done", 0, recorded_at=10.0))
        deleted = await backend.prune(older_than=50.0, statuses=("completed", "failed"))
        assert deleted == 2
        remaining = {r.run_id for r in await backend.list_runs(status=None, limit=10)}
        assert remaining == {"old-paused", "new-done"}
        assert list(await backend.load_steps("old-done")) == []

    @pytest.mark.asyncio
    async def test_close_then_use_again(self, backend: StateBackend) -> None:
        await backend.save_run(make_run("r1"))
        await backend.close()
        assert await backend.load_run("r1") is not None
        await backend.close()

    @pytest.mark.asyncio
    async def test_concurrent_checkpoints_of_many_runs(self, backend: StateBackend) -> None:
        async def one_run(n: int) -> None:
            run_id = f"run{n}"
            await backend.save_run(make_run(run_id))
            for index in range(5):
                await backend.checkpoint(make_step(run_id, index, recorded_at=float(n)))

        await asyncio.gather(*(one_run(n) for n in range(20)))
        for n in range(20):
            run = await backend.load_run(f"run{n}")
            assert run is not None and run.step_index == 5
            assert [s.index for s in await backend.load_steps(f"run{n}")] == [0, 1, 2, 3, 4]

    @pytest.mark.asyncio
    async def test_threads_with_their_own_event_loops_share_the_backend(
        self, backend: StateBackend
    ) -> None:
        # Each thread runs its own loop; one closes the backend between its writes (its
        # loop's connections): the other threads' writes go on and every record lands.
        errors: list[BaseException] = []

        async def one_run(n: int) -> None:
            run_id = f"thread{n}"
            await backend.save_run(make_run(run_id))
            for index in range(10):
                await backend.checkpoint(make_step(run_id, index))
                if n == 0 and index % 3 == 0:
                    await backend.close()
            await backend.close()

        def thread(n: int) -> None:
            try:
                asyncio.run(one_run(n))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=thread, args=(n,)) for n in range(4)]
        for each in threads:
            each.start()

        def join_all() -> None:
            for each in threads:
                each.join(60)

        await asyncio.to_thread(join_all)
        assert errors == []
        for n in range(4):
            run = await backend.load_run(f"thread{n}")
            assert run is not None and run.step_index == 10
