"""The container's shared parts are built once, whatever the number of threads asking.

Each test slows the part's constructor down, so every thread reaches the provider
while the first build is still under way: a provider that is not thread-safe
builds one part per thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from flujo import Flujo, Step
from flujo.containers import FlujoContainer
from flujo.infra.caches import InMemoryLRUCache
from flujo.infra.hashing import Blake3Hasher
from flujo.infra.serialization import OrjsonSerializer
from flujo.infra.state.memory import InMemoryBackend
from flujo.infra.state.postgres import PostgresBackend
from flujo.infra.state.sqlite import SQLiteBackend
from flujo.infra.telemetry import LoggingTelemetry, NullTelemetry

THREADS = 8


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)


def _slowed(monkeypatch: pytest.MonkeyPatch, cls: type[Any]) -> list[object]:
    """Make ``cls(...)`` take 20 ms; return the list of instances made."""
    made: list[object] = []
    real_init = cls.__init__

    def slow_init(self: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.02)
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(cls, "__init__", slow_init)
    return made


def _from_threads(resolve: Callable[[], object]) -> list[object]:
    """Call ``resolve`` from THREADS threads released together by a barrier."""
    barrier = threading.Barrier(THREADS)
    seen: list[object] = []
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            seen.append(resolve())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    return seen


CASES = [
    ("serializer", OrjsonSerializer, {}),
    ("hasher", Blake3Hasher, {}),
    ("cache_backend", InMemoryLRUCache, {}),
    ("telemetry", LoggingTelemetry, {}),
    ("telemetry", NullTelemetry, {"telemetry": {"backend": "null"}}),
    ("state_backend", InMemoryBackend, {"state": {"backend": "memory"}}),
    ("state_backend", SQLiteBackend, {}),
    ("state_backend", PostgresBackend, {"state": {"uri": "postgresql://u@127.0.0.1:1/db"}}),
]


@pytest.mark.parametrize(
    ("name", "cls", "config"), CASES, ids=[f"{n}-{c.__name__}" for n, c, _ in CASES]
)
def test_a_singleton_is_built_once_under_threads(
    monkeypatch: pytest.MonkeyPatch, name: str, cls: type[Any], config: dict[str, Any]
) -> None:
    made = _slowed(monkeypatch, cls)
    container = FlujoContainer()
    container.config.from_dict(config)
    container.settings()
    seen = _from_threads(getattr(container, name))
    assert len(made) == 1
    assert len({id(part) for part in seen}) == 1 and seen[0] is made[0]


def test_settings_are_validated_once_under_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import flujo.containers

    loaded: list[object] = []
    real_load = flujo.containers.load_settings

    def slow_load(raw: Any, **kwargs: Any) -> Any:
        time.sleep(0.02)
        settings = real_load(raw, **kwargs)
        loaded.append(settings)
        return settings

    monkeypatch.setattr(flujo.containers, "load_settings", slow_load)
    container = FlujoContainer()
    seen = _from_threads(container.settings)
    assert len(loaded) == 1 and all(s is loaded[0] for s in seen)


def test_a_configuration_change_under_threads_builds_the_part_once_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = FlujoContainer()
    container.config.from_dict({"cache": {"max_entries": 10}})
    before = container.cache_backend()
    made = _slowed(monkeypatch, InMemoryLRUCache)
    container.config.from_dict({"cache": {"max_entries": 20}})
    seen = _from_threads(container.cache_backend)
    assert len(made) == 1 and all(part is made[0] for part in seen)
    assert made[0] is not before and len({id(s) for s in seen}) == 1


def test_runs_from_many_threads_share_one_memory_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    made = _slowed(monkeypatch, InMemoryBackend)
    container = FlujoContainer()
    container.config.from_dict({"state": {"backend": "memory"}})
    runner = Flujo(Step.from_callable(lambda x: x + 1, name="inc"), container=container)
    run_ids = _from_threads(lambda: runner.run(1).run_id)
    assert len(made) == 1
    stored = made[0]
    assert isinstance(stored, InMemoryBackend)
    listed = asyncio.run(stored.list_runs(status="completed", limit=100))
    assert sorted(r.run_id for r in listed) == sorted(run_ids)


def test_an_in_memory_backend_shared_by_threads_lists_while_runs_are_saved() -> None:
    # A listing walks the dicts while other threads' runs add to them: a lock keeps each
    # call whole, so no "dictionary changed size during iteration" and no run is lost.
    from flujo.testing import make_run, make_step

    backend = InMemoryBackend()
    per_thread = 300

    def work() -> int:
        name = threading.current_thread().name
        if name.endswith("-list"):
            seen = 0
            for _ in range(per_thread):
                seen = len(asyncio.run(backend.list_runs(status=None, limit=10_000)))
            return seen

        async def save() -> None:
            for n in range(per_thread):
                await backend.save_run(make_run(f"{name}-{n}"))
                await backend.checkpoint(make_step(f"{name}-{n}", 0))

        asyncio.run(save())
        return per_thread

    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def guarded() -> None:
        barrier.wait()
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=guarded, name=f"t{n}-{'list' if n % 2 else 'save'}")
        for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    listed = asyncio.run(backend.list_runs(status=None, limit=10_000))
    assert len(listed) == per_thread * THREADS // 2
    assert all(r.step_index == 1 for r in listed)
