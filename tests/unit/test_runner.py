"""The Flujo runner: results, failures, contexts, persistence, limits, hooks and its container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers
from pydantic import BaseModel, Field

from flujo import (
    ConfigurationError,
    Flujo,
    Pipeline,
    PipelineContext,
    PipelineResult,
    Step,
    StepOutput,
    StepResult,
    UsageLimits,
)
from flujo.application.core.factories import ExecutorFactory
from flujo.containers import FlujoContainer
from flujo.domain.events import HookEvent, RunFinished, RunStarted, StepFinished, StepStarted
from flujo.infra.state.memory import InMemoryBackend
from tests.helpers import DictStateProvider, RecordingTelemetry

ROOT = Path(__file__).resolve().parents[2]
TESTING_PROFILE = "testing"


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # "The default container" means the code's default: SQLite under $XDG_STATE_HOME.
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)


class Ctx(PipelineContext):
    name: str = "anon"
    count: int = 0
    items: list[int] = Field(default_factory=list)


def _step(name: str, fn: Any) -> Step[Any, Any]:
    return Step.from_callable(fn, name=name)


def _add(n: int) -> Any:
    def add(x: int) -> int:
        return x + n

    return add


def _pipeline() -> Pipeline[int, int]:
    return _step("a", _add(1)) >> _step("b", _add(10)) >> _step("c", _add(100))


def _memory_runner(pipeline: Any, **kwargs: Any) -> Flujo[Any, Any, Any]:
    """A runner whose durable state lives in memory (the testing profile)."""
    return Flujo(pipeline, container=FlujoContainer.from_profile(TESTING_PROFILE), **kwargs)


# --- run / run_async ---------------------------------------------------------------------


def test_run_is_synchronous() -> None:
    result = Flujo(_pipeline(), persist_state=False).run(1)
    assert isinstance(result, PipelineResult)
    assert result.success
    assert result.output == 112


async def test_run_async() -> None:
    result = await Flujo(_pipeline(), persist_state=False).run_async(1)
    assert result.success
    assert result.output == 112


async def test_run_works_inside_a_running_event_loop() -> None:
    async def inc(x: int) -> int:
        return x + 1

    runner = Flujo(_step("inc", inc), persist_state=False)
    result = runner.run(41)  # sync call while this test's loop is running
    assert result.success, result.feedback
    assert result.output == 42


async def test_run_inside_a_running_loop_with_default_persistence(
    isolated_state_home: Path,
) -> None:
    async with Flujo(_pipeline()) as runner:
        result = runner.run(0)
        assert result.success
        record = await runner.container.state_backend().load_run(result.run_id)
        assert record is not None and record.status == "completed"


def test_sync_run_twice_with_default_persistence() -> None:
    runner = Flujo(_pipeline())
    first, second = runner.run(1), runner.run(2)
    assert (first.output, second.output) == (112, 113)
    assert first.run_id != second.run_id


def test_a_single_step_is_accepted_as_the_pipeline() -> None:
    result = Flujo(_step("only", _add(5)), persist_state=False).run(1)
    assert result.output == 6
    assert [r.name for r in result.step_history] == ["only"]


# --- PipelineResult ----------------------------------------------------------------------


async def test_pipeline_result_fields() -> None:
    def priced(x: int, *, context: Ctx) -> StepOutput[int]:
        context.count += 1
        return StepOutput(x * 2, cost_usd=0.25, tokens=7)

    pipeline = _step("one", priced) >> _step("two", priced)
    result = await Flujo(pipeline, context_model=Ctx, persist_state=False).run_async(3)
    assert result.success is True
    assert result.status == "completed"
    assert result.output == 12
    assert isinstance(result.run_id, str) and result.run_id
    assert [r.name for r in result.step_history] == ["one", "two"]
    assert all(isinstance(r, StepResult) and r.success for r in result.step_history)
    assert [r.output for r in result.step_history] == [6, 12]
    ctx = result.final_pipeline_context
    assert isinstance(ctx, Ctx)
    assert ctx.count == 2
    assert ctx.run_id == result.run_id
    assert result.total_cost_usd == pytest.approx(0.5)
    assert result.total_tokens == 14
    assert result.error is None
    assert result.feedback is None


async def test_explicit_run_id_is_used() -> None:
    result = await Flujo(_pipeline(), persist_state=False).run_async(0, run_id="my-run")
    assert result.run_id == "my-run"
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.run_id == "my-run"


async def test_each_run_gets_a_new_run_id() -> None:
    runner = Flujo(_pipeline(), persist_state=False)
    ids = {(await runner.run_async(0)).run_id for _ in range(3)}
    assert len(ids) == 3


# --- failures ----------------------------------------------------------------------------


async def test_failing_step_fails_the_run_and_stops_it() -> None:
    ran: list[str] = []

    def ok(x: int) -> int:
        ran.append("ok")
        return x

    def bad(x: int) -> int:
        ran.append("bad")
        raise ValueError(f"cannot handle {x}")

    def never(x: int) -> int:
        ran.append("never")
        return x

    pipeline = _step("ok", ok) >> _step("bad", bad) >> _step("never", never)
    result = await Flujo(pipeline, persist_state=False).run_async(7)
    assert result.success is False
    assert result.status == "failed"
    assert ran == ["ok", "bad"]
    assert [r.name for r in result.step_history] == ["ok", "bad"]
    assert result.step_history[0].success is True
    failed = result.step_history[-1]
    assert failed.success is False
    assert failed.feedback is not None
    assert "ValueError" in failed.feedback and "cannot handle 7" in failed.feedback
    assert result.feedback == failed.feedback


async def test_step_with_unserializable_output_still_completes_with_persistence() -> None:
    marker = object()
    async with _memory_runner(_step("obj", lambda x: marker)) as runner:
        result = await runner.run_async(1)
    assert result.success, result.feedback or result.error
    assert result.output is marker


# --- configuration errors ----------------------------------------------------------------


class NotAContext(BaseModel):
    x: int = 0


@pytest.mark.parametrize("model", [dict, NotAContext, PipelineContext(), "Ctx", int])
def test_context_model_must_be_a_pipeline_context_subclass(model: Any) -> None:
    with pytest.raises(ConfigurationError, match="PipelineContext"):
        Flujo(_pipeline(), context_model=model)


def test_initial_context_data_is_validated_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="count"):
        Flujo(_pipeline(), context_model=Ctx, initial_context_data={"count": "many"})


async def test_run_level_initial_context_data_is_validated() -> None:
    runner = Flujo(_pipeline(), context_model=Ctx, persist_state=False)
    with pytest.raises(ConfigurationError, match="items"):
        await runner.run_async(0, initial_context_data={"items": "not a list"})


def test_flujo_rejects_a_missing_pipeline() -> None:
    with pytest.raises(ConfigurationError):
        Flujo(None)  # type: ignore[call-overload]


# --- fresh context per run ---------------------------------------------------------------


def _appender(x: int, *, context: Ctx) -> list[int]:
    context.items.append(x)
    context.count += 1
    return list(context.items)


async def test_each_run_gets_a_fresh_context() -> None:
    runner = Flujo(_step("append", _appender), context_model=Ctx, persist_state=False)
    first = await runner.run_async(1)
    second = await runner.run_async(2)
    assert first.output == [1]
    assert second.output == [2]
    assert first.final_pipeline_context is not second.final_pipeline_context
    assert first.final_pipeline_context is not None
    assert first.final_pipeline_context.items == [1]


async def test_runs_start_from_initial_context_data_and_do_not_share_mutations() -> None:
    initial = {"name": "base", "items": [0]}
    runner = Flujo(
        _step("append", _appender),
        context_model=Ctx,
        initial_context_data=initial,
        persist_state=False,
    )
    first = await runner.run_async(1)
    second = await runner.run_async(2)
    assert first.output == [0, 1]
    assert second.output == [0, 2]
    assert initial == {"name": "base", "items": [0]}  # the caller's data is untouched


async def test_run_level_initial_context_data_overrides_for_that_run_only() -> None:
    def read(x: int, *, context: Ctx) -> tuple[str, int]:
        return context.name, context.count

    runner = Flujo(
        _step("read", read),
        context_model=Ctx,
        initial_context_data={"name": "base", "count": 5},
        persist_state=False,
    )
    overridden = await runner.run_async(0, initial_context_data={"name": "override"})
    plain = await runner.run_async(0)
    assert overridden.output == ("override", 5)
    assert plain.output == ("base", 5)


async def test_runs_do_not_share_nested_values_of_initial_context_data() -> None:
    def log(x: int, *, context: PipelineContext) -> list[int]:
        context.scratchpad["log"].append(x)
        return list(context.scratchpad["log"])

    initial: dict[str, Any] = {"scratchpad": {"log": []}}
    runner = Flujo(_step("log", log), initial_context_data=initial, persist_state=False)
    first = await runner.run_async(1)
    second = await runner.run_async(2)
    assert first.output == [1]
    assert second.output == [2], "the second run saw the first run's mutation"
    assert initial == {"scratchpad": {"log": []}}


class Profile(BaseModel):
    tags: list[str] = Field(default_factory=list)


class ProfileCtx(PipelineContext):
    profile: Profile = Profile()


async def test_runs_do_not_share_model_instances_of_initial_context_data() -> None:
    def tag(x: str, *, context: ProfileCtx) -> list[str]:
        context.profile.tags.append(x)
        return list(context.profile.tags)

    given = Profile(tags=["seed"])
    runner = Flujo(
        _step("tag", tag),
        context_model=ProfileCtx,
        initial_context_data={"profile": given},
        persist_state=False,
    )
    first = await runner.run_async("a")
    second = await runner.run_async("b")
    assert first.output == ["seed", "a"]
    assert second.output == ["seed", "b"], "the second run saw the first run's mutation"
    assert given.tags == ["seed"]


# --- lifecycle ---------------------------------------------------------------------------


async def test_async_with_and_aclose(isolated_state_home: Path) -> None:
    async with Flujo(_pipeline()) as runner:
        assert isinstance(runner, Flujo)
        first = await runner.run_async(1)
    assert first.success
    # a closed runner may be used again: the backend reopens on the next call
    second = await runner.run_async(2)
    assert second.success
    record = await runner.container.state_backend().load_run(first.run_id)
    assert record is not None and record.status == "completed"
    await runner.aclose()
    await runner.aclose()  # closing twice is harmless


async def test_aclose_without_a_run_is_harmless() -> None:
    runner = Flujo(_pipeline(), persist_state=False)
    await runner.aclose()


# --- durable state -----------------------------------------------------------------------


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


async def test_persist_state_false_writes_no_state_file(isolated_state_home: Path) -> None:
    async with Flujo(_pipeline(), persist_state=False) as runner:
        result = await runner.run_async(1)
    assert result.success
    assert _files_under(isolated_state_home) == []


async def test_default_persistence_writes_sqlite_and_run_is_retrievable(
    isolated_state_home: Path,
) -> None:
    async with Flujo(_pipeline(), pipeline_name="adder", pipeline_version="v2") as runner:
        result = await runner.run_async(1)
        assert result.success
        assert (isolated_state_home / "flujo" / "runs.db").is_file()
        backend = runner.container.state_backend()
        record = await backend.load_run(result.run_id)
        assert record is not None
        assert record.status == "completed"
        assert record.run_id == result.run_id
        assert (record.pipeline_name, record.pipeline_version) == ("adder", "v2")
        assert record.step_index == 3
        steps = await backend.load_steps(result.run_id)
        assert [s.name for s in steps] == ["a", "b", "c"]
        assert [s.index for s in steps] == [0, 1, 2]


async def test_failed_run_is_recorded_as_failed(isolated_state_home: Path) -> None:
    def bad(x: int) -> int:
        raise RuntimeError("nope")

    async with Flujo(_step("a", _add(1)) >> _step("bad", bad), delete_on_completion=True) as r:
        result = await r.run_async(1)
        assert not result.success
        record = await r.container.state_backend().load_run(result.run_id)
        assert record is not None
        assert record.status == "failed"
        assert record.step_index == 1


async def test_delete_on_completion_removes_the_run(isolated_state_home: Path) -> None:
    async with Flujo(_pipeline(), delete_on_completion=True) as runner:
        result = await runner.run_async(1)
        assert result.success
        backend = runner.container.state_backend()
        assert await backend.load_run(result.run_id) is None
        assert list(await backend.load_steps(result.run_id)) == []


async def test_explicit_state_backend_is_used(isolated_state_home: Path) -> None:
    backend = InMemoryBackend()
    runner = Flujo(_pipeline(), state_backend=backend)
    result = await runner.run_async(1)
    record = await backend.load_run(result.run_id)
    assert record is not None and record.status == "completed"
    assert _files_under(isolated_state_home) == []


# --- usage limits ------------------------------------------------------------------------


def _priced(cost: float, tokens: int) -> Any:
    def fn(x: int) -> StepOutput[int]:
        return StepOutput(x + 1, cost_usd=cost, tokens=tokens)

    return fn


async def test_token_limit_stops_the_run() -> None:
    ran: list[int] = []

    def third(x: int) -> int:
        ran.append(x)
        return x

    pipeline = _step("a", _priced(0, 10)) >> _step("b", _priced(0, 10)) >> _step("c", third)
    runner = Flujo(pipeline, usage_limits=UsageLimits(total_tokens_limit=15), persist_state=False)
    result = await runner.run_async(0)
    assert result.success is False
    assert result.status == "failed"
    assert ran == []
    assert result.error is not None
    assert "limit" in result.error.lower() and "token" in result.error.lower()
    assert result.total_tokens == 20


async def test_cost_limit_stops_the_run() -> None:
    pipeline = _step("a", _priced(0.6, 0)) >> _step("b", _priced(0.6, 0)) >> _step("c", _add(1))
    runner = Flujo(
        pipeline, usage_limits=UsageLimits(total_cost_usd_limit=1.0), persist_state=False
    )
    result = await runner.run_async(0)
    assert result.success is False
    assert [r.name for r in result.step_history] == ["a", "b"]
    assert result.error is not None and "limit" in result.error.lower()


async def test_usage_within_limits_completes() -> None:
    pipeline = _step("a", _priced(0.1, 1)) >> _step("b", _priced(0.1, 1))
    limits = UsageLimits(total_cost_usd_limit=1.0, total_tokens_limit=10)
    result = await Flujo(pipeline, usage_limits=limits, persist_state=False).run_async(0)
    assert result.success
    assert result.error is None


async def test_usage_is_counted_per_run() -> None:
    runner = Flujo(
        _step("a", _priced(0, 10)),
        usage_limits=UsageLimits(total_tokens_limit=15),
        persist_state=False,
    )
    assert (await runner.run_async(0)).success
    second = await runner.run_async(0)
    assert second.success, second.error
    assert second.total_tokens == 10


async def test_usage_is_totalled_and_limited_with_a_custom_backend() -> None:
    # Flujo(backend=...) runs steps through the caller's backend; its usage still counts.
    from flujo.application.core.execution_backend import LocalExecutionBackend
    from flujo.application.core.executor_core import ExecutorCore

    pipeline = _step("a", _priced(0.5, 10)) >> _step("b", _add(1))
    runner = Flujo(
        pipeline,
        backend=LocalExecutionBackend(ExecutorCore()),
        usage_limits=UsageLimits(total_tokens_limit=5),
        persist_state=False,
    )
    result = await runner.run_async(0)
    assert result.total_tokens == 10
    assert result.total_cost_usd == pytest.approx(0.5)
    assert result.success is False
    assert result.error is not None and "limit" in result.error.lower()


def test_usage_limits_must_be_usage_limits() -> None:
    with pytest.raises(ConfigurationError, match="usage_limits"):
        Flujo(_pipeline(), usage_limits={"total_tokens_limit": 5})  # type: ignore[arg-type]


# --- hooks -------------------------------------------------------------------------------


def _describe(event: HookEvent) -> tuple[str, Any]:
    if isinstance(event, StepStarted | StepFinished):
        return type(event).__name__, (event.step_name, event.index)
    return type(event).__name__, None


EXPECTED_EVENTS = [
    ("RunStarted", None),
    ("StepStarted", ("a", 0)),
    ("StepFinished", ("a", 0)),
    ("StepStarted", ("b", 1)),
    ("StepFinished", ("b", 1)),
    ("StepStarted", ("c", 2)),
    ("StepFinished", ("c", 2)),
    ("RunFinished", None),
]


async def test_sync_hooks_receive_events_in_order() -> None:
    events: list[HookEvent] = []
    runner = Flujo(_pipeline(), hooks=[events.append], persist_state=False)
    result = await runner.run_async(1)
    assert [_describe(e) for e in events] == EXPECTED_EVENTS
    assert isinstance(events[0], RunStarted) and events[0].run_id == result.run_id
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.result.run_id == result.run_id
    assert finished.result.success
    step_finished = [e for e in events if isinstance(e, StepFinished)]
    assert [e.result.output for e in step_finished] == [2, 12, 112]


async def test_async_hooks_receive_events_in_order() -> None:
    events: list[HookEvent] = []

    async def hook(event: HookEvent) -> None:
        events.append(event)

    await Flujo(_pipeline(), hooks=[hook], persist_state=False).run_async(1)
    assert [_describe(e) for e in events] == EXPECTED_EVENTS


async def test_hooks_see_a_failing_step() -> None:
    events: list[HookEvent] = []

    def bad(x: int) -> int:
        raise ValueError("x")

    pipeline = _step("a", _add(1)) >> _step("bad", bad) >> _step("c", _add(1))
    await Flujo(pipeline, hooks=[events.append], persist_state=False).run_async(1)
    names = [_describe(e) for e in events]
    assert names[-1] == ("RunFinished", None)
    assert ("StepStarted", ("c", 2)) not in names
    failed = [e for e in events if isinstance(e, StepFinished) and not e.result.success]
    assert [e.step_name for e in failed] == ["bad"]
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.result.success is False


async def test_failing_hooks_do_not_fail_the_run() -> None:
    seen: list[str] = []
    telemetry = RecordingTelemetry()

    def bad_sync(event: HookEvent) -> None:
        raise RuntimeError("sync hook broke")

    async def bad_async(event: HookEvent) -> None:
        raise RuntimeError("async hook broke")

    def good(event: HookEvent) -> None:
        seen.append(type(event).__name__)

    runner = Flujo(_pipeline(), hooks=[bad_sync, bad_async, good], persist_state=False)
    runner.container.telemetry.override(providers.Object(telemetry))
    result = await runner.run_async(1)
    assert result.success
    assert result.output == 112
    assert seen[0] == "RunStarted" and seen[-1] == "RunFinished" and len(seen) == 8
    assert any("sync hook broke" in w for w in telemetry.warnings)
    assert any("async hook broke" in w for w in telemetry.warnings)


def test_non_callable_hook_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="hook"):
        Flujo(_pipeline(), hooks=["not callable"])  # type: ignore[list-item]


# --- the runner's container --------------------------------------------------------------


async def test_run_id_override_applies_from_the_next_run() -> None:
    runner = Flujo(_pipeline(), persist_state=False)
    before = await runner.run_async(1)
    runner.container.run_id.override(providers.Object("fixed"))
    try:
        after = await runner.run_async(1)
    finally:
        runner.container.run_id.reset_override()
    again = await runner.run_async(1)
    assert before.run_id != "fixed"
    assert after.run_id == "fixed"
    assert after.final_pipeline_context is not None
    assert after.final_pipeline_context.run_id == "fixed"
    assert again.run_id != "fixed"


async def test_clock_override_is_used_for_run_records() -> None:
    async with _memory_runner(_pipeline()) as runner:
        runner.container.clock.override(providers.Object(1234.5))
        result = await runner.run_async(1)
        record = await runner.container.state_backend().load_run(result.run_id)
    assert record is not None
    assert record.created_at == 1234.5
    assert record.updated_at == 1234.5


async def test_a_clock_function_override_stamps_records_from_the_next_run_on() -> None:
    ticks = iter(range(1000, 2000))
    async with _memory_runner(_pipeline()) as runner:
        first = await runner.run_async(1)
        runner.container.clock.override(providers.Callable(lambda: float(next(ticks))))
        second = await runner.run_async(1)
        runner.container.clock.reset_override()
        third = await runner.run_async(1)
        backend = runner.container.state_backend()
        records = [await backend.load_steps(r.run_id) for r in (first, second, third)]
    stamped = [step.recorded_at for step in records[1]]
    assert all(1000 <= stamp < 2000 for stamp in stamped)
    assert stamped == sorted(stamped)  # each record read the overriding clock anew
    assert all(step.recorded_at > 1e9 for step in records[0] + records[2])  # the real clock


async def test_telemetry_override_applies_from_the_next_run() -> None:
    runner = Flujo(_pipeline(), persist_state=False)
    await runner.run_async(1)
    telemetry = RecordingTelemetry()
    with runner.container.telemetry.override(telemetry):
        await runner.run_async(1)
    assert telemetry.step_names == ["a", "b", "c"]
    await runner.run_async(1)  # override gone: the fake sees nothing more
    assert len(telemetry.spans) == 4  # the run's span and one per step, nothing more


async def test_state_backend_override_applies_from_the_next_run(
    isolated_state_home: Path,
) -> None:
    runner = Flujo(_pipeline())
    backend = InMemoryBackend()
    with runner.container.state_backend.override(backend):
        result = await runner.run_async(1)
    assert await backend.load_run(result.run_id) is not None
    assert _files_under(isolated_state_home) == []


async def test_two_runners_have_distinct_containers() -> None:
    provider = DictStateProvider()
    first = Flujo(_pipeline(), persist_state=False, state_providers={"p": provider})
    second = Flujo(_pipeline(), persist_state=False)
    assert first.container is not second.container
    assert first.state_providers["p"] is provider
    assert "p" not in second.state_providers
    telemetry = RecordingTelemetry()
    first.container.telemetry.override(providers.Object(telemetry))
    await second.run_async(1)
    assert telemetry.spans == []
    await first.run_async(1)
    assert telemetry.step_names == ["a", "b", "c"]


def test_the_container_is_built_once_per_runner() -> None:
    runner = Flujo(_pipeline(), persist_state=False)
    container = runner.container
    runner.run(1)
    runner.run(2)
    assert runner.container is container


async def test_runner_uses_a_given_container() -> None:
    container = FlujoContainer.from_profile(TESTING_PROFILE)
    runner = Flujo(_pipeline(), container=container)
    assert runner.container is container
    result = await runner.run_async(1)
    assert await container.state_backend().load_run(result.run_id) is not None


async def test_enable_tracing_false() -> None:
    telemetry = RecordingTelemetry()
    quiet = Flujo(_pipeline(), persist_state=False, enable_tracing=False)
    quiet.container.telemetry.override(providers.Object(telemetry))
    result = await quiet.run_async(1)
    assert result.success and result.output == 112
    assert telemetry.spans == []
    traced = Flujo(_pipeline(), persist_state=False)
    traced.container.telemetry.override(providers.Object(telemetry))
    await traced.run_async(1)
    assert telemetry.step_names == ["a", "b", "c"]


async def test_resources_reach_the_steps() -> None:
    resources = {"db": object()}
    got: list[Any] = []

    def use(x: int, *, resources: Any) -> int:
        got.append(resources)
        return x

    runner = Flujo(_step("use", use), resources=resources, persist_state=False)
    assert (await runner.run_async(1)).success
    assert got == [resources] and got[0] is resources


# --- what the runner layers over a container ---------------------------------------------


def test_runner_state_providers_merges_a_given_containers_registry_with_its_own() -> None:
    host_provider, own = DictStateProvider(), DictStateProvider()
    container = FlujoContainer()
    container.state_providers.override(providers.Object({"host": host_provider}))
    runner = Flujo(
        Step.from_callable(lambda x: x, name="s"),
        container=container,
        state_providers={"own": own},
        persist_state=False,
    )
    assert dict(runner.state_providers) == {"host": host_provider, "own": own}
    assert dict(runner.container.state_providers()) == {"host": host_provider}
    # Resolved per run: a later change of the host's registry is seen, the layer stays.
    later = DictStateProvider()
    container.state_providers.override(providers.Object({"later": later}))
    assert dict(runner.state_providers) == {"later": later, "own": own}
    assert dict(runner._parts().executor.state_providers) == {"later": later, "own": own}


def test_a_clash_with_the_given_containers_registry_fails_construction() -> None:
    container = FlujoContainer()
    container.state_providers.override(providers.Object({"kg": DictStateProvider()}))
    with pytest.raises(ConfigurationError, match="'kg'"):
        Flujo(
            Step.from_callable(lambda x: x, name="s"),
            container=container,
            state_providers={"kg": DictStateProvider()},
        )


def test_an_override_on_the_runners_own_container_wins_over_what_it_was_given() -> None:
    given, later = RecordingTelemetry(), RecordingTelemetry()
    runner = Flujo(
        Step.from_callable(lambda x: x, name="s"),
        executor_factory=ExecutorFactory(telemetry=given),
        persist_state=False,
    )
    assert runner._parts().telemetry is given
    with runner.container.telemetry.override(later):
        assert runner._parts().telemetry is later
