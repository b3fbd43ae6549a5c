"""A step's saves and its checkpoint are one unit: exactly once, or a clear error on resume."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytest

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.domain.errors import StateConflictError
from flujo.domain.interfaces import Versioned, Write
from flujo.state import InMemoryBackend
from tests.unit.test_state_providers_integration import memory_container


class Crash(BaseException):
    """Stands in for the process dying: nothing in flujo catches it."""


class CopyingProvider:
    """A plain (unversioned) provider that copies, like a real store; may crash in a save."""

    def __init__(self, data: dict[str, Any], crash: str | None = None) -> None:
        self.data = copy.deepcopy(data)
        self.saves: list[tuple[str, Any]] = []
        self.crash = crash  # "before" or "after" step two's value is stored, once

    def crashes(self, when: str, data: Any) -> bool:
        if self.crash == when and "two" in (data or []):
            self.crash = None
            return True
        return False

    async def load(self, key: str) -> Any:
        return copy.deepcopy(self.data.get(key))

    async def save(self, key: str, data: Any) -> None:
        if self.crashes("before", data):
            raise Crash
        self.data[key] = copy.deepcopy(data)
        self.saves.append((key, data))
        if self.crashes("after", data):
            raise Crash


class VersionedProvider(CopyingProvider):
    """The same with versions and writer tags (compare-and-swap)."""

    def __init__(self, data: dict[str, Any], crash: str | None = None) -> None:
        super().__init__(data, crash)
        self.versions = {key: 1 for key in data}
        self.writers: dict[str, str | None] = {}

    async def load_versioned(self, key: str) -> Versioned[Any]:
        return Versioned(
            copy.deepcopy(self.data.get(key)), self.versions.get(key, 0), self.writers.get(key)
        )

    async def save_versioned(self, writes: Sequence[Write[Any]]) -> list[int]:
        for write in writes:
            found = self.versions.get(write.key, 0)
            if write.expected_version is not None and found != write.expected_version:
                raise StateConflictError(f"{write.key}: expected {write.expected_version}")
        if any(self.crashes("before", write.data) for write in writes):
            raise Crash
        out = []
        for write in writes:
            self.data[write.key] = copy.deepcopy(write.data)
            self.versions[write.key] = self.versions.get(write.key, 0) + 1
            self.writers[write.key] = write.writer
            self.saves.append((write.key, write.data))
            out.append(self.versions[write.key])
        if any(self.crashes("after", write.data) for write in writes):
            raise Crash
        return out


class Ctx(PipelineContext):
    log: ContextReference[list[str]] = ContextReference(provider_id="kg", key="log")
    other: ContextReference[list[str]] = ContextReference(provider_id="aux", key="other")


RAN: list[str] = []


def _append(name: str, *, to_other: bool = False) -> Step[Any, Any]:
    def fn(data: Any, *, context: Ctx) -> Any:
        RAN.append(name)
        context.log.set([*(context.log.get() or []), name])
        if to_other:
            context.other.set([*(context.other.get() or []), name])
        return data

    return Step.from_callable(fn, name=name)


def _runner(backend: InMemoryBackend, **providers: Any) -> Flujo[Any, Any, Ctx]:
    return Flujo(
        _append("one") >> _append("two", to_other=True) >> _append("three"),
        context_model=Ctx,
        state_providers=providers,
        state_backend=backend,
        container=memory_container(),
    )


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


async def _crash_at_two(provider: Any, aux: Any) -> tuple[InMemoryBackend, str]:
    backend = InMemoryBackend()
    with pytest.raises(Crash):
        await _runner(backend, kg=provider, aux=aux).run_async(None, run_id="r1")
    steps = await backend.load_steps("r1")
    assert steps[-1].name == "two" and steps[-1].pending, "the crash left a pending record"
    return backend, "r1"


async def test_a_crash_after_a_versioned_save_landed_commits_without_rerunning() -> None:
    kg = VersionedProvider({"log": []})
    aux = VersionedProvider({"other": []}, crash="after")
    backend, run_id = await _crash_at_two(kg, aux)

    resumed = await _runner(backend, kg=kg, aux=aux).resume_async(run_id)

    assert resumed.success, resumed.feedback
    assert RAN == ["one", "two", "three"], "step two ran once"
    assert kg.data["log"] == ["one", "two", "three"]
    assert aux.data["other"] == ["two"]
    steps = await backend.load_steps(run_id)
    assert not any(s.pending for s in steps)
    assert b"every save had landed" in steps[1].result


async def test_a_crash_before_any_versioned_save_landed_reruns_the_step() -> None:
    kg = VersionedProvider({"log": []}, crash="before")
    aux = VersionedProvider({"other": []}, crash="before")
    backend, run_id = await _crash_at_two(kg, aux)

    resumed = await _runner(backend, kg=kg, aux=aux).resume_async(run_id)

    assert resumed.success, resumed.feedback
    assert RAN == ["one", "two", "two", "three"], "step two ran again: nothing had landed"
    assert kg.data["log"] == ["one", "two", "three"]
    assert aux.data["other"] == ["two"], "no duplicate"


async def test_a_crash_between_unversioned_saves_stops_the_resume_naming_the_step() -> None:
    kg = CopyingProvider({"log": []})
    aux = CopyingProvider({"other": []}, crash="after")
    backend, run_id = await _crash_at_two(kg, aux)

    with pytest.raises(StateConflictError) as caught:
        await _runner(backend, kg=kg, aux=aux).resume_async(run_id)

    message = str(caught.value)
    assert "'two'" in message and "on_pending" in message
    assert "aux:other" in message and "kg:log" in message
    assert RAN == ["one", "two"], "nothing ran again"


@pytest.mark.parametrize("choice", ["accept", "rerun"])
async def test_on_pending_decides_and_is_recorded(choice: str) -> None:
    kg = CopyingProvider({"log": []})
    aux = CopyingProvider({"other": []}, crash="after")
    backend, run_id = await _crash_at_two(kg, aux)

    resumed = await _runner(backend, kg=kg, aux=aux).resume_async(run_id, on_pending=choice)  # type: ignore[arg-type]

    assert resumed.success, resumed.feedback
    reran = RAN.count("two") == 2
    assert reran is (choice == "rerun")
    steps = await backend.load_steps(run_id)
    assert f"{choice}: chosen by the caller".encode() in steps[1].result


async def test_a_failed_save_is_known_not_to_have_landed_and_the_resume_reruns_once() -> None:
    class Failing(CopyingProvider):
        fail = True

        async def save(self, key: str, data: Any) -> None:
            if self.fail:
                raise ConnectionError("store down")
            await super().save(key, data)

    kg = CopyingProvider({"log": []})
    aux = Failing({"other": []})
    backend = InMemoryBackend()
    failed = await _runner(backend, kg=kg, aux=aux).run_async(None, run_id="r2")
    assert not failed.success
    assert "StateSaveError" in (failed.feedback or "") and "'other'" in (failed.feedback or "")

    aux.fail = False
    with pytest.raises(StateConflictError, match="written: kg:log"):
        await _runner(backend, kg=kg, aux=aux).resume_async("r2")


async def test_on_pending_must_be_one_of_the_choices() -> None:
    from flujo import ConfigurationError

    runner = _runner(InMemoryBackend(), kg=CopyingProvider({}), aux=CopyingProvider({}))
    with pytest.raises(ConfigurationError, match="on_pending"):
        await runner.resume_async("nope", on_pending="maybe")  # type: ignore[arg-type]
