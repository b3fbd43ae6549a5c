"""LoopEnd: a loop-bound provider hears of its event loop's end in time to close."""

from __future__ import annotations

import asyncio

from flujo.infra.providers.loop_end import LoopEnd


def test_close_runs_on_each_loop_as_asyncio_run_ends_it() -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    async def close() -> None:
        seen.append(asyncio.get_running_loop())  # still running: it can await

    end = LoopEnd(close)
    loops: list[asyncio.AbstractEventLoop] = []

    async def use() -> None:
        loops.append(asyncio.get_running_loop())
        await end.watch()
        await end.watch()  # watched once per loop however often asked
        assert seen == loops[:-1]  # not before the loop ends

    asyncio.run(use())
    asyncio.run(use())
    assert seen == loops and len(set(loops)) == 2


def test_a_failing_close_does_not_break_the_loops_end() -> None:
    async def close() -> None:
        raise OSError("connection already gone")

    async def use() -> int:
        await LoopEnd(close).watch()
        return 7

    assert asyncio.run(use()) == 7


def test_a_loop_closed_without_finalizing_is_forgotten() -> None:
    calls: list[str] = []

    async def close() -> None:
        calls.append("closed")

    end = LoopEnd(close)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(end.watch())
    loop.close()  # no shutdown_asyncgens(): close() never runs for this loop

    async def again() -> None:
        await end.watch()

    asyncio.run(again())
    assert calls == ["closed"]  # the second loop's end only
    assert end._watchers == {}
