"""One process drives a run: the lease taken at start and resume, renewed, lost, given back."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import time
from typing import Any

import pytest

from flujo import ConfigurationError, Pipeline, Step
from flujo.containers import FlujoContainer
from flujo.domain.errors import ResumeError, RunLeasedError, StateBackendError, StateError
from flujo.domain.events import HookEvent, RunFinished
from flujo.infra.state.memory import InMemoryBackend
from flujo.providers import InMemoryStateProvider
from flujo.testing import FakeClock, Faults, FaultyStateBackend, SequentialIds, override_providers
from tests.lifecycle_doubles import (
    HEARTBEAT_S,
    LEASE_S,
    Journal,
    Mortal,
    ProcessDied,
    appender,
    journal_runner,
    memory_container,
)

STEPS = 6


async def _failed_at(container: Any, provider: Any, index: int) -> str:
    """Store a run of ``STEPS`` steps that failed at step ``index``; return its id."""

    def broken(data: int) -> int:
        raise RuntimeError("transient")

    steps = [appender(i) for i in range(STEPS)]
    steps[index] = Step.from_callable(broken, name=f"append{index}")
    result = await journal_runner(steps, provider, container=container).run_async(0, run_id="r")
    assert result.status == "failed"
    return result.run_id


async def test_two_resumers_of_one_run_one_drives_and_the_other_is_refused() -> None:
    container, provider = memory_container(), InMemoryStateProvider[Any]()
    run_id = await _failed_at(container, provider, 2)
    slow = journal_runner(
        [appender(i, delay_s=0.02) for i in range(STEPS)], provider, container=container
    )
    fast = journal_runner([appender(i) for i in range(STEPS)], provider, container=container)

    outcomes = await asyncio.gather(
        slow.resume_async(run_id), fast.resume_async(run_id), return_exceptions=True
    )

    done = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, RunLeasedError)]
    assert len(done) == 1 and len(refused) == 1, outcomes
    assert done[0].status == "completed"
    assert await provider.load("log") == list(range(STEPS))
    error = refused[0]
    assert error.run_id == run_id and error.owner is not None and error.lease_until is not None
    assert repr(error.owner) in str(error) and "leased by" in str(error)
    assert isinstance(error, StateError)
    stored = await container.state_backend().load_run(run_id)
    assert (stored.status, stored.owner, stored.lease_until) == ("completed", None, None)


async def test_the_lease_is_renewed_while_a_run_runs_longer_than_it() -> None:
    container, provider = memory_container(), InMemoryStateProvider[Any]()
    backend = container.state_backend()
    seen: list[tuple[str | None, float | None]] = []

    async def watch(data: int) -> int:
        stored = await backend.load_run("long")
        seen.append((stored.owner, stored.lease_until))
        await asyncio.sleep(LEASE_S / 2)
        return data

    steps = [Step.from_callable(watch, name=f"watch{i}") for i in range(4)]  # 2 leases long
    runner = journal_runner(steps, provider, container=container)
    intruder = journal_runner(steps, provider, container=container)
    task = asyncio.create_task(runner.run_async(0, run_id="long"))
    await asyncio.sleep(LEASE_S * 1.5)  # past the first lease: renewed, not expired
    with pytest.raises(RunLeasedError):
        await intruder.resume_async("long")
    result = await task

    assert result.status == "completed", result.error
    owners = {owner for owner, _ in seen}
    assert len(owners) == 1 and None not in owners
    untils = [until for _, until in seen]
    assert untils == sorted(untils) and untils[-1] > untils[0]  # the heartbeat moved it on


async def test_a_crashed_runs_lease_is_taken_over_only_after_it_expires() -> None:
    container, provider = memory_container(), InMemoryStateProvider[Any]()
    inner = container.state_backend()
    dying = Mortal(inner, die_after_checkpoints=3)
    crashed = journal_runner(
        [appender(i) for i in range(STEPS)], provider, container=container, state_backend=dying
    )
    with pytest.raises(ProcessDied):
        await crashed.run_async(0, run_id="crashed")
    stored = await inner.load_run("crashed")
    assert stored.status == "running" and stored.owner is not None

    resumer = journal_runner([appender(i) for i in range(STEPS)], provider, container=container)
    with pytest.raises(RunLeasedError) as info:
        await resumer.resume_async("crashed")
    assert info.value.owner == stored.owner and info.value.lease_until == stored.lease_until
    assert list(await provider.load("log")) == [0, 1, 2]  # the refused resume ran nothing

    await asyncio.sleep(max(stored.lease_until - time.time(), 0.0))
    result = await resumer.resume_async("crashed")
    assert result.status == "completed"
    assert await provider.load("log") == list(range(STEPS))


async def test_a_run_whose_lease_was_taken_over_stops_before_its_next_commit() -> None:
    clock, container = FakeClock(1_000.0), memory_container()
    override_providers(container, clock=clock)
    backend, provider = container.state_backend(), InMemoryStateProvider[Any]()
    events: list[HookEvent] = []

    async def stall(data: int, *, context: Journal) -> int:
        context.log.set([*(context.log.get() or []), 1])
        clock.advance(10 * LEASE_S)  # this process stalls past its lease ...
        await backend.claim_run("taken", owner="other", lease_until=clock() + 60, now=clock())
        return data  # ... and another process took the run over meanwhile

    runner = journal_runner(
        [appender(0), Step.from_callable(stall, name="stall"), appender(2)],
        provider,
        container=container,
        hooks=[events.append],
    )
    with pytest.raises(RunLeasedError) as info:
        await runner.run_async(0, run_id="taken")

    assert info.value.owner == "other"
    assert "lost its lease" in str(info.value) and "'other'" in str(info.value)
    assert await provider.load("log") == [0]  # the stalled step's set() was not saved
    assert [s.index for s in await backend.load_steps("taken")] == [0]
    stored = await backend.load_run("taken")
    assert (stored.status, stored.owner) == ("running", "other")  # the new owner's run
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert len(finished) == 1 and "RunLeasedError" in (finished[0].result.error or "")


async def test_a_heartbeat_that_finds_the_lease_taken_stops_the_run() -> None:
    container, provider = memory_container(), InMemoryStateProvider[Any]()
    backend = container.state_backend()
    ran: list[int] = []

    async def taken_meanwhile(data: int) -> int:
        run = await backend.load_run("beat")
        # Another process took over (as if this one had stalled): the heartbeat finds out.
        await backend.save_run(
            dataclasses.replace(run, owner="other", lease_until=time.time() + 60)
        )
        await asyncio.sleep(LEASE_S / 2)
        ran.append(data)
        return data

    runner = journal_runner(
        [Step.from_callable(taken_meanwhile, name="taken"), appender(1)],
        provider,
        container=container,
    )
    with pytest.raises(RunLeasedError, match="lost its lease"):
        await runner.run_async(0, run_id="beat")
    assert ran == [0]
    assert list(await backend.load_steps("beat")) == []
    assert await provider.load("log") is None


async def test_a_refused_resume_of_a_paused_run_leaves_it_paused_and_free() -> None:
    container, provider = memory_container(), InMemoryStateProvider[Any]()
    pipeline = Pipeline([appender(0), Step.human_in_the_loop("ok?"), appender(1)])
    runner = journal_runner(list(pipeline.steps), provider, container=container)
    paused = await runner.run_async(0, run_id="p")
    assert paused.status == "paused"
    stored = await container.state_backend().load_run("p")
    assert (stored.owner, stored.lease_until) == (None, None)  # a paused run has no owner

    with pytest.raises(ResumeError):
        await runner.resume_async("p")  # no human input: nothing runs, the lease goes back
    stored = await container.state_backend().load_run("p")
    assert (stored.status, stored.owner) == ("paused", None)
    done = await runner.resume_async("p", human_input=1)
    assert done.status == "completed"


async def test_a_replace_of_a_run_another_process_drives_is_refused() -> None:
    container, provider = memory_container(), InMemoryStateProvider[Any]()
    gate = asyncio.Event()

    async def wait(data: int) -> int:
        await gate.wait()
        return data

    runner = journal_runner([Step.from_callable(wait, name="wait")], provider, container=container)
    task = asyncio.create_task(runner.run_async(0, run_id="busy"))
    await asyncio.sleep(0.01)
    with pytest.raises(RunLeasedError, match="busy"):
        await runner.run_async(1, run_id="busy", replace=True)
    gate.set()
    assert (await task).status == "completed"


def test_lease_settings_are_validated() -> None:
    container = FlujoContainer()
    container.config.from_dict({"state": {"lease_s": 5, "heartbeat_s": 5}})
    with pytest.raises(ConfigurationError, match="heartbeat_s"):
        container.settings()
    container = FlujoContainer()
    container.config.from_dict({"state": {"lease_s": 0}})
    with pytest.raises(ConfigurationError, match="lease_s"):
        container.settings()
    assert FlujoContainer().settings().state.lease_s == 30.0
    assert FlujoContainer().settings().state.heartbeat_s == 10.0


def test_run_leased_error_pickles_with_its_fields() -> None:
    error = RunLeasedError.held("r", "host:1:ab", 2_000_000_000.0, 1_999_999_990.0)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.run_id, copy.owner, copy.lease_until) == ("r", "host:1:ab", 2_000_000_000.0)
    assert str(copy) == str(error) and "in 10.0 s" in str(error)


async def test_owner_ids_are_unique_per_run_and_come_from_the_container() -> None:
    container = memory_container()
    override_providers(container, owner_id=SequentialIds("owner"))
    backend = InMemoryBackend()
    owners: list[str | None] = []

    async def note(data: int) -> int:
        owners.append((await backend.load_run(f"run{data}")).owner)
        return data

    runner = journal_runner(
        [Step.from_callable(note, name="note")],
        InMemoryStateProvider[Any](),
        container=container,
        state_backend=backend,
    )
    await runner.run_async(0, run_id="run0")
    await runner.run_async(1, run_id="run1")
    assert owners == ["owner-1", "owner-2"]


def flaky_renewals(failures: Faults) -> FaultyStateBackend:
    """Run state in memory whose lease renewals fail as scheduled: a store gone for a moment."""
    reset = StateBackendError("renewing failed: connection reset")
    return FaultyStateBackend(
        InMemoryBackend(), renew_lease=dataclasses.replace(failures, error=reset)
    )


async def test_a_failed_renewal_is_reported_and_tried_again_at_the_next_beat(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = flaky_renewals(Faults.first(2))

    async def through_three_beats(data: int) -> int:
        while backend.calls["renew_lease"] < 3:  # two failed renewals, then one that lands
            await asyncio.sleep(HEARTBEAT_S / 5)
        return data

    runner = journal_runner(
        [Step.from_callable(through_three_beats, name="beats")],
        InMemoryStateProvider[Any](),
        state_backend=backend,
    )
    with caplog.at_level("WARNING"):
        result = await runner.run_async(0, run_id="flaky")
    assert result.status == "completed"
    assert backend.calls["renew_lease"] >= 3
    warned = [
        r.getMessage() for r in caplog.records if "renewing its lease failed" in r.getMessage()
    ]
    assert len(warned) == 2 and "connection reset" in warned[0]


async def test_a_lease_that_cannot_be_confirmed_before_it_expires_stops_the_commit() -> None:
    backend = flaky_renewals(Faults.always())

    async def longer_than_the_lease(data: int) -> int:
        await asyncio.sleep(LEASE_S)
        return data

    runner = journal_runner(
        [Step.from_callable(longer_than_the_lease, name="long"), appender(1)],
        InMemoryStateProvider[Any](),
        state_backend=backend,
    )
    with pytest.raises(StateBackendError, match="connection reset"):
        await runner.run_async(0, run_id="unconfirmed")
    assert list(await backend.load_steps("unconfirmed")) == []  # not committed unconfirmed
    stored = await backend.load_run("unconfirmed")
    assert (stored.status, stored.owner) == ("failed", None)


def test_a_lease_past_year_9999_still_makes_a_clear_error() -> None:
    """A stored lease_until no date can hold (a clock gone wrong) is named, not a ValueError."""
    error = RunLeasedError.held("r", "host:1:ab", 1e12, 1_000.0)
    assert "leased by 'host:1:ab'" in str(error) and "1000000000000" in str(error)
    assert error.lease_until == 1e12
