"""PostgresStateProvider against a real server: the conformance kit, the table, and the
run-state backend committing a step's saves and its checkpoint in one transaction.

The server comes from ``FLUJO_TEST_PG_DSN`` (or ``PG_DSN``); without one these tests
skip naming it, except under CI, where they fail. Every test works in a schema of its
own (``tests.integration.pg_schema``), dropped afterwards.
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

from flujo import ContextReference, Flujo, PipelineContext, Step
from flujo.domain.errors import (
    StateBackendError,
    StateConflictError,
    StateCorruptError,
    StateError,
    StateSaveError,
)
from flujo.domain.interfaces import AtomicCheckpoints, Versioned, Write
from flujo.providers import InMemoryStateProvider, PostgresStateProvider
from flujo.state import PostgresBackend
from flujo.testing import VersionedStateProviderContract, in_memory_container, make_run, make_step
from tests.integration.pg_schema import Schema, server_dsn, with_settings


@pytest.fixture
async def schema() -> AsyncIterator[Schema]:
    made = await Schema(await server_dsn()).create()
    yield made
    await made.drop()


@pytest.fixture
async def backend(schema: Schema) -> AsyncIterator[PostgresBackend]:
    made = PostgresBackend(schema.dsn)
    yield made
    await made.close()


class TestPostgresProvider(VersionedStateProviderContract):
    @pytest.fixture
    async def provider(self, schema: Schema) -> AsyncIterator[PostgresStateProvider]:
        made = PostgresStateProvider(schema.dsn, namespace="kit")
        yield made
        await made.close()

    @pytest.fixture
    def provider_factory(self, schema: Schema) -> Callable[[], PostgresStateProvider]:
        return functools.partial(PostgresStateProvider, schema.dsn, namespace="kit")


class TestPostgresBackendProvider(VersionedStateProviderContract):
    """A provider on the backend's pools; the racing processes each build one from the DSN."""

    @pytest.fixture
    def provider(self, backend: PostgresBackend) -> PostgresStateProvider:
        return backend.provider(namespace="kit")

    @pytest.fixture
    def provider_factory(self, schema: Schema) -> Callable[[], PostgresStateProvider]:
        return functools.partial(PostgresStateProvider, schema.dsn, namespace="kit")


# --- the table ------------------------------------------------------------------------------


async def test_namespaces_share_one_table_without_sharing_keys(schema: Schema) -> None:
    left = PostgresStateProvider(schema.dsn, namespace="left")
    right = PostgresStateProvider(schema.dsn, namespace="right")
    try:
        await left.save("k", "from left")
        await right.save_versioned([Write("k", "from right", 0, "r/1")])
        await right.save("k", "again")
        assert await left.load_versioned("k") == Versioned("from left", 1, None)
        assert await right.load_versioned("k") == Versioned("again", 2, None)
        await left.delete("k")
        assert await left.load_versioned("k") == Versioned(None, 0, None)
        assert await right.load("k") == "again"
    finally:
        await left.close()
        await right.close()
    rows = await schema.fetch("SELECT namespace, key, version FROM flujo_state")
    assert rows == [("right", "k", 2)]


async def test_values_are_stored_as_the_exact_orjson_bytes(schema: Schema) -> None:
    # JSONB would reorder these keys and refuse the NUL character; bytes keep both.
    value = {"zeta": 1, "alpha": [True, None], "nul": "a\u0000b", "big": 2**63 + 1}
    provider = PostgresStateProvider(schema.dsn)
    try:
        await provider.save("doc", value)
        loaded = await provider.load("doc")
    finally:
        await provider.close()
    assert loaded == value and list(loaded) == ["zeta", "alpha", "nul", "big"]
    ((stored, kind),) = await schema.fetch(
        "SELECT value, pg_typeof(value)::text FROM flujo_state WHERE key = 'doc'"
    )
    assert (stored, kind) == (orjson.dumps(value), "bytea")


async def test_a_value_that_is_not_json_fails_naming_provider_and_key(schema: Schema) -> None:
    provider = PostgresStateProvider(schema.dsn, namespace="kg")
    try:
        with pytest.raises(TypeError, match=r"PostgreSQL state provider.*key 'graph'.*'kg'"):
            await provider.save("graph", {"lock": threading.Lock()})
        with pytest.raises(TypeError, match=r"key 'bad'"):
            await provider.save_versioned([Write("ok", 1, 0, "w"), Write("bad", object(), 0, "w")])
        assert await provider.load_versioned("ok") == Versioned(None, 0, None)
    finally:
        await provider.close()


async def test_a_stored_value_that_is_not_json_is_corrupt(schema: Schema) -> None:
    provider = PostgresStateProvider(schema.dsn, namespace="kg")
    try:
        await provider.save("fine", 1)  # makes the table
        await schema.execute(
            "INSERT INTO flujo_state (namespace, key, value) VALUES ('kg', 'hand', $1)",
            b"{not json",
        )
        with pytest.raises(StateCorruptError, match=r"key 'hand'.*'value'.*not JSON") as caught:
            await provider.load("hand")
        assert caught.value.column == "value"
    finally:
        await provider.close()


async def test_a_row_seeded_by_hand_starts_at_version_one(schema: Schema) -> None:
    provider = PostgresStateProvider(schema.dsn)
    try:
        await provider.save("made", 0)
        await schema.execute(
            "INSERT INTO flujo_state (namespace, key, value)"
            " VALUES ('default', 'seeded', convert_to('[1, 2]', 'UTF8'))"
        )
        assert await provider.load_versioned("seeded") == Versioned([1, 2], 1, None)
        assert await provider.save_versioned([Write("seeded", [3], 1, "w")]) == [2]
    finally:
        await provider.close()


async def test_an_unreachable_server_is_a_state_error_without_the_password() -> None:
    # Port 1 on loopback refuses connections: no server needed.
    provider = PostgresStateProvider("postgresql://me:s3cret@127.0.0.1:1/db", namespace="kg")
    try:
        with pytest.raises(StateError, match=r"127\.0\.0\.1:1/db.*loading 'k'") as caught:
            await asyncio.wait_for(provider.load("k"), 30)
        assert "s3cret" not in str(caught.value)
    finally:
        await provider.close()


async def test_two_writes_of_one_key_in_one_call_apply_in_order(schema: Schema) -> None:
    provider = PostgresStateProvider(schema.dsn)
    try:
        writes = [
            Write("k", "first", 0, "a"),
            Write("other", 1, 0, "a"),
            Write("k", "then", 1, "b"),
        ]
        assert await provider.save_versioned(writes) == [1, 1, 2]
        assert await provider.load_versioned("k") == Versioned("then", 2, "b")
    finally:
        await provider.close()


async def test_multi_key_saves_in_opposite_orders_never_deadlock(schema: Schema) -> None:
    # Each call locks its rows in key order, whatever order its writes come in; in call
    # order, these two would wait for each other and PostgreSQL would abort one.
    one, two = PostgresStateProvider(schema.dsn), PostgresStateProvider(schema.dsn)
    try:
        for n in range(40):
            forward = [Write(k, n, None, "forward") for k in ("a", "b", "c")]
            backward = [Write(k, n, None, "backward") for k in ("c", "b", "a")]
            await asyncio.gather(one.save_versioned(forward), two.save_versioned(backward))
        assert [(await one.load_versioned(k)).version for k in "abc"] == [80, 80, 80]
    finally:
        await one.close()
        await two.close()


# --- pools ------------------------------------------------------------------------------------


async def _connections(schema: Schema, name: str) -> int:
    ((found,),) = await schema.fetch(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
    )
    assert isinstance(found, int)
    return found


async def test_close_releases_the_pool_and_a_later_call_opens_one(schema: Schema) -> None:
    name = f"flujo-test-{uuid.uuid4().hex[:12]}"
    provider = PostgresStateProvider(with_settings(schema.dsn, application_name=name))
    await provider.save("k", 1)
    assert await _connections(schema, name) == 1  # min_size
    await provider.close()
    assert await _connections(schema, name) == 0
    assert await provider.load("k") == 1
    assert await _connections(schema, name) == 1
    await provider.close()
    assert await _connections(schema, name) == 0


async def test_each_event_loop_gets_its_own_pool(schema: Schema) -> None:
    provider = PostgresStateProvider(schema.dsn)

    def on_own_loop(n: int) -> Any:
        async def use() -> Any:
            await provider.save(f"k{n}", n)
            try:
                return await provider.load(f"k{n}")
            finally:
                await provider.close()

        return asyncio.run(use())

    loaded = await asyncio.gather(*(asyncio.to_thread(on_own_loop, n) for n in range(3)))
    assert loaded == [0, 1, 2]
    assert len(provider._pools) == 0  # every loop closed its own


class Counted(PipelineContext):
    n: ContextReference[int] = ContextReference(provider_id="count", key="n")


def test_sync_runs_leave_no_connection_open() -> None:
    # The runner does not close providers, and each runner.run() call's loop is gone when it
    # returns: the provider closes that loop's pool as the loop ends.
    schema = asyncio.run(_new_schema())
    name = f"flujo-test-{uuid.uuid4().hex[:12]}"
    provider = PostgresStateProvider(with_settings(schema.dsn, application_name=name))

    def bump(data: int, *, context: Counted) -> int:
        context.n.set((context.n.get() or 0) + 1)
        return data

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runner = Flujo(
                Step.from_callable(bump, name="bump"),
                context_model=Counted,
                state_providers={"count": provider},
                container=in_memory_container(),
            )
            outputs = [runner.run(1).output, runner.run(2).output]
            left_open = asyncio.run(_connections(schema, name))
            del runner
            gc.collect()
            problems = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        loaded = asyncio.run(_load_and_close(provider, "n"))
    finally:
        asyncio.run(schema.drop())
    assert outputs == [1, 2] and (loaded.value, loaded.version) == (2, 2)
    assert left_open == 0
    assert problems == []


async def _new_schema() -> Schema:
    return await Schema(await server_dsn()).create()


async def _load_and_close(provider: PostgresStateProvider, key: str) -> Versioned[Any]:
    try:
        return await provider.load_versioned(key)
    finally:
        await provider.close()


async def test_the_backend_owns_the_pools_of_its_providers(schema: Schema) -> None:
    name = f"flujo-test-{uuid.uuid4().hex[:12]}"
    backend = PostgresBackend(with_settings(schema.dsn, application_name=name))
    provider = backend.provider(namespace="kg")
    await provider.save("k", 1)
    await provider.close()  # does nothing: the pool is the backend's
    assert await _connections(schema, name) == 1
    await backend.save_run(make_run("r1"))
    await backend.close()
    assert await _connections(schema, name) == 0
    assert await provider.load_versioned("k") == Versioned(1, 1, None)  # reopens through it
    await backend.close()
    assert await _connections(schema, name) == 0


# --- AtomicCheckpoints ------------------------------------------------------------------------


async def test_the_backend_holds_only_providers_it_made(
    schema: Schema, backend: PostgresBackend
) -> None:
    other = PostgresBackend(schema.dsn)
    standalone = PostgresStateProvider(schema.dsn)  # same database, pools of its own
    assert isinstance(backend, AtomicCheckpoints)
    assert backend.holds(backend.provider()) and backend.holds(backend.provider(namespace="kg"))
    assert not backend.holds(standalone)
    assert not backend.holds(other.provider())
    assert not backend.holds(InMemoryStateProvider())


async def test_checkpoint_with_writes_the_record_and_the_values(
    schema: Schema, backend: PostgresBackend
) -> None:
    notes, graph = backend.provider(), backend.provider(namespace="kg")
    await backend.save_run(make_run("r1"))
    await notes.save("log", ["old"])
    step = make_step("r1", 0)

    versions = await backend.checkpoint_with(
        step,
        [
            (notes, Write("log", ["old", "new"], 1, "r1/step0")),
            (graph, Write("g", {"n": 1}, 0, "r1/step0")),
        ],
    )

    assert versions == [2, 1]
    assert list(await backend.load_steps("r1")) == [step]
    standalone = PostgresStateProvider(schema.dsn, namespace="kg")  # the same table, from outside
    try:
        assert await standalone.load_versioned("g") == Versioned({"n": 1}, 1, "r1/step0")
    finally:
        await standalone.close()
    assert await notes.load_versioned("log") == Versioned(["old", "new"], 2, "r1/step0")


async def test_a_conflict_writes_neither_the_record_nor_any_value(
    schema: Schema, backend: PostgresBackend
) -> None:
    provider = backend.provider()
    await backend.save_run(make_run("r1"))
    await provider.save_versioned([Write("taken", "kept", 0, "r0/step0")])
    await backend.checkpoint(make_step("r1", 0, pending=True))

    with pytest.raises(StateConflictError, match=r"'taken'.*version 0.*version 1.*'r0/step0'"):
        await backend.checkpoint_with(
            make_step("r1", 0),
            [
                (provider, Write("fresh", "no", 0, "r1/step0")),
                (provider, Write("taken", "no", 0, "r1/step0")),
            ],
        )

    assert list(await backend.load_steps("r1")) == [make_step("r1", 0, pending=True)]
    rows = await schema.fetch("SELECT key, version, writer FROM flujo_state")
    assert rows == [("taken", 1, "r0/step0")]


async def test_checkpoint_with_refuses_what_it_cannot_write_before_writing(
    schema: Schema, backend: PostgresBackend
) -> None:
    held, standalone = backend.provider(), PostgresStateProvider(schema.dsn)
    await backend.save_run(make_run("r1"))
    try:
        with pytest.raises(StateBackendError, match="does not share the pools"):
            await backend.checkpoint_with(
                make_step("r1", 0),
                [(held, Write("a", 1, 0, "w")), (standalone, Write("b", 1, 0, "w"))],
            )
        with pytest.raises(StateSaveError, match=r"key 'c'.*cannot be stored as JSON"):
            await backend.checkpoint_with(
                make_step("r1", 0), [(held, Write("c", object(), None, "w"))]
            )
    finally:
        await standalone.close()
    assert list(await backend.load_steps("r1")) == []
    assert await schema.fetch("SELECT key FROM flujo_state") == []


# --- a flujo run on the backend, its reference in the backend's provider ----------------------


class Notes(PipelineContext):
    notes: ContextReference[list[str]] = ContextReference(provider_id="kg", key="notes")


def add(word: str) -> Step[int, int]:
    def append(data: int, *, context: Notes) -> int:
        context.notes.set([*(context.notes.get() or []), word])
        return data + 1

    return Step.from_callable(append, name=f"add_{word}")


def notes_runner(backend: PostgresBackend, provider: Any, *steps: Step[int, int]) -> Any:
    pipeline: Any = steps[0]
    for step in steps[1:]:
        pipeline = pipeline >> step
    return Flujo(
        pipeline,
        context_model=Notes,
        state_providers={"kg": provider},
        state_backend=backend,
        container=in_memory_container(),
        pipeline_name="notes",
    )


# Fails the checkpoint of step "add_two" inside its transaction, after the step's write to
# flujo_state: the message reports the version the transaction sees at that moment.
REFUSE_CHECKPOINT = """
CREATE FUNCTION refuse_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name = 'add_two' THEN
        RAISE EXCEPTION 'checkpoint refused; this transaction sees notes at version %',
            (SELECT version FROM flujo_state WHERE namespace = 'shared' AND key = 'notes');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_checkpoint BEFORE INSERT OR UPDATE ON flujo_steps
    FOR EACH ROW EXECUTE FUNCTION refuse_checkpoint();
"""


async def test_a_steps_save_and_checkpoint_commit_in_one_transaction(
    schema: Schema, backend: PostgresBackend
) -> None:
    provider = backend.provider(namespace="shared")
    runner = notes_runner(backend, provider, add("one"), add("two"))
    await backend.load_run("none")  # makes the tables, for the trigger
    await schema.execute(REFUSE_CHECKPOINT)
    try:
        result = await runner.run_async(0, run_id="atomic")
    finally:
        await runner.aclose()

    assert result.status == "failed"
    # Inside the failed transaction the save had landed (version 2) ...
    assert result.step_history[-1].feedback == (
        "StateBackendError: checkpoint of run 'atomic' at step 1 with 1 value(s) failed: "
        "checkpoint refused; this transaction sees notes at version 2"
    )
    # ... and it was rolled back with the checkpoint: step one's commit is all that stays.
    assert await provider.load_versioned("notes") == Versioned(["one"], 1, "atomic/0")
    steps = await backend.load_steps("atomic")
    assert [(s.name, s.pending) for s in steps] == [("add_one", False)]

    # The run stays resumable: once the checkpoint can be written, both land together.
    await schema.execute("DROP TRIGGER refuse_checkpoint ON flujo_steps")
    runner = notes_runner(backend, provider, add("one"), add("two"))
    try:
        resumed = await runner.resume_async("atomic")
    finally:
        await runner.aclose()
    assert resumed.status == "completed"
    assert await provider.load_versioned("notes") == Versioned(["one", "two"], 2, "atomic/1")
    steps = await backend.load_steps("atomic")
    assert [(s.name, s.pending) for s in steps] == [("add_one", False), ("add_two", False)]


async def test_another_writer_between_load_and_commit_fails_the_step(
    schema: Schema, backend: PostgresBackend
) -> None:
    provider = backend.provider(namespace="shared")
    other = PostgresStateProvider(schema.dsn, namespace="shared")
    await provider.save("notes", ["seed"])

    async def interfere(data: int, *, context: Notes) -> int:
        await other.save_versioned([Write("notes", ["theirs"], 1, "other/0")])
        context.notes.set([*(context.notes.get() or []), "mine"])
        return data

    runner = notes_runner(backend, provider, Step.from_callable(interfere, name="interfere"))
    try:
        result = await runner.run_async(0, run_id="raced")
    finally:
        await runner.aclose()
        await other.close()
    assert result.status == "failed"
    feedback = result.step_history[-1].feedback
    assert feedback is not None and feedback.startswith("StateConflictError:")
    assert "'notes'" in feedback and "'other/0'" in feedback
    assert await provider.load_versioned("notes") == Versioned(["theirs"], 2, "other/0")
    assert list(await backend.load_steps("raced")) == []


async def test_a_step_setting_a_value_json_cannot_hold_fails_naming_it(
    schema: Schema, backend: PostgresBackend
) -> None:
    provider = backend.provider(namespace="shared")

    def unstorable(data: int, *, context: Notes) -> int:
        context.notes.set([threading.Lock()])  # type: ignore[list-item]
        return data

    runner = notes_runner(backend, provider, Step.from_callable(unstorable, name="unstorable"))
    try:
        result = await runner.run_async(0, run_id="bad-value")
    finally:
        await runner.aclose()
    assert result.status == "failed"
    feedback = result.step_history[-1].feedback
    assert feedback is not None
    assert "PostgreSQL state provider" in feedback and "key 'notes'" in feedback
    assert await provider.load_versioned("notes") == Versioned(None, 0, None)
