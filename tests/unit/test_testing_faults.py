"""flujo.testing's fault injection: ``Faults``, ``FaultyProvider`` and ``FaultyStateBackend``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.domain.errors import StateBackendError, StateLoadError
from flujo.domain.interfaces import AtomicCheckpoints, VersionedStateProvider, Write
from flujo.providers import InMemoryStateProvider
from flujo.state import InMemoryBackend, SQLiteBackend
from flujo.testing import (
    Faults,
    FaultyAtomicBackend,
    FaultyProvider,
    FaultyStateBackend,
    FaultyVersionedProvider,
    InjectedFault,
    in_memory_container,
    make_run,
    make_step,
)
from flujo.testing.faulty_backend import BACKEND_OPERATIONS
from tests.helpers import DictStateProvider


class Journal(PipelineContext):
    log: ContextReference[list[int]] = ContextReference(provider_id="journal", key="log")


def appender(index: int, **options: Any) -> Step[int, int]:
    def append(data: int, *, context: Journal) -> int:
        context.log.set([*(context.log.get() or []), index])
        return data + 1

    return Step.from_callable(append, name=f"append{index}", **options)


def journal_runner(steps: list[Step[int, int]], provider: Any, **kwargs: Any) -> Any:
    pipeline: Any = steps[0]
    for step in steps[1:]:
        pipeline = pipeline >> step
    kwargs.setdefault("container", in_memory_container())
    return Flujo(pipeline, context_model=Journal, state_providers={"journal": provider}, **kwargs)


async def _outcomes(provider: FaultyProvider[Any], calls: int) -> list[str]:
    seen = []
    for _ in range(calls):
        try:
            await provider.save("k", 1)
            seen.append("ok")
        except InjectedFault:
            seen.append("fail")
    return seen


# --- schedules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (Faults.nth(2, 4), ["ok", "fail", "ok", "fail", "ok"]),
        (Faults.first(2), ["fail", "fail", "ok", "ok", "ok"]),
        (Faults.first(0), ["ok"] * 5),
        (Faults.always(), ["fail"] * 5),
        (Faults(fail_from=3), ["ok", "ok", "fail", "fail", "fail"]),
        (Faults(fail=range(2, 4)), ["ok", "fail", "fail", "ok", "ok"]),
    ],
    ids=["nth", "first-then-recover", "first-0", "always", "fail-from", "range"],
)
async def test_a_schedule_fails_the_calls_it_names(faults: Faults, expected: list[str]) -> None:
    assert await _outcomes(FaultyProvider(DictStateProvider(), save=faults), 5) == expected


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Faults(fail={0}), "numbered from 1"),
        (lambda: Faults(fail={True}), "numbered from 1"),
        (lambda: Faults(fail=2), "collection of call numbers"),  # type: ignore[arg-type]
        (lambda: Faults(fail={2}, hang={2}), "call 2 is in both fail and hang"),
        (lambda: Faults(fail_after={1}, fail={1}), "call 1 is in both fail and fail_after"),
        (lambda: Faults(fail_from=0), "numbered from 1"),
        (lambda: Faults(hang={1}, hang_s=-1.0), "hang_s"),
        (lambda: Faults(error="boom"), "exception or an exception class"),  # type: ignore[arg-type]
        (lambda: Faults.nth(), "at least one call number"),
        (lambda: Faults.first(-1), "count >= 0"),
    ],
)
def test_a_bad_schedule_is_refused_saying_why(make: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


async def test_an_error_instance_is_raised_as_is_and_a_class_is_made_per_call() -> None:
    gone = TimeoutError("store gone")
    provider = FaultyProvider(DictStateProvider(), load=Faults.always(error=gone))
    for _ in range(2):
        with pytest.raises(TimeoutError) as info:
            await provider.load("k")
        assert info.value is gone
    provider.inject(load=Faults.nth(1, 2, error=KeyError))
    messages = []
    for _ in range(2):
        with pytest.raises(KeyError) as raised:
            await provider.load("k")
        messages.append(str(raised.value))
    assert messages == ["'injected fault: load call 1'", "'injected fault: load call 2'"]


async def test_by_default_a_provider_raises_injected_fault_and_a_backend_state_backend_error() -> (
    None
):
    provider = FaultyProvider(DictStateProvider(), load=Faults.always())
    with pytest.raises(InjectedFault, match="injected fault: load call 1"):
        await provider.load("k")
    assert issubclass(InjectedFault, ConnectionError)
    backend = FaultyStateBackend(InMemoryBackend(), load_run=Faults.always())
    with pytest.raises(StateBackendError, match="injected fault: load_run call 1"):
        await backend.load_run("r")


# --- the provider wrapper ---------------------------------------------------------------------


async def test_a_failed_call_never_reaches_the_inner_provider_and_fail_after_does() -> None:
    inner = DictStateProvider()
    provider = FaultyProvider(inner, save=Faults(fail={1}, fail_after={2}))
    with pytest.raises(InjectedFault):
        await provider.save("k", "first")
    assert inner.saves == []
    with pytest.raises(InjectedFault, match="save call 2"):
        await provider.save("k", "second")  # it landed; its reply was lost
    assert inner.saves == [("k", "second")]
    await provider.save("k", "third")
    assert inner.data == {"k": "third"}
    assert provider.calls == {"load": 0, "save": 3}


async def test_inject_counts_from_where_it_is_called_and_heal_removes_every_schedule() -> None:
    provider = FaultyProvider(DictStateProvider())
    assert await _outcomes(provider, 2) == ["ok", "ok"]
    provider.inject(save=Faults.nth(1))  # the next save, not the first ever
    assert await _outcomes(provider, 2) == ["fail", "ok"]
    provider.inject(save=Faults.always(), load=Faults.always())
    assert set(provider.faults) == {"load", "save"}
    provider.inject(load=None)
    assert set(provider.faults) == {"save"}
    provider.heal()
    assert provider.faults == {}
    assert await _outcomes(provider, 1) == ["ok"]
    assert provider.calls["save"] == 5


def test_a_typo_in_an_operation_is_an_error_naming_the_operations() -> None:
    provider = FaultyProvider(DictStateProvider())
    with pytest.raises(ValueError, match=r"no operation 'sav'.*load, save"):
        provider.inject(sav=Faults.always())  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"no operation 'checkpoints'.*create_run, claim_run"):
        FaultyStateBackend(InMemoryBackend(), checkpoints=Faults.always())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes a Faults schedule"):
        provider.inject(save=3)  # type: ignore[typeddict-item]


def test_it_wraps_only_what_has_the_protocol() -> None:
    with pytest.raises(TypeError, match="wraps a StateProvider"):
        FaultyProvider(object())  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="has no create_run"):
        FaultyStateBackend(object())  # type: ignore[call-overload]


def test_a_wrapped_versioned_provider_stays_versioned_and_a_plain_one_stays_plain() -> None:
    versioned = FaultyProvider(InMemoryStateProvider[int]())
    assert type(versioned) is FaultyVersionedProvider
    assert isinstance(versioned, VersionedStateProvider)
    plain = FaultyProvider(DictStateProvider())
    assert type(plain) is FaultyProvider
    assert not isinstance(plain, VersionedStateProvider)
    assert not hasattr(plain, "load_versioned")


async def test_faults_apply_to_versioned_calls_which_count_as_loads_and_saves() -> None:
    inner = InMemoryStateProvider[list[int]]()
    provider = FaultyProvider(inner, load=Faults.nth(1), save=Faults.nth(1))
    with pytest.raises(InjectedFault):
        await provider.save_versioned([Write("k", [1], 0, "w"), Write("j", [2], 0, "w")])
    assert inner.data == {}
    assert await provider.save_versioned([Write("k", [1], 0, "w")]) == [1]
    with pytest.raises(InjectedFault):
        await provider.load_versioned("k")
    found = await provider.load_versioned("k")
    assert (found.value, found.version, found.writer) == ([1], 1, "w")
    assert provider.calls == {"load": 2, "save": 2}


async def test_copy_values_hands_out_and_keeps_copies_like_an_external_store() -> None:
    inner = InMemoryStateProvider[list[int]]({"k": [1]})
    provider = FaultyProvider(inner, copy_values=True)
    loaded = await provider.load("k")
    assert loaded is not None
    loaded.append(2)
    assert inner.data["k"] == [1]
    versioned = await provider.load_versioned("k")
    assert versioned.value is not inner.data["k"]
    saved = [3]
    await provider.save("k", saved)
    saved.append(4)
    await provider.save_versioned([Write("j", saved, None, "w")])
    saved.append(5)
    assert inner.data == {"k": [3], "j": [3, 4]}
    assert (await FaultyProvider(inner).load("j")) is inner.data["j"]  # by reference otherwise


async def test_a_hang_with_hang_s_answers_late_and_then_goes_through() -> None:
    provider = FaultyProvider(DictStateProvider({"k": 1}), load=Faults(hang={1}, hang_s=0.01))
    assert await provider.load("k") == 1


# --- through a run --------------------------------------------------------------------------


async def test_a_hung_load_meets_the_load_deadline_and_fails_the_run_naming_the_reference() -> None:
    container = in_memory_container()
    container.config.from_dict({"state": {"load_timeout_s": 0.05}})
    provider = FaultyProvider(InMemoryStateProvider({"log": [1]}), load=Faults(hang={1}))
    runner = journal_runner([appender(0)], provider, container=container)
    with pytest.raises(StateLoadError, match="'journal'"):
        await runner.run_async(0, run_id="hung")
    provider.heal()
    resumed = await runner.resume_async("hung")
    assert resumed.status == "completed" and provider.inner.data["log"] == [1, 0]


async def test_saves_that_fail_then_recover_are_retried_within_the_steps_retries() -> None:
    inner = InMemoryStateProvider[list[int]]({"log": []})
    provider = FaultyProvider(inner, save=Faults.first(2))
    result = await journal_runner([appender(0, max_retries=2)], provider).run_async(0)
    assert result.success, result.step_history[0].feedback
    assert inner.data["log"] == [0] and provider.calls["save"] == 3


async def test_saves_failing_past_the_retries_fail_the_step_naming_provider_and_fault() -> None:
    inner = InMemoryStateProvider[list[int]]({"log": []})
    provider = FaultyProvider(inner, save=Faults.first(3))
    result = await journal_runner([appender(0, max_retries=2)], provider).run_async(0)
    assert result.status == "failed"
    feedback = result.step_history[0].feedback or ""
    assert "StateSaveError" in feedback and "'journal'" in feedback and "save call 3" in feedback
    assert inner.data["log"] == []


async def test_a_failed_checkpoint_fails_the_run_and_after_healing_it_resumes() -> None:
    backend = FaultyStateBackend(InMemoryBackend(), checkpoint=Faults.nth(2))
    provider = InMemoryStateProvider[list[int]]({"log": []})
    runner = journal_runner(
        [appender(0), appender(1), appender(2)], provider, state_backend=backend
    )
    result = await runner.run_async(0, run_id="b")
    assert result.status == "failed"
    stored = await backend.inner.load_run("b")
    assert stored is not None and stored.status == "failed"
    assert backend.calls["checkpoint"] == 2
    backend.heal()
    resumed = await runner.resume_async("b")
    assert resumed.status == "completed" and resumed.output == 3
    assert provider.data["log"] == [0, 1, 2]


@pytest.mark.parametrize("operation", BACKEND_OPERATIONS)
async def test_every_backend_operation_can_be_failed_and_reaches_inner_otherwise(
    operation: str,
) -> None:
    inner = InMemoryBackend()
    await inner.create_run(make_run("stored", updated_at=1.0))
    backend = FaultyStateBackend(inner)
    calls = {
        "create_run": lambda: backend.create_run(make_run("new")),
        "claim_run": lambda: backend.claim_run("stored", owner="me", lease_until=9.0, now=5.0),
        "renew_lease": lambda: backend.renew_lease("stored", owner="me", lease_until=10.0),
        "save_run": lambda: backend.save_run(make_run("stored", status="completed")),
        "checkpoint": lambda: backend.checkpoint(make_step("stored", 0)),
        "load_run": lambda: backend.load_run("stored"),
        "load_steps": lambda: backend.load_steps("stored"),
        "list_runs": lambda: backend.list_runs(status=None, limit=5),
        "delete_run": lambda: backend.delete_run("gone"),
        "prune": lambda: backend.prune(older_than=0.0, statuses=["failed"]),
    }
    assert list(calls) == list(BACKEND_OPERATIONS)
    backend.inject(**{operation: Faults.nth(1)})  # type: ignore[misc]
    with pytest.raises(StateBackendError, match=f"{operation} call 1"):
        await calls[operation]()
    if operation == "renew_lease":
        await backend.claim_run("stored", owner="me", lease_until=9.0, now=5.0)
    await calls[operation]()
    assert backend.calls[operation] == 2
    await backend.close()


async def test_a_wrapped_atomic_backend_stays_atomic_and_shared_and_faults_its_checkpoints(
    tmp_path: Path,
) -> None:
    sqlite = SQLiteBackend(tmp_path / "runs.db")
    backend = FaultyStateBackend(sqlite, checkpoint=Faults.nth(1))
    assert type(backend) is FaultyAtomicBackend
    assert isinstance(backend, AtomicCheckpoints) and backend.shared_across_loops is True
    provider = sqlite.provider()
    assert backend.holds(provider) and not backend.holds(FaultyProvider(provider))
    plain = FaultyStateBackend(InMemoryBackend())
    assert not isinstance(plain, AtomicCheckpoints) and plain.shared_across_loops is False

    runner = journal_runner([appender(0), appender(1)], provider, state_backend=backend)
    try:
        failed = await runner.run_async(0, run_id="atomic")
        assert failed.status == "failed"
        assert await provider.load("log") is None  # the write was to commit with the record
        backend.heal()
        done = await runner.resume_async("atomic")
        assert done.status == "completed" and await provider.load("log") == [0, 1]
        assert backend.calls["checkpoint"] >= 3
    finally:
        await runner.aclose()
        await sqlite.close()


async def test_concurrent_calls_are_each_counted_once() -> None:
    provider = FaultyProvider(DictStateProvider(), save=Faults.nth(50))
    outcomes = await asyncio.gather(
        *(provider.save(f"k{i}", i) for i in range(100)), return_exceptions=True
    )
    assert sum(isinstance(o, InjectedFault) for o in outcomes) == 1
    assert provider.calls["save"] == 100
