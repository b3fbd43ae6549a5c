"""What a ``FinalCheckpoint`` backend's ``finish_run`` must do, as a pytest mixin.

A backend that offers ``finish_run(step, run, owner=...)`` subclasses
``FinalCheckpointContract`` beside ``StateBackendContract`` (same ``backend``
fixture). It checks that the last step record and the final header land
together, replacing a record the step had (a pending one, a partial one), and
that with an owner who no longer holds the lease neither lands
(``RunLeasedError``), nor for a run that is not stored (``RunNotFoundError``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from flujo.domain.errors import RunLeasedError, RunNotFoundError
from flujo.domain.interfaces import FinalCheckpoint, RunRecord, StateBackend, StepRecord
from flujo.testing.state_backend_contract import make_run, make_step

__all__ = ["FinalCheckpointContract"]


def _finishing(backend: StateBackend) -> FinalCheckpoint:
    assert callable(getattr(backend, "finish_run", None)), "the backend has no finish_run"
    return backend  # type: ignore[return-value]


def _running(run_id: str, owner: str | None) -> RunRecord:
    return dataclasses.replace(
        make_run(run_id, status="running"), owner=owner, lease_until=None if owner is None else 9e9
    )


def _ended(run: RunRecord, steps: int, **changes: Any) -> RunRecord:
    return dataclasses.replace(
        run, status="completed", step_index=steps, updated_at=run.updated_at + 1, **changes
    )


class FinalCheckpointContract:
    """``finish_run`` checks; needs the ``backend`` fixture of ``StateBackendContract``."""

    @pytest.mark.asyncio
    async def test_finish_run_writes_the_last_record_and_the_final_header(
        self, backend: StateBackend
    ) -> None:
        run = _running("fin", owner="me")
        await backend.create_run(run)
        await backend.checkpoint(make_step("fin", 0))
        ended = _ended(run, 2)
        await _finishing(backend).finish_run(make_step("fin", 1), ended, owner="me")
        assert await backend.load_run("fin") == ended
        assert [s.index for s in await backend.load_steps("fin")] == [0, 1]

    @pytest.mark.asyncio
    async def test_finish_run_replaces_a_record_the_last_step_had(
        self, backend: StateBackend
    ) -> None:
        run = _running("again", owner="me")
        await backend.create_run(run)
        await backend.checkpoint(dataclasses.replace(make_step("again", 0), pending=True))
        last = dataclasses.replace(make_step("again", 0), result=b'{"final": true}')
        await _finishing(backend).finish_run(last, _ended(run, 1), owner="me")
        assert list(await backend.load_steps("again")) == [last]

    @pytest.mark.asyncio
    async def test_finish_run_replaces_a_committed_record_of_the_last_step(
        self, backend: StateBackend
    ) -> None:
        # A resumed run: its last step failed before, its record committed (not pending).
        run = _running("rerun", owner="me")
        await backend.create_run(run)
        await backend.checkpoint(dataclasses.replace(make_step("rerun", 0), success=False))
        last = dataclasses.replace(make_step("rerun", 0), result=b'{"second": true}')
        ended = _ended(run, 1)
        await _finishing(backend).finish_run(last, ended, owner="me")
        assert list(await backend.load_steps("rerun")) == [last]
        assert await backend.load_run("rerun") == ended

    @pytest.mark.asyncio
    async def test_finish_run_without_an_owner_writes_both(self, backend: StateBackend) -> None:
        run = _running("free", owner=None)
        await backend.save_run(run)
        await _finishing(backend).finish_run(make_step("free", 0), _ended(run, 1), owner=None)
        assert (await backend.load_run("free")) == _ended(run, 1)
        assert [s.index for s in await backend.load_steps("free")] == [0]

    @pytest.mark.asyncio
    async def test_finish_run_by_an_owner_who_lost_the_lease_writes_nothing(
        self, backend: StateBackend
    ) -> None:
        run = _running("taken", owner="other")
        await backend.create_run(run)
        await backend.checkpoint(make_step("taken", 0))
        with pytest.raises(RunLeasedError, match="'other'"):
            await _finishing(backend).finish_run(make_step("taken", 1), _ended(run, 2), owner="me")
        loaded = await backend.load_run("taken")
        assert loaded is not None
        assert (loaded.status, loaded.step_index, loaded.owner) == ("running", 1, "other")
        assert [s.index for s in await backend.load_steps("taken")] == [0]

    @pytest.mark.asyncio
    async def test_finish_run_of_a_run_not_stored_raises_and_writes_nothing(
        self, backend: StateBackend
    ) -> None:
        record: StepRecord = make_step("ghost", 0)
        with pytest.raises(RunNotFoundError, match="'ghost'"):
            await _finishing(backend).finish_run(
                record, _ended(_running("ghost", "me"), 1), owner="me"
            )
        assert await backend.load_run("ghost") is None
        assert list(await backend.load_steps("ghost")) == []
