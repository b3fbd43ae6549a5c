"""The lease and run-id behaviour every ``StateBackend`` must have, as a pytest mixin.

``StateBackendContract`` includes it. It checks ``create_run`` (a stored id is
refused unless replaced, and a replacement deletes the old records atomically),
``claim_run``, ``renew_lease`` and ``save_run(..., owner=...)`` as compare-and-swap
on the run header, and two processes racing to claim the same runs: exactly one
wins each race. The racers are two processes built by the ``backend_factory``
fixture — a picklable zero-argument callable that builds, in another process, a
backend on the same store as ``backend`` (started with the ``spawn`` method, so it
must be importable there) — or, when it returns ``None`` (the default, for a
backend that lives in one process's memory), two tasks of the test's process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import queue
import time
from collections.abc import Callable
from typing import Any

import pytest

from flujo.domain.errors import RunExistsError, RunLeasedError, RunNotFoundError
from flujo.domain.interfaces import RunRecord, StateBackend, StepRecord

__all__ = ["RunLeaseContract"]

NOW = 1_000.0
"""The contract's clock: records say they were written at this Unix time."""


def _run(run_id: str, **changes: Any) -> RunRecord:
    run = RunRecord(
        run_id=run_id,
        pipeline_name="contract",
        pipeline_version="1",
        status="running",
        step_index=0,
        input=b'"input"',
        context=b"{}",
        created_at=NOW,
        updated_at=NOW,
    )
    return dataclasses.replace(run, **changes)


def _step(run_id: str, index: int) -> StepRecord:
    return StepRecord(
        run_id=run_id,
        index=index,
        name=f"step{index}",
        success=True,
        result=b"{}",
        context=b"{}",
        recorded_at=NOW + index,
    )


def _claim_in_child(
    factory: Callable[[], Any], name: str, rounds: int, start: Any, results: Any
) -> None:
    """Entry point of a racing child process: report which rounds it won on ``results``."""
    try:
        won = asyncio.run(_claim_rounds(factory, name, rounds, start))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put((name, [], f"{type(exc).__name__}: {exc}"))
    else:
        results.put((name, won, None))


async def _claim_rounds(
    factory: Callable[[], Any], name: str, rounds: int, start: Any
) -> list[int]:
    backend: StateBackend = factory()
    won = []
    try:
        await backend.load_run("race0")  # connect before the race, not during it
        for n in range(rounds):
            await asyncio.to_thread(start.wait, 60)  # both racers go together
            if await _claim_once(backend, f"race{n}", name):
                won.append(n)
    finally:
        await backend.close()
    return won


async def _claim_once(backend: StateBackend, run_id: str, owner: str) -> bool:
    try:
        claimed = await backend.claim_run(run_id, owner=owner, lease_until=NOW + 60, now=NOW)
    except RunLeasedError:
        return False
    assert claimed.owner == owner, claimed
    return True


class RunLeaseContract:
    """Lease and run-id checks; mixed into ``StateBackendContract`` (see the module docstring)."""

    race_rounds = 20
    """How many runs the two racers race to claim."""

    @pytest.fixture
    def backend_factory(self) -> Callable[[], Any] | None:
        """Override: a picklable callable building a backend on ``backend``'s store, or None."""
        return None

    @pytest.mark.asyncio
    async def test_create_run_stores_a_new_run_with_its_lease(self, backend: StateBackend) -> None:
        run = _run("new", owner="me", lease_until=NOW + 30)
        await backend.create_run(run)
        assert await backend.load_run("new") == run
        listed = await backend.list_runs(status=None, limit=5)
        assert [(r.owner, r.lease_until) for r in listed if isinstance(r, RunRecord)] == [
            ("me", NOW + 30)
        ]
        assert len(listed) == 1

    @pytest.mark.asyncio
    async def test_create_run_of_a_stored_id_is_refused(self, backend: StateBackend) -> None:
        stored = _run("taken", status="completed", step_index=1)
        await backend.save_run(stored)
        await backend.checkpoint(_step("taken", 0))
        with pytest.raises(RunExistsError, match="'taken'"):
            await backend.create_run(_run("taken", owner="me", lease_until=NOW + 30))
        assert await backend.load_run("taken") == stored
        assert [s.index for s in await backend.load_steps("taken")] == [0]

    @pytest.mark.asyncio
    async def test_replace_deletes_the_old_run_and_its_steps(self, backend: StateBackend) -> None:
        await backend.save_run(_run("old", status="failed", owner=None))
        for index in range(3):
            await backend.checkpoint(_step("old", index))
        new = _run("old", input=b'"new"', owner="me", lease_until=NOW + 30)
        await backend.create_run(new, replace=True)
        assert await backend.load_run("old") == new
        assert list(await backend.load_steps("old")) == []

    @pytest.mark.asyncio
    async def test_replace_of_a_run_someone_leases_is_refused(self, backend: StateBackend) -> None:
        held = _run("held", owner="other", lease_until=NOW + 30)
        await backend.save_run(held)
        await backend.checkpoint(_step("held", 0))
        with pytest.raises(RunLeasedError, match="'other'") as info:
            await backend.create_run(_run("held", owner="me", lease_until=NOW + 30), replace=True)
        assert (info.value.owner, info.value.lease_until) == ("other", NOW + 30)
        assert await backend.load_run("held") == dataclasses.replace(held, step_index=1)
        expired = _run("held", owner="me", lease_until=NOW + 60, updated_at=NOW + 31)
        await backend.create_run(expired, replace=True)  # once the lease expired: replaced
        assert (await backend.load_run("held")) == expired

    @pytest.mark.asyncio
    async def test_claim_run_takes_a_free_run(self, backend: StateBackend) -> None:
        await backend.save_run(_run("free"))
        await backend.checkpoint(_step("free", 0))
        claimed = await backend.claim_run("free", owner="me", lease_until=NOW + 30, now=NOW)
        assert (claimed.owner, claimed.lease_until, claimed.step_index) == ("me", NOW + 30, 1)
        loaded = await backend.load_run("free")
        assert loaded is not None and (loaded.owner, loaded.lease_until) == ("me", NOW + 30)

    @pytest.mark.asyncio
    async def test_claim_run_of_a_leased_run_names_the_owner(self, backend: StateBackend) -> None:
        held = _run("held", owner="other", lease_until=NOW + 30)
        await backend.save_run(held)
        with pytest.raises(RunLeasedError) as info:
            await backend.claim_run("held", owner="me", lease_until=NOW + 60, now=NOW + 10)
        assert (info.value.run_id, info.value.owner, info.value.lease_until) == (
            "held",
            "other",
            NOW + 30,
        )
        assert "'other'" in str(info.value) and "20.0 s" in str(info.value)
        assert await backend.load_run("held") == held

    @pytest.mark.asyncio
    async def test_claim_run_takes_over_an_expired_lease(self, backend: StateBackend) -> None:
        await backend.save_run(_run("crashed", owner="dead", lease_until=NOW + 30))
        claimed = await backend.claim_run("crashed", owner="me", lease_until=NOW + 90, now=NOW + 30)
        assert (claimed.owner, claimed.lease_until) == ("me", NOW + 90)

    @pytest.mark.asyncio
    async def test_claim_run_of_an_unknown_run(self, backend: StateBackend) -> None:
        with pytest.raises(RunNotFoundError, match="'missing'"):
            await backend.claim_run("missing", owner="me", lease_until=NOW + 30, now=NOW)

    @pytest.mark.asyncio
    async def test_renew_lease_only_by_its_owner(self, backend: StateBackend) -> None:
        await backend.save_run(_run("r", owner="me", lease_until=NOW + 30))
        await backend.renew_lease("r", owner="me", lease_until=NOW + 60)
        loaded = await backend.load_run("r")
        assert loaded is not None and loaded.lease_until == NOW + 60
        with pytest.raises(RunLeasedError) as info:
            await backend.renew_lease("r", owner="other", lease_until=NOW + 90)
        assert info.value.owner == "me"
        loaded = await backend.load_run("r")
        assert loaded is not None and (loaded.owner, loaded.lease_until) == ("me", NOW + 60)

    @pytest.mark.asyncio
    async def test_renew_lease_fails_once_another_took_over(self, backend: StateBackend) -> None:
        await backend.save_run(_run("r", owner="stalled", lease_until=NOW + 30))
        await backend.claim_run("r", owner="new", lease_until=NOW + 90, now=NOW + 31)
        with pytest.raises(RunLeasedError) as info:
            await backend.renew_lease("r", owner="stalled", lease_until=NOW + 61)
        assert info.value.owner == "new"
        with pytest.raises(RunNotFoundError):
            await backend.renew_lease("missing", owner="me", lease_until=NOW + 30)
        await backend.save_run(_run("ended", status="completed"))  # an ended run has no owner
        with pytest.raises(RunLeasedError):
            await backend.renew_lease("ended", owner="me", lease_until=NOW + 30)

    @pytest.mark.asyncio
    async def test_save_run_with_an_owner_writes_only_while_it_holds_the_run(
        self, backend: StateBackend
    ) -> None:
        await backend.save_run(_run("r", owner="me", lease_until=NOW + 30))
        ended = _run("r", status="completed", step_index=2, owed=b'[{"k":1}]')
        await backend.save_run(ended, owner="me")
        assert await backend.load_run("r") == ended
        with pytest.raises(RunLeasedError):
            await backend.save_run(_run("r", status="failed"), owner="me")  # released it
        assert await backend.load_run("r") == ended
        await backend.save_run(_run("r", owner="new", lease_until=NOW + 30))
        with pytest.raises(RunLeasedError) as info:
            await backend.save_run(_run("r", status="failed"), owner="me")
        assert info.value.owner == "new"
        with pytest.raises(RunNotFoundError):
            await backend.save_run(_run("missing"), owner="me")

    @pytest.mark.asyncio
    async def test_two_racers_claiming_a_run_exactly_one_wins(
        self, backend: StateBackend, backend_factory: Callable[[], Any] | None
    ) -> None:
        rounds = self.race_rounds
        for n in range(rounds):
            await backend.save_run(_run(f"race{n}"))
        if backend_factory is None:
            # One process's memory: the racers are two tasks of this process instead.
            won: dict[str, list[int]] = {"task0": [], "task1": []}

            async def race(n: int) -> None:
                claims = [_claim_once(backend, f"race{n}", who) for who in won]
                for who, claimed in zip(won, await asyncio.gather(*claims), strict=True):
                    if claimed:
                        won[who].append(n)

            await asyncio.gather(*(race(n) for n in range(rounds)))
        else:
            won = await _race_processes(backend_factory, rounds)
        winners = {n: [who for who in won if n in won[who]] for n in range(rounds)}
        for n in range(rounds):
            assert len(winners[n]) == 1, f"race {n}: winners {winners[n]}"
            stored = await backend.load_run(f"race{n}")
            assert stored is not None and stored.owner == winners[n][0]


async def _race_processes(factory: Callable[[], Any], rounds: int) -> dict[str, list[int]]:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(
            target=_claim_in_child,
            args=(factory, f"process{n}", rounds, start, results),
            daemon=True,
        )
        for n in range(2)
    ]
    outcomes: list[tuple[str, list[int], str | None]] = []
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + 120
        while len(outcomes) < len(processes):
            try:
                outcomes.append(await asyncio.to_thread(results.get, True, 0.5))
            except queue.Empty:
                if all(p.exitcode is not None for p in processes) and results.empty():
                    pytest.fail("a racing process died without reporting")
                if time.monotonic() > deadline:
                    pytest.fail("the racing processes did not finish in 120 s")
    finally:
        for process in processes:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
                process.join()
            process.close()
        results.close()
        results.join_thread()
    errors = [f"{name}: {error}" for name, _, error in outcomes if error is not None]
    assert errors == [], f"a lost race must raise RunLeasedError, nothing else: {errors}"
    return {name: won for name, won, _ in outcomes}
