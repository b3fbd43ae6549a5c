"""The behaviour every ``VersionedStateProvider`` must have, as a pytest base class.

Subclass it and supply two fixtures::

    class TestMyProvider(VersionedStateProviderContract):
        @pytest.fixture
        def provider(self, tmp_path):
            return MyProvider(tmp_path / "state.db")

        @pytest.fixture
        def provider_factory(self, tmp_path):
            return functools.partial(MyProvider, tmp_path / "state.db")

``provider`` returns a fresh, empty provider. ``provider_factory`` returns a
picklable zero-argument callable (a module-level function, a class, a
``functools.partial`` of one) that builds, in another process, a provider on the
same store as ``provider``; the kit starts two processes with the ``spawn``
method, so the callable must be importable there. Return ``None`` from it for a
provider that lives in one process's memory: two tasks of the test's process race
instead.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import pytest

from flujo.domain.errors import StateConflictError
from flujo.domain.interfaces import Versioned, VersionedStateProvider, Write
from flujo.testing.provider_contract import StateProviderContract

__all__ = ["VersionedStateProviderContract"]

_Outcome = tuple[str, int, str | None]
"""What a racing child reports: its writer tag, the conflicts it saw, and its error, if any."""


def _increment_in_child(
    factory: Callable[[], Any], key: str, times: int, writer: str, start: Any, results: Any
) -> None:
    """Entry point of a racing child process: report its outcome on ``results``."""
    try:
        conflicts = asyncio.run(_increment(factory, key, times, writer, start))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put((writer, 0, f"{type(exc).__name__}: {exc}"))
    else:
        results.put((writer, conflicts, None))


async def _increment(
    factory: Callable[[], Any], key: str, times: int, writer: str, start: Any
) -> int:
    """Add 1 to the counter under ``key`` ``times`` times by compare-and-swap; count conflicts."""
    provider: VersionedStateProvider[int] = factory()
    conflicts = 0
    try:
        await provider.load_versioned(key)  # connect before the race, not during it
        start.wait(60)  # a barrier of both children: they start racing together
        for n in range(times):
            for _ in range(10_000):
                current = await provider.load_versioned(key)
                await asyncio.sleep(0.001)  # let the other process write in between
                write = Write(key, (current.value or 0) + 1, current.version, f"{writer}/{n}")
                try:
                    await provider.save_versioned([write])
                    break
                except StateConflictError:
                    conflicts += 1
            else:
                raise RuntimeError(f"increment {n} lost 10000 races in a row")
    finally:
        close = getattr(provider, "close", None)
        if close is not None:
            await close()
    return conflicts


def _collect(processes: Sequence[BaseProcess], results: Any, timeout_s: float) -> list[_Outcome]:
    """Wait for one outcome per process; fail when one dies without reporting."""
    outcomes: list[_Outcome] = []
    deadline = time.monotonic() + timeout_s
    while len(outcomes) < len(processes):
        try:
            outcomes.append(results.get(timeout=0.5))
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode is not None]
            if len(dead) == len(processes) and results.empty():
                pytest.fail(f"a racing process died without reporting (exit codes {dead})")
            if time.monotonic() > deadline:
                pytest.fail(f"the racing processes did not finish in {timeout_s} s")
    return outcomes


class VersionedStateProviderContract(StateProviderContract):
    """Subclass with ``provider`` and ``provider_factory`` fixtures (see the module docstring).

    It runs the whole ``StateProviderContract`` too, and then checks versions,
    writer tags, compare-and-swap conflicts, all-or-nothing multi-key saves, and
    two processes racing to increment one counter.
    """

    race_increments = 25
    """How many increments each of the two racing processes makes."""

    @pytest.fixture
    def provider_factory(self) -> Callable[[], Any] | None:
        """Override: a picklable callable building a provider on ``provider``'s store, or None."""
        raise NotImplementedError(
            "define a `provider_factory` fixture in your subclass: a picklable zero-argument "
            "callable that builds, in another process, a provider on the same store as "
            "`provider` -- or return None if the provider lives in one process's memory"
        )

    @pytest.mark.asyncio
    async def test_matches_the_protocol(self, provider: Any) -> None:
        assert isinstance(provider, VersionedStateProvider)

    @pytest.mark.asyncio
    async def test_a_missing_key_is_at_version_zero(self, provider: Any) -> None:
        assert await provider.load_versioned("never-saved") == Versioned(None, 0, None)

    @pytest.mark.asyncio
    async def test_each_save_adds_one_to_the_version(self, provider: Any) -> None:
        assert await provider.save_versioned([Write("k", {"n": 1}, 0, "run/a")]) == [1]
        assert await provider.save_versioned([Write("k", {"n": 2}, 1, "run/b")]) == [2]
        assert await provider.load_versioned("k") == Versioned({"n": 2}, 2, "run/b")
        await provider.save("k", {"n": 3})
        assert await provider.load_versioned("k") == Versioned({"n": 3}, 3, None)
        assert await provider.load("k") == {"n": 3}

    @pytest.mark.asyncio
    async def test_writer_tags_round_trip(self, provider: Any) -> None:
        writer = "run-ü 42/step:one ' \" ;--"
        await provider.save_versioned([Write("a", [1], None, writer), Write("b", [2], 0, "x/y")])
        assert await provider.load_versioned("a") == Versioned([1], 1, writer)
        assert await provider.load_versioned("b") == Versioned([2], 1, "x/y")

    @pytest.mark.asyncio
    async def test_a_stale_expected_version_conflicts_and_changes_nothing(
        self, provider: Any
    ) -> None:
        await provider.save_versioned([Write("stale-key", "one", 0, "first")])
        await provider.save_versioned([Write("stale-key", "two", 1, "second")])
        with pytest.raises(StateConflictError, match="stale-key"):
            await provider.save_versioned([Write("stale-key", "lost", 1, "late")])
        with pytest.raises(StateConflictError, match="stale-key"):
            await provider.save_versioned([Write("stale-key", "lost", 0, "creator")])
        assert await provider.load_versioned("stale-key") == Versioned("two", 2, "second")

    @pytest.mark.asyncio
    async def test_expecting_a_missing_key_to_exist_conflicts(self, provider: Any) -> None:
        with pytest.raises(StateConflictError, match="absent-key"):
            await provider.save_versioned([Write("absent-key", 1, 3, "w")])
        assert await provider.load_versioned("absent-key") == Versioned(None, 0, None)
        assert await provider.load("absent-key") is None

    @pytest.mark.asyncio
    async def test_one_conflict_in_a_multi_key_save_writes_none_of_them(
        self, provider: Any
    ) -> None:
        await provider.save_versioned([Write("taken", "kept", 0, "owner")])
        writes = [
            Write("before", "no", 0, "mine"),
            Write("taken", "no", 0, "mine"),
            Write("after", "no", 0, "mine"),
        ]
        with pytest.raises(StateConflictError, match="taken"):
            await provider.save_versioned(writes)
        assert await provider.load_versioned("before") == Versioned(None, 0, None)
        assert await provider.load_versioned("taken") == Versioned("kept", 1, "owner")
        assert await provider.load_versioned("after") == Versioned(None, 0, None)

    @pytest.mark.asyncio
    async def test_a_multi_key_save_returns_the_new_versions_in_order(self, provider: Any) -> None:
        await provider.save_versioned([Write("b", 0, None, "w")])
        versions = await provider.save_versioned(
            [Write("a", 1, 0, "w"), Write("b", 2, 1, "w"), Write("c", 3, None, "w")]
        )
        assert versions == [1, 2, 1]
        assert [(await provider.load_versioned(k)).value for k in "abc"] == [1, 2, 3]
        assert await provider.save_versioned([]) == []

    @pytest.mark.asyncio
    async def test_no_expected_version_always_lands(self, provider: Any) -> None:
        assert await provider.save_versioned([Write("k", "first", None, "a")]) == [1]
        await provider.save("k", "plain")
        assert await provider.save_versioned([Write("k", "third", None, "c")]) == [3]
        assert await provider.load_versioned("k") == Versioned("third", 3, "c")

    @pytest.mark.asyncio
    async def test_two_processes_racing_compare_and_swap_lose_no_increment(
        self, provider: Any, provider_factory: Callable[[], Any] | None
    ) -> None:
        if provider_factory is None:
            # One process's memory: the racers are two tasks of this process instead.
            await self._race_in_process(provider)
            return
        context = multiprocessing.get_context("spawn")
        start, results = context.Barrier(2), context.Queue()
        times = self.race_increments
        processes = [
            context.Process(
                target=_increment_in_child,
                args=(provider_factory, "counter", times, f"process{n}", start, results),
                daemon=True,
            )
            for n in range(2)
        ]
        try:
            for process in processes:
                process.start()
            outcomes = await asyncio.to_thread(_collect, processes, results, 120.0)
        finally:
            for process in processes:
                await asyncio.to_thread(process.join, 10)
                if process.is_alive():
                    process.kill()
                    process.join()
                process.close()
            results.close()
            results.join_thread()
        errors = [f"{writer}: {error}" for writer, _, error in outcomes if error is not None]
        assert errors == [], f"a lost race must raise StateConflictError, nothing else: {errors}"
        final = await provider.load_versioned("counter")
        assert (final.value, final.version) == (2 * times, 2 * times), outcomes

    async def _race_in_process(self, provider: Any) -> None:
        times, conflicts = self.race_increments, 0

        async def racer(name: str) -> None:
            nonlocal conflicts
            done = 0
            while done < times:
                current = await provider.load_versioned("counter")
                await asyncio.sleep(0)  # let the other racer read the same version
                value = (current.value or 0) + 1
                try:
                    await provider.save_versioned([Write("counter", value, current.version, name)])
                except StateConflictError:
                    conflicts += 1
                    continue
                done += 1

        await asyncio.gather(racer("a"), racer("b"))
        final = await provider.load_versioned("counter")
        assert (final.value, final.version) == (2 * times, 2 * times)
        assert conflicts > 0, "the racers never met: the test proves nothing"
