"""RedisStateProvider against a real redis-server: the conformance kit, the stored hashes,
TTLs, and a flujo run whose step loses a compare-and-swap to another writer.

The server comes from ``FLUJO_TEST_REDIS_URL`` (or ``REDIS_URL``); without one these
tests skip naming it, except under CI, where they fail. Every test works under a key
prefix of its own and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.domain.errors import (
    ConfigurationError,
    StateConflictError,
    StateCorruptError,
    StateError,
)
from flujo.domain.interfaces import Versioned, Write
from flujo.providers import RedisStateProvider
from flujo.testing import VersionedStateProviderContract, in_memory_container
from tests.integration.redis_server import redis_url


@pytest.fixture
async def url() -> str:
    return await redis_url()


@pytest.fixture
def prefix() -> str:
    return f"flujo-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def raw(url: str, prefix: str) -> AsyncIterator[Redis]:
    """A plain client, to look at what the provider wrote; deletes the test's keys afterwards."""
    client = Redis.from_url(url)
    yield client
    async for name in client.scan_iter(match=prefix + "*"):
        await client.delete(name)
    await client.aclose()


@pytest.fixture
async def provider(url: str, prefix: str, raw: Redis) -> AsyncIterator[RedisStateProvider]:
    made = RedisStateProvider(url, prefix=prefix, namespace="kg")
    yield made
    await made.close()


class TestRedisProvider(VersionedStateProviderContract):
    @pytest.fixture
    async def provider(
        self, url: str, prefix: str, raw: Redis
    ) -> AsyncIterator[RedisStateProvider]:
        made = RedisStateProvider(url, prefix=prefix)
        yield made
        await made.close()

    @pytest.fixture
    def provider_factory(self, url: str, prefix: str) -> Callable[[], RedisStateProvider]:
        return functools.partial(RedisStateProvider, url, prefix=prefix)


class TestRedisProviderWithTTL(VersionedStateProviderContract):
    """A TTL long enough not to expire during the kit changes none of its behaviour."""

    @pytest.fixture
    async def provider(
        self, url: str, prefix: str, raw: Redis
    ) -> AsyncIterator[RedisStateProvider]:
        made = RedisStateProvider(url, prefix=prefix, namespace="ttl", ttl_s=300)
        yield made
        await made.close()

    @pytest.fixture
    def provider_factory(self, url: str, prefix: str) -> Callable[[], RedisStateProvider]:
        return functools.partial(RedisStateProvider, url, prefix=prefix, namespace="ttl", ttl_s=300)


# --- what is stored ---------------------------------------------------------------------------


async def test_each_key_is_one_hash_under_prefix_and_namespace(
    provider: RedisStateProvider, raw: Redis, prefix: str
) -> None:
    value = {"zeta": 1, "alpha": [True, None]}
    await provider.save_versioned([Write("graph", value, 0, "run/0")])
    await provider.save("plain", [1])
    name = f"{prefix}{{kg}}:graph"
    assert provider.redis_key("graph") == name
    assert await raw.hgetall(name) == {b"v": orjson.dumps(value), b"n": b"1", b"w": b"run/0"}
    assert await raw.hgetall(f"{prefix}{{kg}}:plain") == {b"v": b"[1]", b"n": b"1"}
    assert list((await provider.load("graph")) or {}) == ["zeta", "alpha"]


async def test_namespaces_keep_providers_on_one_prefix_apart(
    url: str, prefix: str, raw: Redis
) -> None:
    left = RedisStateProvider(url, prefix=prefix, namespace="left")
    right = RedisStateProvider(url, prefix=prefix, namespace="right")
    try:
        await left.save("k", "left")
        await right.save_versioned([Write("k", "right", 0, "r")])
        assert await left.load_versioned("k") == Versioned("left", 1, None)
        assert await right.load_versioned("k") == Versioned("right", 1, "r")
        await left.delete("k")
        assert await left.load_versioned("k") == Versioned(None, 0, None)
        assert await right.load("k") == "right"
    finally:
        await left.close()
        await right.close()


async def test_two_writes_of_one_key_in_one_call_apply_in_order(
    provider: RedisStateProvider,
) -> None:
    writes = [Write("k", "first", 0, "a"), Write("other", 1, 0, "a"), Write("k", "then", 1, "b")]
    assert await provider.save_versioned(writes) == [1, 1, 2]
    assert await provider.load_versioned("k") == Versioned("then", 2, "b")
    with pytest.raises(StateConflictError, match=r"'k'.*expected at version 2.*version 3.*'c'"):
        await provider.save_versioned([Write("k", "x", 2, "c"), Write("k", "y", 2, "d")])
    assert await provider.load_versioned("k") == Versioned("then", 2, "b")


async def test_a_plain_save_drops_the_writer_tag(provider: RedisStateProvider) -> None:
    await provider.save_versioned([Write("k", 1, 0, "run/0")])
    await provider.save("k", 2)
    assert await provider.load_versioned("k") == Versioned(2, 2, None)


async def test_a_value_that_is_not_json_fails_naming_provider_and_key(
    provider: RedisStateProvider, raw: Redis, prefix: str
) -> None:
    with pytest.raises(TypeError, match=r"Redis state provider.*key 'graph'.*'kg'.*JSON"):
        await provider.save("graph", {"lock": threading.Lock()})
    with pytest.raises(TypeError, match=r"key 'bad'"):
        await provider.save_versioned([Write("ok", 1, 0, "w"), Write("bad", object(), 0, "w")])
    assert [key async for key in raw.scan_iter(match=prefix + "*")] == []


@pytest.mark.parametrize(
    ("fields", "column"),
    [
        ({"v": b"{not json", "n": b"1"}, "value"),
        ({"v": b"1", "n": b"one"}, "version"),
        ({"v": b"1", "n": b"0"}, "version"),
        ({"v": b"1", "n": b"1", "w": b"\xff"}, "writer"),
        ({"n": b"3"}, "value"),
    ],
)
async def test_a_damaged_hash_is_corrupt_naming_key_and_field(
    provider: RedisStateProvider, raw: Redis, fields: dict[str, bytes], column: str
) -> None:
    await raw.hset(provider.redis_key("hand"), mapping=fields)  # type: ignore[arg-type]
    with pytest.raises(StateCorruptError, match=rf"key 'hand'.*'{column}'") as caught:
        await provider.load_versioned("hand")
    assert caught.value.column == column


async def test_a_damaged_version_stops_a_save_before_it_writes(
    provider: RedisStateProvider, raw: Redis
) -> None:
    await raw.hset(provider.redis_key("hand"), mapping={"v": b"1", "n": b"x"})
    with pytest.raises(StateCorruptError, match=r"key 'hand'.*'version'"):
        await provider.save_versioned([Write("fresh", 1, 0, "w"), Write("hand", 2, None, "w")])
    assert await provider.load_versioned("fresh") == Versioned(None, 0, None)


async def test_a_key_holding_another_kind_of_value_is_corrupt(
    provider: RedisStateProvider, raw: Redis
) -> None:
    await raw.set(provider.redis_key("text"), b"a plain string")
    with pytest.raises(StateCorruptError, match=r"loading 'text'.*another kind of Redis value"):
        await provider.load("text")
    with pytest.raises(StateCorruptError, match=r"saving 'text'"):
        await provider.save("text", 1)
    assert await raw.get(provider.redis_key("text")) == b"a plain string"


async def test_a_flushed_script_cache_is_reloaded(provider: RedisStateProvider, raw: Redis) -> None:
    await provider.save("k", 1)
    await raw.script_flush()
    assert await provider.save_versioned([Write("k", 2, 1, "w")]) == [2]


# --- TTL --------------------------------------------------------------------------------------


async def test_values_expire_after_ttl_and_their_version_with_them(
    url: str, prefix: str, raw: Redis
) -> None:
    short = RedisStateProvider(url, prefix=prefix, namespace="t", ttl_s=0.3)
    try:
        await short.save_versioned([Write("k", "v1", 0, "a"), Write("other", 1, 0, "a")])
        assert 0 < await raw.pttl(short.redis_key("k")) <= 300
        assert await short.load_versioned("k") == Versioned("v1", 1, "a")
        await asyncio.sleep(0.2)
        await short.save_versioned([Write("k", "v2", 1, "b")])  # each save starts the TTL anew
        await asyncio.sleep(0.2)
        assert await short.load_versioned("k") == Versioned("v2", 2, "b")
        assert await short.load_versioned("other") == Versioned(None, 0, None)
        await asyncio.sleep(0.25)
        assert await short.load_versioned("k") == Versioned(None, 0, None)
        # A writer holding the old version now conflicts: the key is gone, at version 0.
        with pytest.raises(Exception, match=r"expected at version 2 but is at version 0"):
            await short.save_versioned([Write("k", "late", 2, "c")])
        assert await raw.exists(short.redis_key("k")) == 0
    finally:
        await short.close()


async def test_without_ttl_a_save_clears_an_expiry(url: str, prefix: str, raw: Redis) -> None:
    expiring = RedisStateProvider(url, prefix=prefix, namespace="t", ttl_s=60)
    lasting = RedisStateProvider(url, prefix=prefix, namespace="t")
    try:
        await expiring.save("k", 1)
        assert 59_000 < await raw.pttl(expiring.redis_key("k")) <= 60_000
        await lasting.save("k", 2)
        assert await raw.pttl(lasting.redis_key("k")) == -1
        assert await expiring.load_versioned("k") == Versioned(2, 2, None)
    finally:
        await expiring.close()
        await lasting.close()


@pytest.mark.parametrize("ttl_s", [0, -1.0, float("nan"), float("inf"), True, "60"])
def test_a_ttl_that_is_not_a_positive_number_is_refused(ttl_s: Any) -> None:
    with pytest.raises(ConfigurationError, match="ttl_s must be a number of seconds > 0"):
        RedisStateProvider("redis://127.0.0.1:6379/0", ttl_s=ttl_s)


# --- connections ------------------------------------------------------------------------------


async def _clients_named(raw: Redis, name: str) -> int:
    return sum(1 for client in await raw.client_list() if client.get("name") == name)


async def test_close_releases_the_client_and_a_later_call_opens_one(
    url: str, prefix: str, raw: Redis
) -> None:
    name = f"flujo-test-{uuid.uuid4().hex[:12]}"
    provider = RedisStateProvider(f"{url}?client_name={name}", prefix=prefix)
    await provider.save("k", 1)
    assert await _clients_named(raw, name) == 1
    await provider.close()
    assert await _clients_named(raw, name) == 0
    assert await provider.load("k") == 1
    await provider.close()
    assert await _clients_named(raw, name) == 0


async def test_decoded_responses_are_refused(url: str, prefix: str) -> None:
    provider = RedisStateProvider(f"{url}?decode_responses=True", prefix=prefix)
    with pytest.raises(ConfigurationError, match="decode_responses"):
        await provider.load("k")


async def test_an_unreachable_server_is_a_state_error() -> None:
    provider = RedisStateProvider("redis://127.0.0.1:1/0", namespace="kg")
    try:
        with pytest.raises(StateError, match=r"Redis state provider.*loading 'k'.*unreachable"):
            await asyncio.wait_for(provider.load("k"), 30)
    finally:
        await provider.close()


# --- flujo runs -------------------------------------------------------------------------------


class Notes(PipelineContext):
    notes: ContextReference[list[str]] = ContextReference(provider_id="notes", key="notes")


def notes_runner(provider: RedisStateProvider, step: Step[int, int]) -> Any:
    return Flujo(
        step,
        context_model=Notes,
        state_providers={"notes": provider},
        container=in_memory_container(),
        pipeline_name="notes",
    )


async def test_a_run_saves_its_reference_with_the_steps_writer_tag(
    provider: RedisStateProvider,
) -> None:
    def add(data: int, *, context: Notes) -> int:
        context.notes.set([*(context.notes.get() or []), "one"])
        return data + 1

    runner = notes_runner(provider, Step.from_callable(add, name="add"))
    result = await runner.run_async(0, run_id="saved")
    await runner.aclose()
    assert result.status == "completed"
    assert await provider.load_versioned("notes") == Versioned(["one"], 1, "saved/0")


async def test_another_writer_between_load_and_commit_fails_the_step(
    provider: RedisStateProvider, url: str, prefix: str
) -> None:
    other = RedisStateProvider(url, prefix=prefix, namespace="kg")
    await provider.save("notes", ["seed"])
    tries: list[int] = []

    async def interfere(data: int, *, context: Notes) -> int:
        tries.append(data)
        await other.save_versioned([Write("notes", ["theirs"], 1, "other/0")])
        context.notes.set([*(context.notes.get() or []), "mine"])
        return data

    step = Step.from_callable(interfere, name="interfere", max_retries=2)
    runner = notes_runner(provider, step)
    try:
        result = await runner.run_async(0, run_id="raced")
    finally:
        await runner.aclose()
        await other.close()
    assert result.status == "failed" and tries == [0]  # a lost race is not retried
    feedback = result.step_history[-1].feedback
    assert feedback is not None and feedback.startswith("StateConflictError:")
    assert "'notes'" in feedback and "version 1" in feedback and "'other/0'" in feedback
    assert await provider.load_versioned("notes") == Versioned(["theirs"], 2, "other/0")


async def test_a_step_setting_a_value_json_cannot_hold_fails_naming_it(
    provider: RedisStateProvider,
) -> None:
    def unstorable(data: int, *, context: Notes) -> int:
        context.notes.set([threading.Lock()])  # type: ignore[list-item]
        return data

    runner = notes_runner(provider, Step.from_callable(unstorable, name="unstorable"))
    try:
        result = await runner.run_async(0, run_id="bad-value")
    finally:
        await runner.aclose()
    assert result.status == "failed"
    feedback = result.step_history[-1].feedback
    assert feedback is not None
    assert "provider 'notes', key 'notes'" in feedback
    assert "Redis state provider" in feedback and "cannot be stored as JSON" in feedback
    assert await provider.load_versioned("notes") == Versioned(None, 0, None)


def test_sync_runs_leave_no_connection_open(prefix: str) -> None:
    # The runner does not close providers, and each runner.run() call's loop is gone when it
    # returns: the provider closes its client as that loop ends.
    url = asyncio.run(redis_url())
    name = f"flujo-test-{uuid.uuid4().hex[:12]}"
    provider = RedisStateProvider(f"{url}?client_name={name}", prefix=prefix)

    def add(data: int, *, context: Notes) -> int:
        context.notes.set([*(context.notes.get() or []), str(data)])
        return data

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = notes_runner(provider, Step.from_callable(add, name="add"))
        outputs = [runner.run(1).output, runner.run(2).output]  # each call on a loop of its own
        left_open = asyncio.run(_client_count(url, name))
        loaded = asyncio.run(provider.load("notes"))
        del runner
        gc.collect()
        problems = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    asyncio.run(_delete(url, prefix))
    assert outputs == [1, 2] and loaded == ["1", "2"]
    assert left_open == 0
    assert problems == []


async def _client_count(url: str, name: str) -> int:
    client = Redis.from_url(url)
    try:
        return await _clients_named(client, name)
    finally:
        await client.aclose()


async def _delete(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    async for name in client.scan_iter(match=prefix + "*"):
        await client.delete(name)
    await client.aclose()
