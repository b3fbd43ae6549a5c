"""``list_runs`` and ``prune`` check their arguments and say what is allowed.

``prune(statuses="completed")`` used to read the string letter by letter and delete
nothing; ``list_runs(status="bogus")`` returned ``[]``, as if no run were stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flujo import ConfigurationError, Flujo, Step
from flujo.domain.interfaces import StateBackend
from flujo.state import InMemoryBackend, SQLiteBackend
from flujo.testing import make_run

BAD_STATUS = ["bogus", "Completed", 3, b"failed", ("completed",)]
BAD_STATUSES = ["completed", b"completed", None, 7, ["completed", "done"], ("paused", 1)]
BAD_LIMIT = [0, -1, 2.5, "10", True, None]
BAD_AGE = [-1, "7d", float("nan"), float("inf"), True, None, timedelta(seconds=-1)]
BAD_CUTOFF = ["yesterday", float("nan"), float("-inf"), True, None]


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateBackend]:
    made: Any = InMemoryBackend() if request.param == "memory" else SQLiteBackend(tmp_path / "r.db")
    await made.save_run(make_run("done", status="completed", updated_at=10.0))
    yield made
    await made.close()


@pytest.fixture
async def runner(backend: StateBackend) -> AsyncIterator[Flujo[Any, Any, Any]]:
    async with Flujo(Step.from_callable(lambda x: x, name="a"), state_backend=backend) as made:
        yield made


@pytest.mark.parametrize("status", BAD_STATUS)
async def test_list_runs_refuses_a_status_that_is_not_one(
    runner: Flujo[Any, Any, Any], backend: StateBackend, status: Any
) -> None:
    for call in (runner.list_runs, backend.list_runs):
        with pytest.raises(ConfigurationError) as caught:
            await call(status=status, limit=5)
        message = str(caught.value)
        assert repr(status) in message
        assert "'running', 'paused', 'completed', 'failed'" in message


@pytest.mark.parametrize("limit", BAD_LIMIT)
async def test_list_runs_refuses_a_limit_that_is_not_a_positive_whole_number(
    runner: Flujo[Any, Any, Any], backend: StateBackend, limit: Any
) -> None:
    for call in (runner.list_runs, backend.list_runs):
        with pytest.raises(ConfigurationError, match="limit must be a whole number > 0"):
            await call(status=None, limit=limit)


@pytest.mark.parametrize("statuses", BAD_STATUSES)
async def test_prune_refuses_statuses_that_are_not_a_collection_of_statuses(
    runner: Flujo[Any, Any, Any], backend: StateBackend, statuses: Any
) -> None:
    with pytest.raises(ConfigurationError, match="statuses") as caught:
        await runner.prune(older_than=0, statuses=statuses)
    with pytest.raises(ConfigurationError, match="statuses"):
        await backend.prune(older_than=1e12, statuses=statuses)
    assert "'running', 'paused', 'completed', 'failed'" in str(caught.value)
    assert await backend.load_run("done") is not None  # nothing was deleted


async def test_a_lone_status_string_is_refused_with_the_fix(runner: Flujo[Any, Any, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"write \('completed',\) for one"):
        await runner.prune(older_than=0, statuses="completed")


@pytest.mark.parametrize("older_than", BAD_AGE)
async def test_prune_refuses_an_age_that_is_not_one(
    runner: Flujo[Any, Any, Any], older_than: Any
) -> None:
    with pytest.raises(ConfigurationError, match="older_than must be a timedelta or a number"):
        await runner.prune(older_than=older_than)


@pytest.mark.parametrize("cutoff", BAD_CUTOFF)
async def test_a_backend_refuses_a_cutoff_that_is_not_a_unix_time(
    backend: StateBackend, cutoff: Any
) -> None:
    with pytest.raises(ConfigurationError, match="older_than must be a finite Unix time"):
        await backend.prune(older_than=cutoff, statuses=("completed",))


async def test_the_allowed_forms_work(runner: Flujo[Any, Any, Any], backend: StateBackend) -> None:
    assert [info.run_id for info in await runner.list_runs(status="completed", limit=1)] == ["done"]
    assert await runner.list_runs(status="paused") == []
    assert await backend.prune(older_than=5, statuses=["completed"]) == 0  # an int cutoff
    assert await runner.prune(older_than=timedelta(0), statuses={"paused"}) == 0
    assert await runner.prune(older_than=0, statuses=[]) == 0
    assert await runner.prune(older_than=0, statuses=frozenset({"completed"})) == 1
