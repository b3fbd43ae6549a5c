"""flujo.testing's deterministic parts and container overrides: FakeClock, SequentialIds, ..."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers

from flujo import Flujo, Step
from flujo.containers import FlujoContainer
from flujo.domain.errors import ConfigurationError, StateBackendError
from flujo.state import InMemoryBackend
from flujo.testing import (
    FakeClock,
    Faults,
    FaultyStateBackend,
    SequentialIds,
    in_memory_container,
    override_providers,
)
from flujo.testing.deterministic import DEFAULT_START

ROOT = Path(__file__).resolve().parents[2]


def _plus_one(data: int) -> int:
    return data + 1


def _runner(container: Any, **kwargs: Any) -> Flujo[int, int, Any]:
    return Flujo(Step.from_callable(_plus_one, name="plus_one"), container=container, **kwargs)


# --- FakeClock and SequentialIds ------------------------------------------------------------


def test_a_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    assert clock() == clock() == DEFAULT_START
    assert clock.advance(90) == DEFAULT_START + 90 == clock()
    clock.set(5.0)
    assert clock() == 5.0 and clock.now == 5.0


def test_a_ticking_clock_gives_every_reading_a_time_of_its_own() -> None:
    clock = FakeClock(100.0, tick=0.5)
    assert [clock(), clock(), clock()] == [100.0, 100.5, 101.0]
    assert clock.now == 101.5  # reading `now` does not tick


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FakeClock().advance(-1), "moves forward; use set"),
        (lambda: FakeClock(float("nan")), "finite number"),
        (lambda: FakeClock(tick=-1), "tick"),
        (lambda: FakeClock("now"), "finite number"),
        (lambda: SequentialIds(""), "non-empty prefix"),
        (lambda: SequentialIds("run", start=1.5), "integer"),  # type: ignore[arg-type]
    ],
)
def test_bad_clock_and_id_arguments_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_sequential_ids_count_and_never_repeat_across_threads() -> None:
    ids = SequentialIds("owner", start=7)
    assert [ids(), ids()] == ["owner-7", "owner-8"]
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: ids(), range(400)))
    assert len(set(made)) == 400 and ids.issued == 402


def test_a_clock_read_from_many_threads_gives_each_reading_once() -> None:
    clock = FakeClock(0.0, tick=1.0)
    readings: list[float] = []
    lock = threading.Lock()

    def read() -> None:
        for _ in range(100):
            value = clock()
            with lock:
                readings.append(value)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(readings) == [float(i) for i in range(400)]


# --- through the container ------------------------------------------------------------------


async def test_clock_and_ids_installed_on_the_container_reach_run_records() -> None:
    container, clock = in_memory_container(), FakeClock(1_000.0)
    with override_providers(
        container, clock=clock, run_id=SequentialIds("run"), owner_id=SequentialIds("me")
    ):
        runner = _runner(container)
        first = await runner.run_async(1)
        clock.advance(60)
        second = await runner.run_async(2)
        assert (first.run_id, second.run_id) == ("run-1", "run-2")
        info = await runner.get_run("run-2")
        assert (info.created_at.timestamp(), info.updated_at.timestamp()) == (1_060.0, 1_060.0)
        clock.advance(3_600)
        assert await runner.prune(older_than=1_800, statuses=["completed"]) == 2
    assert container.run_id() != "run-3"  # the real ids are back


async def test_a_lease_expires_when_the_fake_clock_passes_it() -> None:
    container, clock = in_memory_container(), FakeClock(1_000.0)
    override_providers(container, clock=clock, owner_id=SequentialIds("owner"))
    backend = container.state_backend()
    runner = _runner(container)
    await runner.run_async(1, run_id="r")
    stored = await backend.load_run("r")
    assert stored is not None and stored.owner is None
    claimed = await backend.claim_run("r", owner="other", lease_until=clock() + 30, now=clock())
    assert claimed.owner == "other"
    clock.advance(31)  # the other process's lease ran out: this one may take the run
    taken = await backend.claim_run("r", owner="owner-9", lease_until=clock() + 30, now=clock())
    assert taken.owner == "owner-9"


async def test_overrides_unwind_in_order_and_reset_twice_does_nothing() -> None:
    container = in_memory_container()
    outer_backend, inner_backend = InMemoryBackend(), InMemoryBackend()
    outer = override_providers(container, state_backend=outer_backend)
    with override_providers(container, state_backend=inner_backend, run_id=lambda: "fixed"):
        assert container.state_backend() is inner_backend and container.run_id() == "fixed"
    assert container.state_backend() is outer_backend
    assert container.run_id() != "fixed"
    outer.reset()
    outer.reset()
    assert container.state_backend() not in (outer_backend, inner_backend)
    assert isinstance(container.state_backend(), InMemoryBackend)


async def test_a_faulty_backend_swapped_in_reaches_the_next_run() -> None:
    container = in_memory_container()
    runner = _runner(container)
    assert (await runner.run_async(1)).success
    faulty = FaultyStateBackend(container.state_backend(), create_run=Faults.always())
    with (
        override_providers(container, state_backend=faulty),
        pytest.raises(StateBackendError, match="injected fault: create_run call 1"),
    ):
        await runner.run_async(2)
    assert (await runner.run_async(3)).success


def test_a_provider_is_used_as_given_and_state_providers_take_a_mapping() -> None:
    container = in_memory_container()
    with override_providers(
        container, clock=providers.Object(5.0), state_providers={"kg": "a provider"}
    ):
        assert container.clock() == 5.0
        assert container.state_providers() == {"kg": "a provider"}
    assert container.state_providers() == {}


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"clocks": FakeClock()}, "no provider 'clocks'; its providers are config, settings"),
        ({"clock": 5.0}, "clock= takes a function"),
        ({"run_id": "fixed"}, "run_id= takes a function"),
        ({"config": {}}, "container.config.from_dict"),
        ({"settings": None}, "container.config.from_dict"),
    ],
)
def test_a_bad_override_is_refused_and_changes_nothing(parts: dict[str, Any], message: str) -> None:
    container = in_memory_container()
    with pytest.raises(ConfigurationError, match=message):
        override_providers(container, state_backend=InMemoryBackend(), **parts)
    assert not container.state_backend.overridden


def test_the_in_memory_container_is_the_testing_profile_from_any_folder(tmp_path: Path) -> None:
    expected = FlujoContainer.from_profile(ROOT / "flujo" / "profiles" / "testing.yaml").config()
    assert in_memory_container().config() == expected
    assert in_memory_container() is not in_memory_container()
    code = (
        "from flujo.testing import in_memory_container\n"
        "c = in_memory_container()\n"
        "print(c.settings().state.resolved_backend, c.settings().cache.backend)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLUJO_STATE_URI": "sqlite:///elsewhere.db"}
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["memory", "memory"]
    assert list(tmp_path.iterdir()) == []
