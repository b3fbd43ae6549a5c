"""RedisCache against a real redis-server: values, TTLs, prefixes, and runners sharing a cache.

The server comes from ``FLUJO_TEST_REDIS_URL`` or ``REDIS_URL`` (``scripts/services.sh``
starts one); without one these tests skip, except under CI, where they fail.
Every test works under its own key prefix, so a shared server is safe.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from flujo import Flujo, Step
from flujo.containers import FlujoContainer
from flujo.infra.redis_cache import RedisCache
from flujo.infra.serialization import OrjsonSerializer
from tests.helpers import RecordingTelemetry
from tests.integration.redis_server import redis_url


@pytest.fixture
async def url() -> str:
    return await redis_url()


@pytest.fixture
def prefix() -> str:
    return f"flujo-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def raw(url: str, prefix: str) -> AsyncIterator[Redis]:
    """A plain client, to look at what the cache wrote; deletes the test's keys afterwards."""
    client = Redis.from_url(url)
    yield client
    async for name in client.scan_iter(match=prefix + "*"):
        await client.delete(name)
    await client.aclose()


@pytest.fixture
async def cache(url: str, prefix: str, raw: Redis) -> AsyncIterator[RedisCache]:
    made = RedisCache(url, OrjsonSerializer(), prefix=prefix)
    yield made
    await made.close()


class Summary(BaseModel):
    title: str
    words: int


# --- get / set / ttl / clear -------------------------------------------------------------


async def test_set_then_get_round_trips_json_values(cache: RedisCache) -> None:
    value = {"output": {"text": "hi", "scores": [1, 2.5, None], "ok": True}}
    await cache.set("k1", value)
    assert await cache.get("k1") == value
    assert await cache.get("missing") is None


async def test_keys_live_under_the_prefix(cache: RedisCache, raw: Redis, prefix: str) -> None:
    await cache.set("abc", {"output": 1})
    assert await raw.get(prefix + "abc") == b'{"output":1}'
    assert await raw.exists("abc") == 0


async def test_values_come_back_as_json_data(cache: RedisCache) -> None:
    await cache.set("model", {"output": Summary(title="t", words=3)})
    await cache.set("tuple", {"output": (1, 2)})
    assert await cache.get("model") == {"output": {"title": "t", "words": 3}}
    assert await cache.get("tuple") == {"output": [1, 2]}


async def test_an_unserializable_value_is_a_type_error(cache: RedisCache) -> None:
    with pytest.raises(TypeError):
        await cache.set("bad", {"output": object()})
    assert await cache.get("bad") is None


async def test_an_entry_expires_after_its_ttl(cache: RedisCache, raw: Redis, prefix: str) -> None:
    await cache.set("short", {"output": 1}, ttl_s=0.05)
    await cache.set("long", {"output": 2}, ttl_s=30)
    await cache.set("forever", {"output": 3})
    assert await cache.get("short") == {"output": 1}
    assert 29_000 < await raw.pttl(prefix + "long") <= 30_000
    assert await raw.pttl(prefix + "forever") == -1  # no expiry
    await asyncio.sleep(0.15)
    assert await cache.get("short") is None
    assert await cache.get("long") == {"output": 2}


async def test_set_replaces_a_value_and_its_ttl(cache: RedisCache, raw: Redis, prefix: str) -> None:
    await cache.set("k", {"output": 1}, ttl_s=30)
    await cache.set("k", {"output": 2})
    assert await cache.get("k") == {"output": 2}
    assert await raw.pttl(prefix + "k") == -1


async def test_clear_removes_only_its_own_prefix(url: str, raw: Redis, prefix: str) -> None:
    mine = RedisCache(url, OrjsonSerializer(), prefix=prefix + "mine:")
    theirs = RedisCache(url, OrjsonSerializer(), prefix=prefix + "theirs:")
    try:
        for i in range(3):
            await mine.set(f"k{i}", {"output": i})
            await theirs.set(f"k{i}", {"output": i})
        await raw.set(prefix + "unrelated", b"keep me")
        await mine.clear()
        assert [await mine.get(f"k{i}") for i in range(3)] == [None, None, None]
        assert [await theirs.get(f"k{i}") for i in range(3)] == [{"output": i} for i in range(3)]
        assert await raw.get(prefix + "unrelated") == b"keep me"
    finally:
        await mine.close()
        await theirs.close()


async def test_clear_removes_more_keys_than_one_batch(
    cache: RedisCache, raw: Redis, prefix: str
) -> None:
    await raw.mset({f"{prefix}k{i}": b'{"output":0}' for i in range(1_234)})
    await cache.clear()
    assert [key async for key in raw.scan_iter(match=prefix + "*")] == []


async def test_close_then_use_opens_a_new_client(cache: RedisCache) -> None:
    await cache.set("k", {"output": 1})
    await cache.close()
    assert await cache.get("k") == {"output": 1}


# --- runners configured with the redis backend --------------------------------------------


def _redis_runner(s: Step[Any, Any], url: str, prefix: str) -> Flujo[Any, Any, Any]:
    container = FlujoContainer()
    container.config.from_dict({"cache": {"backend": "redis", "url": url, "prefix": prefix}})
    return Flujo(s, container=container, persist_state=False)


async def test_two_runners_share_results_through_redis(url: str, prefix: str, raw: Redis) -> None:
    calls: list[str] = []

    def summarize(text: str) -> Summary:
        calls.append(text)
        return Summary(title=text.title(), words=len(text.split()))

    s = Step.from_callable(summarize, cache=True, cache_ttl_s=60)
    first, second = _redis_runner(s, url, prefix), _redis_runner(s, url, prefix)
    assert first.container is not second.container
    caches = [first.container.cache_backend(), second.container.cache_backend()]
    assert all(isinstance(c, RedisCache) for c in caches)
    assert caches[0] is not caches[1]
    try:
        miss = await first.run_async("two words")
        hit = await second.run_async("two words")
    finally:
        for c in caches:
            await c.close()
    assert calls == ["two words"]
    assert miss.step_history[0].cache_hit is False
    assert miss.output == Summary(title="Two Words", words=2)
    assert hit.step_history[0].cache_hit is True
    assert hit.output == {"title": "Two Words", "words": 2}  # JSON data from Redis
    (key,) = {k async for k in raw.scan_iter(match=prefix + "*")}  # SCAN may repeat a key
    assert 0 < await raw.pttl(key) <= 60_000


def shout(text: str) -> str:
    return text.upper()


def flip(text: str) -> str:
    return text[::-1]


async def test_same_named_steps_of_two_pipelines_never_share_a_redis_entry(
    url: str, prefix: str, raw: Redis
) -> None:
    upper = _redis_runner(Step.from_callable(shout, name="s", cache=True), url, prefix)
    reverse = _redis_runner(Step.from_callable(flip, name="s", cache=True), url, prefix)
    caches = [upper.container.cache_backend(), reverse.container.cache_backend()]
    try:
        assert (await upper.run_async("hello")).output == "HELLO"
        result = await reverse.run_async("hello")
        again = await reverse.run_async("hello")
    finally:
        for c in caches:
            await c.close()
    assert (result.output, result.step_history[0].cache_hit) == ("olleh", False)
    assert (again.output, again.step_history[0].cache_hit) == ("olleh", True)
    # A set: SCAN may return one key twice (it did here once, during a rehash).
    assert len({k async for k in raw.scan_iter(match=prefix + "*")}) == 2


def _two_sync_runs(url: str, prefix: str) -> tuple[list[Any], list[str]]:
    """Run a cached step twice through the sync door; return what was seen and any problem."""
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        return x * 2

    runner = _redis_runner(Step.from_callable(body, name="double", cache=True), url, prefix)
    first = runner.run(4)  # each sync call runs on a new event loop, closed when it returns
    second = runner.run(4)
    problems: list[str] = []
    try:
        asyncio.run(runner.container.cache_backend().close())
    except RuntimeError as exc:
        problems.append(f"RedisCache.close() raised {exc!r}")
    seen = [first.output, second.output, second.step_history[0].cache_hit, calls]
    return seen, problems


def test_sync_runs_use_redis_and_leave_no_connection_open(prefix: str) -> None:
    url = asyncio.run(redis_url())
    # Everything the runs made is dropped inside the block, so a leaked connection is
    # reported here, not from a finalizer in some later test or at the end of the session.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen, problems = _two_sync_runs(url, prefix)
        gc.collect()
        problems += [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        caught.clear()
        gc.collect()
    asyncio.run(_delete_prefix(url, prefix))
    assert seen == [8, 8, True, [4]]
    assert problems == []


async def _delete_prefix(url: str, prefix: str) -> None:
    cache = RedisCache(url, OrjsonSerializer(), prefix=prefix)
    await cache.clear()
    await cache.close()


async def test_an_unreachable_redis_warns_and_steps_still_run() -> None:
    # Port 1 on loopback refuses connections: no server needed for this test.
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        return x

    s = Step.from_callable(body, name="s", cache=True)
    runner = _redis_runner(s, "redis://127.0.0.1:1/0", "flujo-test:")
    telemetry = RecordingTelemetry()
    runner.container.telemetry.override(telemetry)
    try:
        result = await asyncio.wait_for(runner.run_async(3), 10)
    finally:
        await runner.container.cache_backend().close()
    assert result.success and result.output == 3
    assert calls == [3]
    assert any("cache read" in w and "'s'" in w for w in telemetry.warnings)
