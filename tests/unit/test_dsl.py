"""The Step/Pipeline DSL: callables, agents, decorators, composition and bad input."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import Field

from flujo import ConfigurationError, Pipeline, PipelineContext, Step, StepConfig, UsageLimits, step
from flujo.application.core.executor_core import ExecutorCore


class Ctx(PipelineContext):
    seen: list[Any] = Field(default_factory=list)


@pytest.fixture
def executor() -> ExecutorCore:
    return ExecutorCore()


# --- from_callable: sync and async -------------------------------------------------------


async def test_from_callable_runs_a_sync_function(executor: ExecutorCore) -> None:
    def double(x: int) -> int:
        return x * 2

    s = Step.from_callable(double)
    assert s.name == "double"
    result = await executor.execute(s, 21)
    assert result.success, result.feedback
    assert result.output == 42


async def test_from_callable_runs_an_async_function(executor: ExecutorCore) -> None:
    async def shout(x: str) -> str:
        return x.upper()

    s = Step.from_callable(shout, name="loud")
    assert s.name == "loud"
    result = await executor.execute(s, "hi")
    assert result.success, result.feedback
    assert result.output == "HI"


async def test_from_callable_accepts_async_callable_object(executor: ExecutorCore) -> None:
    class Adder:
        async def __call__(self, x: int) -> int:
            return x + 1

    result = await executor.execute(Step.from_callable(Adder(), name="add"), 1)
    assert result.success, result.feedback
    assert result.output == 2


async def test_sync_callable_runs_inline_on_the_event_loop_thread(executor: ExecutorCore) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def where(x: int) -> int:
        seen.append(threading.get_ident())
        return x

    result = await executor.execute(Step.from_callable(where), 1)
    assert result.success, result.feedback
    assert seen == [loop_thread]


async def test_sync_callable_with_run_in_thread_runs_elsewhere(executor: ExecutorCore) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def where(x: int) -> int:
        seen.append(threading.get_ident())
        return x

    s = Step.from_callable(where, run_in_thread=True)
    assert s.config.run_in_thread is True
    result = await executor.execute(s, 7)
    assert result.success, result.feedback
    assert result.output == 7
    assert len(seen) == 1
    assert seen[0] != loop_thread


# --- context and resources ---------------------------------------------------------------


async def test_keyword_only_context_receives_the_context(executor: ExecutorCore) -> None:
    ctx = Ctx()

    def record(x: int, *, context: Ctx) -> int:
        context.seen.append(x)
        return x

    result = await executor.execute(Step.from_callable(record), 5, context=ctx)
    assert result.success, result.feedback
    assert ctx.seen == [5]


async def test_async_keyword_only_context_receives_the_context(executor: ExecutorCore) -> None:
    ctx = Ctx()
    received: list[Any] = []

    async def record(x: int, *, context: Ctx) -> int:
        received.append(context)
        return x

    result = await executor.execute(Step.from_callable(record), 5, context=ctx)
    assert result.success, result.feedback
    assert received == [ctx]
    assert received[0] is ctx


async def test_callable_without_context_param_gets_no_context(executor: ExecutorCore) -> None:
    calls: list[tuple[Any, ...]] = []

    def plain(x: int) -> int:
        calls.append((x,))
        return x

    def with_kwargs(x: int, **kwargs: Any) -> int:
        calls.append((x, kwargs))
        return x

    assert (await executor.execute(Step.from_callable(plain), 1, context=Ctx())).success
    result = await executor.execute(Step.from_callable(with_kwargs), 2, context=Ctx())
    assert result.success, result.feedback
    assert calls == [(1,), (2, {})]


async def test_resources_passed_when_declared(executor: ExecutorCore) -> None:
    resources = object()
    got: list[Any] = []

    def uses(x: int, *, resources: Any) -> int:
        got.append(resources)
        return x

    async def uses_both(x: int, *, context: Ctx, resources: Any) -> int:
        got.append((context, resources))
        return x

    ctx = Ctx()
    assert (await executor.execute(Step.from_callable(uses), 1, resources=resources)).success
    assert (
        await executor.execute(Step.from_callable(uses_both), 1, context=ctx, resources=resources)
    ).success
    assert got[0] is resources
    assert got[1][0] is ctx and got[1][1] is resources


async def test_resources_not_passed_when_not_declared(executor: ExecutorCore) -> None:
    def only_context(x: int, *, context: Ctx) -> str:
        return "ok"

    result = await executor.execute(
        Step.from_callable(only_context), 1, context=Ctx(), resources=object()
    )
    assert result.success, result.feedback
    assert result.output == "ok"


# --- @step -------------------------------------------------------------------------------


async def test_bare_step_decorator(executor: ExecutorCore) -> None:
    @step
    async def greet(name: str) -> str:
        return f"hello {name}"

    assert isinstance(greet, Step)
    assert greet.name == "greet"
    result = await executor.execute(greet, "ana")
    assert result.output == "hello ana"


async def test_step_decorator_with_arguments(executor: ExecutorCore) -> None:
    calls = 0

    @step(name="renamed", max_retries=2)
    def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("not yet")
        return x

    assert isinstance(flaky, Step)
    assert flaky.name == "renamed"
    assert flaky.config.max_retries == 2
    result = await executor.execute(flaky, 9)
    assert result.success, result.feedback
    assert result.attempts == 3
    assert result.name == "renamed"


async def test_step_decorator_passes_context(executor: ExecutorCore) -> None:
    @step
    def note(x: int, *, context: Ctx) -> int:
        context.seen.append("noted")
        return x

    ctx = Ctx()
    assert (await executor.execute(note, 1, context=ctx)).success
    assert ctx.seen == ["noted"]


# --- agents ------------------------------------------------------------------------------


async def test_agent_with_async_run_receives_input_and_context(executor: ExecutorCore) -> None:
    class Agent:
        def __init__(self) -> None:
            self.kwargs: list[dict[str, Any]] = []

        async def run(self, data: Any, **kwargs: Any) -> str:
            self.kwargs.append(kwargs)
            return f"agent:{data}"

    agent = Agent()
    ctx = Ctx()
    s = Step("agent", agent=agent)
    result = await executor.execute(s, "q", context=ctx)
    assert result.success, result.feedback
    assert result.output == "agent:q"
    assert agent.kwargs[0].get("context") is ctx


async def test_agent_with_keyword_only_context(executor: ExecutorCore) -> None:
    class Agent:
        async def run(self, data: Any, *, context: Ctx | None = None) -> int:
            assert context is not None
            context.seen.append(data)
            return len(context.seen)

    ctx = Ctx()
    result = await executor.execute(Step("a", agent=Agent()), "x", context=ctx)
    assert result.success, result.feedback
    assert result.output == 1
    assert ctx.seen == ["x"]


async def test_agent_step_runs_in_a_flujo_pipeline() -> None:
    from flujo import Flujo

    class Agent:
        async def run(self, data: Any, **kwargs: Any) -> Any:
            kwargs["context"].scratchpad["agent"] = data
            return data + 1

    runner = Flujo(Step("a", agent=Agent()), persist_state=False)
    result = await runner.run_async(1)
    assert result.success
    assert result.output == 2
    assert result.final_pipeline_context is not None
    assert result.final_pipeline_context.scratchpad == {"agent": 1}


# --- composition -------------------------------------------------------------------------


def _s(name: str) -> Step[Any, Any]:
    def fn(x: Any) -> Any:
        return x

    return Step.from_callable(fn, name=name)


def test_step_rshift_step_builds_a_pipeline() -> None:
    p = _s("a") >> _s("b")
    assert isinstance(p, Pipeline)
    assert p.step_names == ["a", "b"]


def test_rshift_flattens_every_mix_in_order() -> None:
    a, b, c, d, e, f = (_s(n) for n in "abcdef")
    step_then_pipeline = a >> (b >> c)
    assert step_then_pipeline.step_names == ["a", "b", "c"]
    pipeline_then_step = (a >> b) >> c
    assert pipeline_then_step.step_names == ["a", "b", "c"]
    pipeline_then_pipeline = (a >> b) >> (c >> d)
    assert pipeline_then_pipeline.step_names == ["a", "b", "c", "d"]
    chain = a >> b >> (c >> d) >> e >> Pipeline([f])
    assert chain.step_names == list("abcdef")
    assert all(isinstance(s, Step) for s in chain.steps)
    assert len(chain) == 6
    assert chain.steps[0] is a and chain.steps[-1] is f


def test_rshift_does_not_mutate_operands() -> None:
    a, b, c = _s("a"), _s("b"), _s("c")
    left = a >> b
    combined = left >> c
    assert left.step_names == ["a", "b"]
    assert combined.step_names == ["a", "b", "c"]


async def test_composed_pipeline_runs_in_order() -> None:
    from flujo import Flujo

    order: list[str] = []

    def make(name: str) -> Step[Any, Any]:
        async def fn(x: str) -> str:
            order.append(name)
            return x + name

        return Step.from_callable(fn, name=name)

    pipeline = make("a") >> (make("b") >> make("c")) >> make("d")
    result = await Flujo(pipeline, persist_state=False).run_async("")
    assert result.success
    assert result.output == "abcd"
    assert order == ["a", "b", "c", "d"]


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("thing", [42, "not a function", None, [1, 2]])
def test_from_callable_rejects_non_callables(thing: Any) -> None:
    with pytest.raises(ConfigurationError, match="callable"):
        Step.from_callable(thing)


def test_step_decorator_rejects_non_callable() -> None:
    with pytest.raises(ConfigurationError, match="callable"):
        step(5)  # type: ignore[call-overload]


@pytest.mark.parametrize("thing", [1, "a", None, lambda x: x])
def test_rshift_with_something_that_is_not_a_step_or_pipeline_is_a_type_error(thing: Any) -> None:
    with pytest.raises(TypeError, match=">>"):
        _s("a") >> thing
    with pytest.raises(TypeError, match=">>"):
        (_s("a") >> _s("b")) >> thing


@pytest.mark.parametrize("thing", [1, "a", None, lambda x: x])
def test_a_pipeline_holds_only_steps(thing: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"item 1 is {type(thing).__name__}, not a Step"):
        Pipeline([_s("a"), thing])
    with pytest.raises(ConfigurationError, match="expected a Step or Pipeline"):
        Pipeline.of(thing)


def test_the_base_of_step_is_not_a_step_itself() -> None:
    # A pipeline checks its items against Node (pipeline.py does not import step.py);
    # a bare Node would pass that check with nothing to run, so it cannot be made.
    from flujo.domain.dsl.node import Node

    assert issubclass(Step, Node)
    with pytest.raises(ConfigurationError, match="base of Step"):
        Node("n")


def test_empty_pipeline_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="at least one step"):
        Pipeline([])


def test_duplicate_step_names_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="'dup'"):
        _s("dup") >> _s("dup")
    with pytest.raises(ConfigurationError, match="unique"):
        (_s("a") >> _s("b")) >> (_s("c") >> _s("a"))


def test_same_step_object_twice_is_rejected() -> None:
    a = _s("a")
    with pytest.raises(ConfigurationError, match="'a'"):
        a >> a


def test_agent_without_run_is_rejected() -> None:
    class NoRun:
        pass

    class RunNotCallable:
        run = "nope"

    with pytest.raises(ConfigurationError, match="run"):
        Step("x", agent=NoRun())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="run"):
        Step("x", agent=RunNotCallable())  # type: ignore[arg-type]


def test_zero_parameter_callable_is_rejected() -> None:
    def nothing() -> int:
        return 1

    def only_context(*, context: Any) -> int:
        return 1

    with pytest.raises(ConfigurationError, match="first argument"):
        Step.from_callable(nothing)
    with pytest.raises(ConfigurationError, match="positional"):
        Step.from_callable(only_context)


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_step_needs_a_name(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        Step(name)


@pytest.mark.parametrize("retries", [-1, -5])
def test_negative_retries_are_rejected(retries: int) -> None:
    with pytest.raises(ConfigurationError, match="max_retries"):
        StepConfig(max_retries=retries)
    with pytest.raises(ConfigurationError, match="max_retries"):
        Step.from_callable(lambda x: x, name="s", max_retries=retries)


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -0.5])
def test_non_positive_timeout_is_rejected(timeout: float) -> None:
    with pytest.raises(ConfigurationError, match="timeout_s"):
        StepConfig(timeout_s=timeout)
    with pytest.raises(ConfigurationError, match="timeout_s"):
        Step.from_callable(lambda x: x, name="s", timeout_s=timeout)


def test_valid_step_config_is_kept() -> None:
    cfg = StepConfig(max_retries=3, timeout_s=0.5)
    s = Step.from_callable(lambda x: x, name="s", config=cfg)
    assert s.config is cfg
    assert (s.config.max_retries, s.config.timeout_s) == (3, 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"total_cost_usd_limit": 0},
        {"total_cost_usd_limit": -1.0},
        {"total_tokens_limit": 0},
        {"total_tokens_limit": -10},
    ],
)
def test_non_positive_usage_limits_are_rejected(kwargs: dict[str, Any]) -> None:
    field = next(iter(kwargs))
    with pytest.raises(ConfigurationError, match=field):
        UsageLimits(**kwargs)


def test_positive_usage_limits_are_accepted() -> None:
    limits = UsageLimits(total_cost_usd_limit=0.01, total_tokens_limit=1)
    assert limits.total_cost_usd_limit == 0.01
    assert limits.total_tokens_limit == 1
