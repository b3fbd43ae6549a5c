"""``PerLoop``: one pool per event loop, opened lazily, closed by its own loop only."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from flujo.infra.loop_bound import PerLoop


@dataclass
class Pool:
    loop: asyncio.AbstractEventLoop
    closed: bool = False
    abandoned: bool = False


@dataclass
class Pools:
    """Opens ``Pool`` objects, remembering every one; opening yields to the loop once."""

    made: list[Pool] = field(default_factory=list)

    async def open(self) -> Pool:
        await asyncio.sleep(0)  # lets concurrent first calls pile up behind this one
        pool = Pool(asyncio.get_running_loop())
        self.made.append(pool)
        return pool

    def per_loop(self, open: Callable[[], Awaitable[Pool]] | None = None) -> PerLoop[Pool]:
        async def close(pool: Pool) -> None:
            pool.closed = True

        def abandon(pool: Pool) -> None:
            pool.abandoned = True

        return PerLoop(open or self.open, close, abandon)


async def test_concurrent_first_calls_on_one_loop_share_one_pool() -> None:
    pools = Pools()
    per_loop = pools.per_loop()
    got = await asyncio.gather(*(per_loop.get() for _ in range(10)))
    assert len(pools.made) == 1 and all(p is pools.made[0] for p in got)
    assert len(per_loop) == 1
    await per_loop.close()
    assert pools.made[0].closed and len(per_loop) == 0


async def test_each_loop_gets_its_own_pool_and_closes_only_its_own() -> None:
    pools = Pools()
    per_loop = pools.per_loop()
    mine = await per_loop.get()
    opened, go_on = threading.Event(), threading.Event()
    theirs: list[Pool] = []

    async def other_loop() -> None:
        theirs.append(await per_loop.get())
        opened.set()
        await asyncio.to_thread(go_on.wait, 10)
        assert await per_loop.get() is theirs[0]  # still open after the other loop closed
        await per_loop.close()

    thread = threading.Thread(target=asyncio.run, args=(other_loop(),))
    thread.start()
    assert await asyncio.to_thread(opened.wait, 10)
    assert theirs[0] is not mine and theirs[0].loop is not mine.loop
    await per_loop.close()
    assert mine.closed and not theirs[0].closed
    go_on.set()
    await asyncio.to_thread(thread.join, 10)
    assert theirs[0].closed and not theirs[0].abandoned


async def test_a_pool_left_by_an_ended_loop_is_abandoned_by_the_next_call() -> None:
    pools = Pools()
    per_loop = pools.per_loop()
    await asyncio.to_thread(asyncio.run, per_loop.get())  # that loop never closed its pool
    left = pools.made[0]
    mine = await per_loop.get()
    assert left.abandoned and not left.closed
    assert mine is not left and len(per_loop) == 1
    await per_loop.close()


async def test_closing_while_the_pool_opens_waits_for_it_and_closes_it() -> None:
    pools = Pools()
    per_loop = pools.per_loop()
    opening = asyncio.create_task(per_loop.get())
    await asyncio.sleep(0)  # the open has started and yielded
    await per_loop.close()
    first = await opening
    assert first.closed  # closed right after it opened: nothing is left open
    again = await per_loop.get()
    assert again is not first and not again.closed
    await per_loop.close()


async def test_a_call_waiting_behind_an_open_that_is_closed_gets_a_new_pool() -> None:
    pools, gate = Pools(), asyncio.Event()

    async def gated_open() -> Pool:
        await gate.wait()
        return await pools.open()

    per_loop = pools.per_loop(gated_open)
    opener = asyncio.create_task(per_loop.get())
    await asyncio.sleep(0)  # the opener holds the slot's lock, waiting at the gate
    waiter = asyncio.create_task(per_loop.get())
    await asyncio.sleep(0)  # queued on the same lock
    closing = asyncio.create_task(per_loop.close())
    await asyncio.sleep(0)  # the slot is gone; the close waits for the open
    gate.set()
    first, second, _ = await asyncio.gather(opener, waiter, closing)
    assert first.closed  # the close took what the open made
    assert second is not first and not second.closed  # the waiter started over
    await per_loop.close()
    assert second.closed
