"""The step-result cache: hits and misses, what the key holds, TTL, LRU, warnings, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dependency_injector import providers

from flujo import ContextReference, Flujo, PipelineContext, Step, StepOutput
from flujo.application.core.executor_core import ExecutorCore
from flujo.application.core.step_policies import cache_key
from flujo.containers import FlujoContainer
from flujo.domain.events import HookEvent, StepFinished
from flujo.infra.caches import InMemoryLRUCache
from flujo.infra.hashing import Blake3Hasher
from flujo.infra.serialization import OrjsonSerializer
from flujo.providers import InMemoryStateProvider
from flujo.testing import FakeClock
from tests.doubles import RecordingStateBackend
from tests.helpers import DictCache, RecordingTelemetry


class Counted:
    """A step body that counts its calls and returns ``f(input)``."""

    def __init__(self, fn: Any = None) -> None:
        self.calls: list[Any] = []
        self.fn = fn if fn is not None else (lambda x: {"echo": x})

    def __call__(self, data: Any) -> Any:
        self.calls.append(data)
        return self.fn(data)


class Ctx(PipelineContext):
    user: str = "ann"
    lang: str = "en"
    noise: int = 0


def _executor(cache: Any = None, telemetry: RecordingTelemetry | None = None) -> ExecutorCore:
    return ExecutorCore(
        cache_backend=cache if cache is not None else InMemoryLRUCache(),
        telemetry=telemetry if telemetry is not None else RecordingTelemetry(),
    )


# --- hits and misses through the runner ---------------------------------------------------


async def test_second_run_is_a_hit_through_the_runner() -> None:
    body = Counted(lambda x: x * 2)
    runner = Flujo(Step.from_callable(body, name="double", cache=True), persist_state=False)
    first = await runner.run_async(21)
    second = await runner.run_async(21)
    assert body.calls == [21]
    assert first.output == second.output == 42
    (miss,) = first.step_history
    (hit,) = second.step_history
    assert (miss.cache_hit, miss.attempts) == (False, 1)
    assert (hit.cache_hit, hit.attempts, hit.success) == (True, 0, True)


async def test_runners_do_not_share_their_in_memory_cache() -> None:
    body = Counted()
    s = Step.from_callable(body, name="s", cache=True)
    await Flujo(s, persist_state=False).run_async(1)
    await Flujo(s, persist_state=False).run_async(1)
    assert body.calls == [1, 1]  # each runner's container owns its own LRU


async def test_uncached_step_runs_every_time() -> None:
    body = Counted()
    runner = Flujo(Step.from_callable(body, name="s"), persist_state=False)
    await runner.run_async(1)
    result = await runner.run_async(1)
    assert body.calls == [1, 1]
    assert result.step_history[0].cache_hit is False


async def test_a_failed_step_is_not_cached() -> None:
    calls = 0

    def fails_once(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first call fails")
        return x

    runner = Flujo(Step.from_callable(fails_once, cache=True), persist_state=False)
    assert not (await runner.run_async(1)).success
    second = await runner.run_async(1)
    assert second.success and second.step_history[0].cache_hit is False
    third = await runner.run_async(1)
    assert third.step_history[0].cache_hit is True
    assert calls == 2


# --- hits and misses through ExecutorCore -------------------------------------------------


async def test_second_execute_is_a_hit() -> None:
    body = Counted()
    executor = _executor()
    s = Step.from_callable(body, name="s", cache=True)
    first = await executor.execute(s, "x")
    second = await executor.execute(s, "x")
    assert body.calls == ["x"]
    assert first.output == second.output == {"echo": "x"}
    assert (second.cache_hit, second.attempts, second.success) == (True, 0, True)


async def test_a_hit_costs_nothing_and_adds_no_usage() -> None:
    def priced(x: int) -> StepOutput[int]:
        return StepOutput(x, cost_usd=0.5, tokens=7)

    executor = _executor()
    s = Step.from_callable(priced, cache=True)
    miss = await executor.execute(s, 1)
    hit = await executor.execute(s, 1)
    assert (miss.cost_usd, miss.token_counts) == (0.5, 7)
    assert (hit.output, hit.cost_usd, hit.token_counts) == (1, 0.0, 0)
    assert executor.usage_meter.totals() == (0.5, 7)


async def test_a_hit_returns_what_the_miss_returned_even_if_a_later_step_mutated_it() -> None:
    # A later step changing its input in place must not rewrite the cached result.
    body = Counted(lambda x: [1, 2])

    def append(items: list[int]) -> list[int]:
        items.append(3)
        return items

    runner = Flujo(
        Step.from_callable(body, name="make", cache=True) >> Step.from_callable(append),
        persist_state=False,
    )
    first = await runner.run_async(0)
    assert first.output == [1, 2, 3]
    second = await runner.run_async(0)
    assert second.step_history[0].cache_hit
    # (Its recorded output is the object the next step then changed, as without a cache.)
    assert second.output == [1, 2, 3]
    assert first.output == [1, 2, 3]  # the first run's result is not changed either


# --- what the key holds ------------------------------------------------------------------


async def test_key_includes_the_step_name() -> None:
    body = Counted()
    executor = _executor()
    await executor.execute(Step.from_callable(body, name="a", cache=True), 1)
    await executor.execute(Step.from_callable(body, name="b", cache=True), 1)
    assert body.calls == [1, 1]


async def test_key_includes_the_version() -> None:
    body = Counted()
    executor = _executor()
    v1 = Step.from_callable(body, name="s", cache=True)
    v2 = v1.with_config(version="2")
    await executor.execute(v1, 1)
    await executor.execute(v2, 1)
    assert body.calls == [1, 1]
    again = await executor.execute(v2, 1)
    assert again.cache_hit and body.calls == [1, 1]


@pytest.mark.parametrize(
    ("first", "second"),
    [(1, 2), ("a", "b"), ({"q": 1}, {"q": 2}), ([1, 2], [2, 1]), (1, "1"), (None, 0)],
)
async def test_key_includes_the_input(first: Any, second: Any) -> None:
    body = Counted()
    executor = _executor()
    s = Step.from_callable(body, name="s", cache=True)
    await executor.execute(s, first)
    result = await executor.execute(s, second)
    assert result.cache_hit is False
    assert body.calls == [first, second]


async def test_key_includes_declared_context_fields_only() -> None:
    body = Counted()
    executor = _executor()
    s = Step.from_callable(body, name="s", cache=True, cache_key_fields=["user", "lang"])
    await executor.execute(s, 1, context=Ctx(user="ann"))
    # A field the step did not declare does not change the key.
    undeclared = await executor.execute(s, 1, context=Ctx(user="ann", noise=99))
    assert undeclared.cache_hit
    # Each declared field does.
    other_user = await executor.execute(s, 1, context=Ctx(user="bob"))
    other_lang = await executor.execute(s, 1, context=Ctx(user="ann", lang="fr"))
    assert not other_user.cache_hit and not other_lang.cache_hit
    assert len(body.calls) == 3


async def test_undeclared_context_does_not_split_the_key() -> None:
    body = Counted()
    executor = _executor()
    s = Step.from_callable(body, name="s", cache=True)
    await executor.execute(s, 1, context=Ctx(user="ann"))
    hit = await executor.execute(s, 1, context=Ctx(user="bob"))
    assert hit.cache_hit and len(body.calls) == 1


async def test_a_key_field_missing_from_the_context_fails_the_step() -> None:
    s = Step.from_callable(Counted(), name="s", cache=True, cache_key_fields=["tenant"])
    result = await _executor().execute(s, 1, context=Ctx())
    assert result.success is False
    assert result.feedback is not None
    assert "ConfigurationError" in result.feedback and "tenant" in result.feedback


async def test_cache_key_fn_makes_the_key() -> None:
    seen: list[tuple[Any, Any]] = []

    def key(data: dict[str, Any], context: Any) -> Any:
        seen.append((data, context))
        return data["id"]  # the timestamp does not identify the result

    body = Counted()
    ctx = Ctx()
    executor = _executor()
    s = Step.from_callable(body, name="s", cache=True, cache_key_fn=key)
    await executor.execute(s, {"id": 7, "at": 1.0}, context=ctx)
    same_id = await executor.execute(s, {"id": 7, "at": 2.0}, context=ctx)
    other_id = await executor.execute(s, {"id": 8, "at": 2.0}, context=ctx)
    assert same_id.cache_hit and same_id.output == {"echo": {"id": 7, "at": 1.0}}
    assert not other_id.cache_hit
    assert len(body.calls) == 2
    assert seen[0] == ({"id": 7, "at": 1.0}, ctx)


async def test_cache_key_fn_result_still_includes_the_step_identity() -> None:
    body = Counted()
    executor = _executor()
    a = Step.from_callable(body, name="a", cache=True, cache_key_fn=lambda d, c: "same")
    b = Step.from_callable(body, name="b", cache=True, cache_key_fn=lambda d, c: "same")
    await executor.execute(a, 1)
    result = await executor.execute(b, 1)
    assert not result.cache_hit and len(body.calls) == 2


# --- what the key names: the step's code and pipeline, not just its name ------------------


def upper(text: str) -> str:
    return text.upper()


def reverse(text: str) -> str:
    return text[::-1]


async def test_two_pipelines_on_one_container_never_share_same_named_steps() -> None:
    container = FlujoContainer()
    shout = Flujo(
        Step.from_callable(upper, name="s", cache=True), container=container, persist_state=False
    )
    flip = Flujo(
        Step.from_callable(reverse, name="s", cache=True), container=container, persist_state=False
    )
    assert (await shout.run_async("hello")).output == "HELLO"
    result = await flip.run_async("hello")
    assert result.output == "olleh"
    assert result.step_history[0].cache_hit is False
    again = await flip.run_async("hello")
    assert again.output == "olleh" and again.step_history[0].cache_hit


async def test_same_named_steps_with_other_callables_miss_on_one_executor() -> None:
    executor = _executor()
    await executor.execute(Step.from_callable(upper, name="s", cache=True), "hi")
    result = await executor.execute(Step.from_callable(reverse, name="s", cache=True), "hi")
    assert (result.cache_hit, result.output) == (False, "ih")


async def test_same_name_and_qualname_with_other_code_miss() -> None:
    # Two lambdas: one module, one qualname ("<lambda>"), different code.
    executor = _executor()
    await executor.execute(Step.from_callable(lambda x: x + 1, name="s", cache=True), 1)
    result = await executor.execute(Step.from_callable(lambda x: x - 1, name="s", cache=True), 1)
    assert (result.cache_hit, result.output) == (False, 0)


def _same_qualname(body: str) -> Any:
    """A function named ``tests.fake.f`` whose code is ``body``: a module edited in place."""
    namespace: dict[str, Any] = {}
    exec(f"def f(x):\n    return {body}\n", namespace)
    fn = namespace["f"]
    fn.__module__ = "tests.fake"
    return fn


async def test_an_edited_function_misses_by_its_code_digest() -> None:
    executor = _executor()
    before, after = _same_qualname("x * 2"), _same_qualname("x * 3")
    await executor.execute(Step.from_callable(before, name="s", cache=True), 2)
    result = await executor.execute(Step.from_callable(after, name="s", cache=True), 2)
    assert (result.cache_hit, result.output) == (False, 6)


async def test_an_explicit_version_replaces_the_code_digest() -> None:
    executor = _executor()
    before, after = _same_qualname("x * 2"), _same_qualname("x * 3")
    await executor.execute(Step.from_callable(before, name="s", cache=True, version="7"), 2)
    # The user says the behaviour is the same version: the edit does not split the key...
    same = await executor.execute(Step.from_callable(after, name="s", cache=True, version="7"), 2)
    assert (same.cache_hit, same.output) == (True, 4)
    # ...but another callable still does.
    other = Step.from_callable(lambda x: x * 5, name="s", cache=True, version="7")
    result = await executor.execute(other, 2)
    assert (result.cache_hit, result.output) == (False, 10)


async def test_agent_steps_are_keyed_by_the_agent_type() -> None:
    class Shout:
        async def run(self, data: str) -> str:
            return data.upper()

    class Whisper:
        async def run(self, data: str) -> str:
            return data.lower()

    executor = _executor()
    await executor.execute(Step("talk", agent=Shout(), cache=True), "Hi")
    result = await executor.execute(Step("talk", agent=Whisper(), cache=True), "Hi")
    assert (result.cache_hit, result.output) == (False, "hi")
    again = await executor.execute(Step("talk", agent=Whisper(), cache=True), "Hi")
    assert again.cache_hit


async def test_same_named_control_flow_steps_with_other_branches_miss() -> None:
    executor = _executor()

    def pick(data: Any, context: Any) -> str:
        return "only"

    one = Step.branch_on(pick, {"only": Step.from_callable(upper, name="x")}, cache=True)
    two = Step.branch_on(pick, {"only": Step.from_callable(reverse, name="x")}, cache=True)
    await executor.execute(one, "ab", context=Ctx())
    result = await executor.execute(two, "ab", context=Ctx())
    assert (result.cache_hit, result.output) == (False, "ba")


def test_the_key_names_the_pipeline() -> None:
    s = Step.from_callable(upper, name="s", cache=True)
    parts = {"serializer": OrjsonSerializer(), "hasher": Blake3Hasher()}
    keys = {cache_key(s, "a", None, pipeline_name=name, **parts) for name in ("", "a", "b")}
    assert len(keys) == 3
    assert cache_key(s, "a", None, **parts) == cache_key(s, "a", None, pipeline_name="", **parts)


def test_dicts_built_in_another_key_order_give_one_key() -> None:
    s = Step.from_callable(upper, name="s", cache=True)
    parts = {"serializer": OrjsonSerializer(), "hasher": Blake3Hasher()}
    one = {"": 0, "0": 0, "nested": {"b": [{"y": 1, "x": 2}], "a": None}}
    two = {"nested": {"a": None, "b": [{"x": 2, "y": 1}]}, "0": 0, "": 0}
    assert list(one) != list(two)
    assert cache_key(s, one, None, **parts) == cache_key(s, two, None, **parts)
    assert cache_key(s, {1: "a", 2: "b"}, None, **parts) == cache_key(
        s, {2: "b", 1: "a"}, None, **parts
    )


async def test_a_reordered_input_is_a_hit() -> None:
    body = Counted()
    executor = _executor()
    s = Step.from_callable(body, name="s", cache=True)
    await executor.execute(s, {"": 0, "0": 0})
    hit = await executor.execute(s, {"0": 0, "": 0})
    assert hit.cache_hit and len(body.calls) == 1


def test_the_identity_is_made_once_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    import flujo.domain.dsl.step as step_module

    calls: list[tuple[object, ...]] = []
    real = step_module.code_digest

    def counting(*targets: object) -> str:
        calls.append(targets)
        return real(*targets)

    monkeypatch.setattr(step_module, "code_digest", counting)
    s = Step.from_callable(upper, name="s", cache=True)
    parts = {"serializer": OrjsonSerializer(), "hasher": Blake3Hasher()}
    for text in ("a", "b", "c"):
        cache_key(s, text, None, **parts)
    assert len(calls) == 1
    assert s.with_config(version="2").identity.endswith("@v2")  # a copy makes its own
    assert len(calls) == 1  # (an explicit version needs no digest)


# --- a context holding references --------------------------------------------------------


class Research(PipelineContext):
    notes: ContextReference[list[str]] = ContextReference(provider_id="kg", key="notes")


def _reading_step(calls: list[int], **options: Any) -> Step[int, int]:
    def summarize(x: int, *, context: Research) -> int:
        calls.append(x)
        return x + len(context.notes.get() or [])

    return Step.from_callable(summarize, **options)


def _research_runner(s: Step[Any, Any]) -> Flujo[Any, Any, Research]:
    provider = InMemoryStateProvider({"notes": ["a", "b"]})
    return Flujo(s, context_model=Research, state_providers={"kg": provider}, persist_state=False)


async def test_referenced_context_without_key_fn_runs_uncached_with_a_warning_per_run() -> None:
    calls: list[int] = []
    runner = _research_runner(_reading_step(calls, cache=True))
    telemetry = RecordingTelemetry()
    with runner.container.telemetry.override(telemetry):
        first = await runner.run_async(1)
        second = await runner.run_async(1)
    assert first.success and second.success
    assert first.output == second.output == 3
    assert calls == [1, 1]  # never cached
    assert second.step_history[0].cache_hit is False
    assert len(telemetry.warnings) == 2  # one per run
    assert "summarize" in telemetry.warnings[0] and "ContextReference" in telemetry.warnings[0]
    assert "cache_key_fn" in telemetry.warnings[0]


async def test_referenced_context_without_key_fn_warns_once_per_executor() -> None:
    calls: list[int] = []
    s = _reading_step(calls, cache=True)
    telemetry = RecordingTelemetry()
    executor = ExecutorCore(
        telemetry=telemetry, state_providers={"kg": InMemoryStateProvider({"notes": ["a"]})}
    )
    for _ in range(3):
        result = await executor.execute(s, 1, context=Research())
        assert result.success and not result.cache_hit
    assert calls == [1, 1, 1]
    assert len(telemetry.warnings) == 1


async def test_referenced_context_with_strict_cache_fails_the_step() -> None:
    calls: list[int] = []
    result = await _research_runner(_reading_step(calls, cache="strict")).run_async(1)
    assert result.success is False
    assert calls == []
    feedback = result.step_history[0].feedback
    assert feedback is not None and "cache_key_fn" in feedback


async def test_referenced_context_with_a_key_fn_is_cached() -> None:
    calls: list[int] = []
    s = _reading_step(calls, cache=True, cache_key_fn=lambda data, ctx: [data, ctx.notes.get()])
    runner = _research_runner(s)
    telemetry = RecordingTelemetry()
    with runner.container.telemetry.override(telemetry):
        first = await runner.run_async(1)
        second = await runner.run_async(1)
    assert (first.output, second.output) == (3, 3)
    assert calls == [1]
    assert second.step_history[0].cache_hit
    assert telemetry.warnings == []


async def test_a_step_that_does_not_read_the_context_is_cached_beside_references() -> None:
    body = Counted()
    runner = _research_runner(Step.from_callable(body, name="pure", cache=True))
    await runner.run_async(1)
    second = await runner.run_async(1)
    assert second.step_history[0].cache_hit and body.calls == [1]


# --- input that cannot be made into a key -------------------------------------------------


class Opaque:
    """Not JSON-serializable."""


async def test_unserializable_input_runs_uncached_with_one_warning() -> None:
    body = Counted(lambda x: "done")
    telemetry = RecordingTelemetry()
    executor = _executor(telemetry=telemetry)
    s = Step.from_callable(body, name="parse", cache=True)
    first = await executor.execute(s, Opaque())
    second = await executor.execute(s, Opaque())
    assert first.success and second.success
    assert not second.cache_hit
    assert len(body.calls) == 2
    (warning,) = telemetry.warnings
    assert "'parse'" in warning and "Opaque" in warning


async def test_unserializable_input_with_strict_cache_fails_the_step() -> None:
    body = Counted()
    s = Step.from_callable(body, name="parse", cache="strict")
    result = await _executor().execute(s, Opaque())
    assert result.success is False
    assert body.calls == []
    assert result.feedback is not None
    assert "UncacheableInputError" in result.feedback
    assert "parse" in result.feedback and "Opaque" in result.feedback


async def test_strict_cache_via_step_cached() -> None:
    s = Step.cached(Step.from_callable(Counted(), name="parse"), strict=True)
    assert s.config.cache == "strict"
    result = await _executor().execute(s, Opaque())
    assert result.success is False


# --- time to live and size ---------------------------------------------------------------


async def test_entry_expires_after_its_ttl() -> None:
    clock = FakeClock(1000.0)
    body = Counted()
    runner = Flujo(
        Step.from_callable(body, name="s", cache=True, cache_ttl_s=10), persist_state=False
    )
    runner.container.cache_backend.override(providers.Object(InMemoryLRUCache(clock=clock)))
    await runner.run_async(1)
    clock.advance(9.9)
    assert (await runner.run_async(1)).step_history[0].cache_hit
    clock.advance(0.2)  # 10.1 s after it was stored
    expired = await runner.run_async(1)
    assert expired.step_history[0].cache_hit is False
    assert body.calls == [1, 1]


async def test_an_entry_without_ttl_lives_until_evicted() -> None:
    clock = FakeClock(1000.0)
    cache = InMemoryLRUCache(clock=clock)
    await cache.set("k", {"output": 1})
    clock.advance(10**9)
    assert await cache.get("k") == {"output": 1}


async def test_step_cached_sets_the_ttl() -> None:
    clock = FakeClock(1000.0)
    body = Counted()
    executor = _executor(cache=InMemoryLRUCache(clock=clock))
    s = Step.cached(Step.from_callable(body, name="s"), ttl_s=5)
    await executor.execute(s, 1)
    clock.advance(6)
    assert not (await executor.execute(s, 1)).cache_hit
    assert len(body.calls) == 2


async def test_cache_keeps_at_most_max_entries_from_config() -> None:
    container = FlujoContainer()
    container.config.from_dict({"cache": {"max_entries": 2}})
    body = Counted()
    runner = Flujo(
        Step.from_callable(body, name="s", cache=True), container=container, persist_state=False
    )
    for value in (1, 2, 3):  # 1 is the least recently used when 3 arrives
        await runner.run_async(value)
    assert len(container.cache_backend()) == 2
    assert (await runner.run_async(3)).step_history[0].cache_hit
    assert (await runner.run_async(2)).step_history[0].cache_hit
    assert not (await runner.run_async(1)).step_history[0].cache_hit
    assert body.calls == [1, 2, 3, 1]


async def test_lru_evicts_the_least_recently_used_entry() -> None:
    cache = InMemoryLRUCache(max_entries=2)
    await cache.set("a", 1)
    await cache.set("b", 2)
    assert await cache.get("a") == 1  # a is now the most recently used
    await cache.set("c", 3)
    assert await cache.get("b") is None
    assert (await cache.get("a"), await cache.get("c")) == (1, 3)
    await cache.clear()
    assert len(cache) == 0


# --- a hit goes through everything after the step ---------------------------------------


async def test_a_hit_is_checkpointed_hooked_and_traced() -> None:
    body = Counted()
    backend = RecordingStateBackend()
    events: list[HookEvent] = []
    pipeline = Step.from_callable(body, name="cached", cache=True) >> Step.from_callable(
        lambda d: d["echo"] + 1, name="next"
    )
    runner = Flujo(pipeline, state_backend=backend, hooks=[events.append])
    telemetry = RecordingTelemetry()
    await runner.run_async(1)
    backend.events.clear()
    events.clear()
    with runner.container.telemetry.override(telemetry):
        result = await runner.run_async(1)
    assert result.success and result.output == 2
    assert body.calls == [1]
    # checkpoint of the hit step, then of the next step
    assert [e for e in backend.events if e[0] == "checkpoint"] == [
        ("checkpoint", "running", 1, "cached"),
        ("checkpoint", "running", 2, "next"),
    ]
    stored = await runner.get_run(result.run_id)
    assert [r.name for r in stored.step_history] == ["cached", "next"]
    assert stored.step_history[0].output == {"echo": 1}
    # hooks
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert [(e.step_name, e.result.cache_hit) for e in finished] == [
        ("cached", True),
        ("next", False),
    ]
    # telemetry: a span marks the hit
    step_spans = [s for s in telemetry.spans if s.name == "flujo.step"]
    hit_spans = [s for s in step_spans if s.attributes["flujo.cache_hit"] is True]
    assert [s.attributes["flujo.step.name"] for s in hit_spans] == ["cached"]
    assert all(s.ended for s in step_spans)


async def test_the_stored_step_record_says_it_was_a_cache_hit() -> None:
    # get_run (and a resumed run's history) must tell a hit from a run step.
    async with Flujo(Step.from_callable(Counted(), name="cached", cache=True)) as runner:
        await runner.run_async(1)
        result = await runner.run_async(1)
        stored = await runner.get_run(result.run_id)
    assert result.step_history[0].cache_hit
    assert stored.step_history[0].cache_hit is True


async def test_a_hit_with_references_still_hydrates_and_finalizes() -> None:
    provider = InMemoryStateProvider({"notes": ["a"]})

    def add_note(x: int, *, context: Research) -> int:
        notes = context.notes.get() or []
        context.notes.set([*notes, f"n{x}"])
        return x

    cached = Step.from_callable(
        lambda x, *, context: len(context.notes.get() or []),
        name="count",
        cache=True,
        cache_key_fn=lambda data, ctx: data,
    )
    runner = Flujo(
        cached >> Step.from_callable(add_note),
        context_model=Research,
        state_providers={"kg": provider},
        persist_state=False,
    )
    await runner.run_async(1)
    result = await runner.run_async(1)
    assert result.step_history[0].cache_hit
    # The step after the hit read the hydrated value and its change was saved.
    assert provider.data["notes"] == ["a", "n1", "n1"]


# --- a failing cache backend -------------------------------------------------------------


class BrokenCache:
    def __init__(self, *, get_fails: bool = True, set_fails: bool = True) -> None:
        self.get_fails = get_fails
        self.set_fails = set_fails
        self.sets = 0

    async def get(self, key: str) -> Any | None:
        if self.get_fails:
            raise ConnectionError("cache down")
        return None

    async def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        self.sets += 1
        if self.set_fails:
            raise ConnectionError("cache down")

    async def clear(self) -> None:
        pass


@pytest.mark.parametrize(
    ("get_fails", "set_fails", "expected"),
    [(True, False, "cache read"), (False, True, "caching the output"), (True, True, "cache")],
)
async def test_a_failing_cache_backend_warns_and_the_step_succeeds(
    get_fails: bool, set_fails: bool, expected: str
) -> None:
    body = Counted()
    telemetry = RecordingTelemetry()
    runner = Flujo(Step.from_callable(body, name="s", cache=True), persist_state=False)
    runner.container.cache_backend.override(
        providers.Object(BrokenCache(get_fails=get_fails, set_fails=set_fails))
    )
    runner.container.telemetry.override(providers.Object(telemetry))
    result = await runner.run_async(1)
    assert result.success and result.output == {"echo": 1}
    assert body.calls == [1]
    assert telemetry.warnings, "a failing cache must be reported"
    assert any(expected in w and "ConnectionError" in w and "'s'" in w for w in telemetry.warnings)


async def test_a_cache_failure_is_warned_once_per_run() -> None:
    telemetry = RecordingTelemetry()
    executor = _executor(cache=BrokenCache(), telemetry=telemetry)
    s = Step.from_callable(Counted(), name="s", cache=True)
    for value in range(3):
        assert (await asyncio.wait_for(executor.execute(s, value), 2)).success
    assert len(telemetry.warnings) == 2  # one for reads, one for writes


# --- Step.cached -------------------------------------------------------------------------


def test_step_cached_copies_without_changing_the_original() -> None:
    fallback = Step.from_callable(lambda x: x, name="fb")
    original = Step.from_callable(Counted(), name="s", max_retries=2).fallback(fallback)
    copy = Step.cached(original, ttl_s=30)
    assert copy is not original
    assert (copy.config.cache, copy.config.cache_ttl_s) == (True, 30)
    assert (original.config.cache, original.config.cache_ttl_s) == (False, None)
    assert copy.name == "s" and copy.config.max_retries == 2
    assert copy.fallback_step is fallback
    assert copy.invoke is original.invoke


async def test_step_cached_caches_and_the_original_does_not() -> None:
    body = Counted()
    original = Step.from_callable(body, name="s")
    cached = Step.cached(original)
    executor = _executor()
    await executor.execute(cached, 1)
    assert (await executor.execute(cached, 1)).cache_hit
    assert not (await executor.execute(original, 1)).cache_hit
    assert body.calls == [1, 1]


def test_step_cached_rejects_a_bad_ttl() -> None:
    from flujo import ConfigurationError

    with pytest.raises(ConfigurationError, match="cache_ttl_s"):
        Step.cached(Step.from_callable(Counted(), name="s"), ttl_s=0)


async def test_cached_value_is_stored_under_output_in_the_backend() -> None:
    cache = DictCache()
    executor = _executor(cache=cache)
    await executor.execute(Step.from_callable(Counted(), name="s", cache=True), 1)
    ((key, value),) = cache.data.items()
    assert value == {"output": {"echo": 1}}
    assert isinstance(key, str) and len(key) == 64  # a hex blake3 digest


async def test_copy_values_false_hands_out_the_stored_object() -> None:
    container = FlujoContainer()
    container.config.from_dict({"cache": {"copy_values": False}})
    made: list[list[int]] = []

    def make(x: int) -> list[int]:
        made.append([x])
        return made[-1]

    runner = Flujo(
        Step.from_callable(make, name="make", cache=True),
        persist_state=False,
        container=container,
    )
    first = await runner.run_async(1)
    second = await runner.run_async(1)
    assert second.step_history[0].cache_hit
    assert second.output is first.output  # shared, not copied
    assert len(made) == 1


async def test_copy_values_default_hands_out_a_fresh_copy_each_hit() -> None:
    runner = Flujo(
        Step.from_callable(lambda x: {"items": [x]}, name="make", cache=True),
        persist_state=False,
    )
    await runner.run_async(1)
    one = await runner.run_async(1)
    two = await runner.run_async(1)
    assert one.output == two.output == {"items": [1]}
    assert one.output is not two.output
    assert one.output["items"] is not two.output["items"]
