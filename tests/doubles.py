"""Test doubles for managed state: recording, slow and failing providers, a recording backend.

Every double can share one ``events`` list, so a test can check the order in
which steps ran, providers loaded or saved, and the run state was checkpointed.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.infra.state.memory import InMemoryBackend

Event = tuple[Any, ...]


class RecordingProvider:
    """A dict-backed ``StateProvider`` that records every call.

    Like an external store, it hands out and keeps copies: changing a loaded
    value in place does not change what the provider holds until it is saved.
    ``events`` receives ``("load", name, key)`` and ``("save", name, key, data)``
    entries; ``load_calls`` / ``save_calls`` keep this provider's own calls.
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        name: str = "provider",
        events: list[Event] | None = None,
    ) -> None:
        self.data: dict[str, Any] = dict(data or {})
        self.name = name
        self.events: list[Event] = events if events is not None else []
        self.load_calls: list[str] = []
        self.save_calls: list[tuple[str, Any]] = []

    async def load(self, key: str) -> Any | None:
        self.load_calls.append(key)
        self.events.append(("load", self.name, key))
        return copy.deepcopy(self.data.get(key))

    async def save(self, key: str, data: Any) -> None:
        stored = copy.deepcopy(data)
        self.save_calls.append((key, stored))
        self.events.append(("save", self.name, key, stored))
        self.data[key] = stored

    def __repr__(self) -> str:
        return f"RecordingProvider({self.name!r})"


class BarrierProvider(RecordingProvider):
    """A provider whose ``load`` returns only once ``parties`` loads have started.

    Sequential hydration never reaches the barrier: the first load times out
    after ``timeout_s`` and raises ``TimeoutError``.
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        parties: int,
        timeout_s: float = 1.0,
        name: str = "barrier",
    ) -> None:
        super().__init__(data, name=name)
        self.parties = parties
        self.timeout_s = timeout_s
        self.started = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._all_started = asyncio.Event()

    async def load(self, key: str) -> Any | None:
        self.started += 1
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        if self.started >= self.parties:
            self._all_started.set()
        try:
            await asyncio.wait_for(self._all_started.wait(), self.timeout_s)
        finally:
            self._in_flight -= 1
        return await super().load(key)


class SlowProvider(RecordingProvider):
    """A provider whose ``load`` sleeps ``delay_s`` seconds first."""

    def __init__(
        self, data: dict[str, Any] | None = None, *, delay_s: float, name: str = "slow"
    ) -> None:
        super().__init__(data, name=name)
        self.delay_s = delay_s

    async def load(self, key: str) -> Any | None:
        await asyncio.sleep(self.delay_s)
        return await super().load(key)


class FailingLoadProvider(RecordingProvider):
    """A provider whose ``load`` raises ``error`` (the same exception object each time)."""

    def __init__(self, error: Exception, *, name: str = "failing-load") -> None:
        super().__init__(name=name)
        self.error = error

    async def load(self, key: str) -> Any | None:
        self.load_calls.append(key)
        self.events.append(("load-failed", self.name, key))
        raise self.error


class FlakySaveProvider(RecordingProvider):
    """A provider whose first ``failures`` saves raise ``error``; later saves succeed.

    Every attempt, failed or not, is recorded as ``("save-attempt", name, key)``.
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        failures: int,
        error: Exception | None = None,
        name: str = "flaky-save",
        events: list[Event] | None = None,
    ) -> None:
        super().__init__(data, name=name, events=events)
        self.failures = failures
        self.error = error if error is not None else ConnectionError("store unavailable")
        self.attempts = 0

    async def save(self, key: str, data: Any) -> None:
        self.attempts += 1
        self.events.append(("save-attempt", self.name, key))
        if self.attempts <= self.failures:
            raise self.error
        await super().save(key, data)


class RecordingStateBackend(InMemoryBackend):
    """flujo's in-memory ``StateBackend`` that also logs each write into ``events``.

    Entries: ``("save_run", status, step_index)`` and
    ``("checkpoint", status, step_index, step_name)`` (status ``pending`` for a record
    written before its step's saves). Every record written
    (run headers and step records) is kept in ``records``, in order.
    """

    def __init__(self, events: list[Event] | None = None) -> None:
        super().__init__()
        self.events: list[Event] = events if events is not None else []
        self.records: list[RunRecord | StepRecord] = []

    async def create_run(self, run: RunRecord, *, replace: bool = False) -> None:
        self.events.append(("save_run", run.status, run.step_index))
        self.records.append(run)
        await super().create_run(run, replace=replace)

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        self.events.append(("save_run", run.status, run.step_index))
        self.records.append(run)
        await super().save_run(run, owner=owner)

    async def checkpoint(self, step: StepRecord) -> None:
        status = "pending" if step.pending else "running" if step.success else "failed"
        completed = step.index + 1 if step.success else step.index
        self.events.append(("checkpoint", status, completed, step.name))
        self.records.append(step)
        await super().checkpoint(step)
