"""Property: faults and crashes never change what a pipeline does, only how long it takes.

Hypothesis composes random pipelines of steps that change plain context fields
(a counter, an ``append``-reduced list, a dict) and a referenced log, nested in
loops, maps and parallels, and runs each twice: once without faults, once with
attempts that fail after making changes (then retried, or replaced by a fallback
doing the same work) and a crash — the process "dying" at a random checkpoint
or provider save — followed by resumes until the run completes. The final
context and the provider's content must be those of the fault-free run.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from flujo import ContextReference, Flujo, Pipeline, PipelineContext, Step
from flujo.domain.errors import StateConflictError
from flujo.domain.interfaces import RunRecord, StepRecord, Versioned, Write
from flujo.domain.reducers import append
from flujo.state import InMemoryBackend
from tests.unit.test_state_providers_integration import memory_container


class Crash(BaseException):
    """The process dies here: nothing in flujo may catch it."""


class PropCtx(PipelineContext):
    count: int = 0
    notes: Annotated[list[str], append] = Field(default_factory=list)
    tags: dict[str, int] = Field(default_factory=dict)
    log: ContextReference[list[str]] = ContextReference(provider_id="kg", key="log")


@dataclass
class Faults:
    """What goes wrong in one run: failing attempts by step, and one crash point."""

    failures: dict[str, int] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    crash_at: int | None = None
    crash_in_save: bool = False
    lose_reply_at: int | None = None
    """The save (numbered from 1) that lands and then raises, as when its answer is lost."""
    events: int = 0
    saves: int = 0

    def tick(self) -> None:
        self.events += 1
        if self.crash_at is not None and self.events == self.crash_at:
            self.crash_at = None
            raise Crash


class Store:
    """A copying, versioned provider; a save may be the crash point."""

    def __init__(self, faults: Faults) -> None:
        self.data: dict[str, Any] = {"log": []}
        self.versions: dict[str, int] = {"log": 1}
        self.writers: dict[str, str | None] = {}
        self.faults = faults

    async def load(self, key: str) -> Any:
        return copy.deepcopy(self.data.get(key))

    async def save(self, key: str, data: Any) -> None:
        await self.save_versioned([Write(key, data, None, "")])

    async def load_versioned(self, key: str) -> Versioned[Any]:
        return Versioned(
            copy.deepcopy(self.data.get(key)), self.versions.get(key, 0), self.writers.get(key)
        )

    async def save_versioned(self, writes: Sequence[Write[Any]]) -> list[int]:
        for write in writes:
            if write.expected_version not in (None, self.versions.get(write.key, 0)):
                raise StateConflictError(write.key)
        if self.faults.crash_in_save:
            self.faults.tick()  # dies before anything is stored
        out = []
        for write in writes:
            self.data[write.key] = copy.deepcopy(write.data)
            self.versions[write.key] = self.versions.get(write.key, 0) + 1
            self.writers[write.key] = write.writer
            out.append(self.versions[write.key])
        if self.faults.crash_in_save:
            self.faults.tick()  # dies after it was stored
        self.faults.saves += 1
        if self.faults.saves == self.faults.lose_reply_at:
            raise ConnectionError("the store committed, then the connection dropped")
        return out


class CrashingBackend(InMemoryBackend):
    """Run state in memory; a checkpoint may be the crash point."""

    def __init__(self, faults: Faults) -> None:
        super().__init__()
        self.faults = faults

    async def checkpoint(self, step: StepRecord) -> None:
        if not self.faults.crash_in_save:
            self.faults.tick()
        await super().checkpoint(step)

    async def finish_run(self, step: StepRecord, run: RunRecord, *, owner: str | None) -> None:
        if not self.faults.crash_in_save:
            self.faults.tick()  # the last record, written with the final header
        await super().finish_run(step, run, owner=owner)


# -- the pipelines ---------------------------------------------------------------------------


def _work(name: str, faults: Faults, *, with_ref: bool) -> Any:
    def fn(data: Any, *, context: PropCtx) -> Any:
        if with_ref:
            context.count += 1
            context.tags[name] = context.tags.get(name, 0) + 1
        else:
            # A concurrent child: read-modify-write of a shared field would be a lost update
            # (each child starts from the same value), so it writes keys of its own.
            context.tags[f"{name}:{data!r}"] = 1
        context.notes.append(name)
        if with_ref:
            context.log.set([*(context.log.get() or []), name])
        if faults.failures.get(name, 0) > 0 or name in faults.broken:
            faults.failures[name] = faults.failures.get(name, 0) - 1
            raise RuntimeError(f"{name} failed after changing things")
        return data

    return fn


def _leaf(name: str, faults: Faults, *, with_ref: bool = True) -> Step[Any, Any]:
    primary = Step.from_callable(_work(name, faults, with_ref=with_ref), name=name, max_retries=2)
    # The fallback does the same work and never fails: the fault-free run never needs it.
    backup = Step.from_callable(_work(name, Faults(), with_ref=with_ref), name=name + "-fallback")
    return primary.fallback(backup)


Shape = tuple[Any, ...]

shapes = st.recursive(
    st.just(("leaf",)),
    lambda inner: st.one_of(
        st.tuples(st.just("loop"), inner, st.integers(1, 3)),
        st.tuples(st.just("map"), st.integers(1, 3), st.integers(1, 3)),
        st.tuples(st.just("parallel"), st.integers(2, 3)),
    ),
    max_leaves=3,
)


def _build(shape: Shape, prefix: str, faults: Faults, *, top: bool) -> Step[Any, Any]:
    kind = shape[0]
    if kind == "leaf":
        return _leaf(prefix, faults)
    if kind == "loop":
        body = _build(shape[1], prefix + "L", faults, top=False)
        return Step.loop_until(
            body, lambda out, ctx: False, max_loops=shape[2], on_max_loops="return", name=prefix
        )
    if kind == "map":
        items, concurrency = shape[1], shape[2]
        # Concurrent items may not set one reference: they touch plain fields only.
        body = _leaf(prefix + "M", faults, with_ref=concurrency == 1)
        return Step.map_over(
            body,
            items_from=lambda data, ctx: list(range(items)),
            concurrency=concurrency,
            name=prefix,
        )
    branches = {f"b{i}": _leaf(f"{prefix}P{i}", faults, with_ref=False) for i in range(shape[1])}
    return Step.parallel(branches, name=prefix)


def _pipeline(shapes_: list[Shape], faults: Faults) -> Pipeline[Any, Any]:
    return Pipeline([_build(s, f"s{i}", faults, top=True) for i, s in enumerate(shapes_)])


async def _outcome(shapes_: list[Shape], faults: Faults) -> tuple[Any, ...]:
    store = Store(faults)
    backend = CrashingBackend(faults)

    def runner() -> Flujo[Any, Any, PropCtx]:
        return Flujo(
            _pipeline(shapes_, faults),
            context_model=PropCtx,
            state_providers={"kg": store},
            state_backend=backend,
            container=memory_container(),
        )

    try:
        result = await runner().run_async(0, run_id="prop")
    except Crash:
        result = None
    for _ in range(5):  # each resume may fail at a broken step once more
        if result is not None and result.success:
            break
        faults.broken.clear()
        try:
            result = await runner().resume_async("prop")
        except Crash:
            result = None
    assert result is not None and result.success, result and result.feedback
    context = result.final_pipeline_context
    assert context is not None
    return (context.count, context.notes, context.tags, store.data["log"])


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shapes_=st.lists(shapes, min_size=1, max_size=3),
    data=st.data(),
)
async def test_faults_and_crashes_give_the_fault_free_outcome(
    shapes_: list[Shape], data: st.DataObject
) -> None:
    clean = await _outcome(shapes_, Faults())
    names = _names(shapes_)
    faults = Faults(
        failures={n: data.draw(st.integers(0, 2), label=f"failures of {n}") for n in names},
        broken=set(data.draw(st.lists(st.sampled_from(names), max_size=1), label="broken")),
        crash_at=data.draw(st.none() | st.integers(1, 8), label="crash at"),
        crash_in_save=data.draw(st.booleans(), label="crash in a save"),
        lose_reply_at=data.draw(st.none() | st.integers(1, 6), label="reply lost at save"),
    )
    assert await _outcome(shapes_, faults) == clean


def _names(shapes_: list[Shape]) -> list[str]:
    out: list[str] = []

    def walk(shape: Shape, prefix: str) -> None:
        if shape[0] == "leaf":
            out.append(prefix)
        elif shape[0] == "loop":
            walk(shape[1], prefix + "L")
        elif shape[0] == "map":
            out.append(prefix + "M")
        else:
            out.extend(f"{prefix}P{i}" for i in range(shape[1]))

    for i, shape in enumerate(shapes_):
        walk(shape, f"s{i}")
    return out
