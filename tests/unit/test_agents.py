"""Agents as steps: any object with async run(), and pydantic-ai agents, offline."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

from flujo import (
    ConfigurationError,
    Flujo,
    PipelineContext,
    PipelineResult,
    Step,
    StepOutput,
    UsageLimits,
)
from flujo.agents.pydantic_ai import PydanticAIAgent, agent_step
from flujo.application.core.executor_core import ExecutorCore

GUARD = 5.0


class Ctx(PipelineContext):
    user: str = "ann"


async def _run(pipeline: Any, data: Any, **kw: Any) -> PipelineResult[Any]:
    kw.setdefault("context_model", Ctx)
    runner = Flujo(pipeline, persist_state=False, **kw)
    return await asyncio.wait_for(runner.run_async(data), GUARD)


def _upper(x: str) -> str:
    return x.upper()


# --- any object with async run -------------------------------------------------------------


class KwargsAgent:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    async def run(self, data: Any, **kwargs: Any) -> str:
        self.calls.append((data, kwargs))
        return f"{data} for {kwargs['context'].user} at {kwargs['resources']['tenant']}"


class DataOnlyAgent:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def run(self, data: Any) -> str:
        self.calls.append(data)
        return f"<{data}>"


class ContextOnlyAgent:
    async def run(self, data: Any, *, context: Ctx) -> str:
        return f"{data}/{context.user}"


async def test_an_agent_with_kwargs_gets_the_context_and_resources() -> None:
    agent = KwargsAgent()
    resources = {"tenant": "acme"}
    greet: Step[Any, Any] = Step("greet", agent=agent)
    pipeline = greet >> Step.from_callable(_upper, name="shout")

    result = await _run(pipeline, "hi", resources=resources, initial_context_data={"user": "bo"})

    assert result.success, result.feedback
    assert result.step_history[0].output == "hi for bo at acme"
    assert result.output == "HI FOR BO AT ACME"  # the agent's output is the next step's input
    ((data, kwargs),) = agent.calls
    assert data == "hi"
    assert set(kwargs) == {"context", "resources"}
    assert kwargs["context"] is result.final_pipeline_context
    assert kwargs["resources"] is resources


async def test_an_agent_whose_run_takes_only_data_gets_only_data() -> None:
    agent = DataOnlyAgent()
    result = await _run(Step("wrap", agent=agent), "x", resources={"tenant": "acme"})
    assert result.success, result.feedback
    assert result.output == "<x>"
    assert agent.calls == ["x"]


async def test_an_agent_declaring_only_context_gets_only_context() -> None:
    result = await _run(Step("ctx", agent=ContextOnlyAgent()), "x", resources={"tenant": "acme"})
    assert result.success, result.feedback
    assert result.output == "x/ann"


async def test_an_agent_reporting_usage_with_step_output() -> None:
    class Priced:
        async def run(self, data: Any) -> StepOutput[str]:
            return StepOutput(f"done {data}", cost_usd=0.02, tokens=40)

    priced: Step[Any, Any] = Step("priced", agent=Priced())
    result = await _run(priced >> Step.from_callable(_upper, name="u"), 1)
    assert result.output == "DONE 1"
    assert (result.step_history[0].cost_usd, result.step_history[0].token_counts) == (0.02, 40)
    assert (result.total_cost_usd, result.total_tokens) == (0.02, 40)


async def test_a_failing_agent_fails_the_step_with_feedback() -> None:
    class Broken:
        async def run(self, data: Any) -> str:
            raise ConnectionError("agent backend unreachable")

    after: list[Any] = []
    result = await _run(
        Step("broken", agent=Broken()) >> Step.from_callable(after.append, name="after"), 1
    )
    assert not result.success and result.status == "failed"
    assert result.step_history[0].feedback == "ConnectionError: agent backend unreachable"
    assert after == []


async def test_an_agent_step_takes_step_options() -> None:
    class FailsOnce:
        calls = 0

        async def run(self, data: Any) -> Any:
            FailsOnce.calls += 1
            if FailsOnce.calls == 1:
                raise TimeoutError("transient")
            return data

    result = await _run(Step("retrying", agent=FailsOnce(), max_retries=1), "ok")
    assert result.success, result.feedback
    assert (result.output, result.step_history[0].attempts, FailsOnce.calls) == ("ok", 2, 2)


# --- pydantic-ai: outputs and usage --------------------------------------------------------


def _answer(text: str, input_tokens: int = 7, output_tokens: int = 3) -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(
            parts=[TextPart(text)],
            usage=RequestUsage(input_tokens=input_tokens, output_tokens=output_tokens),
        )

    return FunctionModel(respond)


def _prompts(messages: list[ModelMessage], kind: type[Any]) -> list[Any]:
    return [
        part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, kind)
    ]


async def test_test_model_output_flows_to_the_next_step_with_its_tokens() -> None:
    agent: Agent[None, str] = Agent(TestModel(custom_output_text="a short summary"))
    expected_tokens = (await agent.run("some long text")).usage.total_tokens
    assert expected_tokens > 0

    pipeline = agent_step(agent, name="summarize") >> Step.from_callable(_upper, name="shout")
    result = await _run(pipeline, "some long text")

    assert result.success, result.feedback
    summarized = result.step_history[0]
    assert summarized.name == "summarize" and summarized.output == "a short summary"
    assert result.output == "A SHORT SUMMARY"
    assert summarized.token_counts == expected_tokens
    assert result.total_tokens == expected_tokens
    assert summarized.cost_usd == 0.0  # no price given: pydantic-ai reports tokens only


async def test_function_model_usage_and_price_give_tokens_and_cost() -> None:
    def price(usage: Any) -> float:
        return float(usage.input_tokens * 0.001 + usage.output_tokens * 0.002)

    step_ = agent_step(Agent(_answer("ok", 7, 3)), name="ask", price=price)
    result = await _run(step_ >> Step.from_callable(_upper, name="u"), "q")

    assert result.success, result.feedback
    asked = result.step_history[0]
    assert asked.token_counts == 10
    assert asked.cost_usd == pytest.approx(0.013)
    assert result.total_tokens == 10
    assert result.total_cost_usd == pytest.approx(0.013)


async def test_tokens_of_every_model_request_in_an_agent_run_count() -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not _prompts(messages, ToolReturnPart):
            call = ToolCallPart(tool_name="lookup", args={"q": "x"})
            return ModelResponse(parts=[call], usage=RequestUsage(input_tokens=5, output_tokens=1))
        return ModelResponse(
            parts=[TextPart("found")], usage=RequestUsage(input_tokens=6, output_tokens=2)
        )

    agent: Agent[None, str] = Agent(FunctionModel(respond))

    @agent.tool_plain
    def lookup(q: str) -> str:
        return f"result for {q}"

    result = await _run(agent_step(agent, name="search"), "find x")
    assert result.success, result.feedback
    assert result.output == "found"
    assert result.step_history[0].token_counts == 14


class Summary(BaseModel):
    title: str
    words: int


async def test_structured_output_reaches_the_next_step_as_a_model() -> None:
    agent: Agent[None, Summary] = Agent(
        TestModel(custom_output_args={"title": "T", "words": 3}), output_type=Summary
    )
    got: list[Any] = []

    def use(summary: Summary) -> int:
        got.append(summary)
        return summary.words

    result = await _run(agent_step(agent, name="s") >> Step.from_callable(use, name="use"), "x")
    assert result.success, result.feedback
    assert got == [Summary(title="T", words=3)]
    assert result.output == 3


async def test_the_step_input_becomes_the_prompt() -> None:
    prompts: list[Any] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompts.extend(_prompts(messages, UserPromptPart))
        return ModelResponse(parts=[TextPart("ok")])

    pipeline = (
        agent_step(Agent(FunctionModel(respond)), name="text")
        >> Step.from_callable(lambda x: {"doc": "d1", "n": 2}, name="make-dict")
        >> agent_step(Agent(FunctionModel(respond)), name="data")
        >> Step.from_callable(lambda x: Summary(title="t", words=1), name="make-model")
        >> agent_step(Agent(FunctionModel(respond)), name="model")
    )
    result = await _run(pipeline, "plain question")

    assert result.success, result.feedback
    assert prompts[0] == "plain question"
    assert json.loads(prompts[1]) == {"doc": "d1", "n": 2}
    assert json.loads(prompts[2]) == {"title": "t", "words": 1}


async def test_run_usage_limits_stop_the_run_on_agent_tokens() -> None:
    third: list[Any] = []
    pipeline = (
        agent_step(Agent(_answer("one", 7, 3)), name="first")
        >> agent_step(Agent(_answer("two", 7, 3)), name="second")
        >> Step.from_callable(third.append, name="third")
    )
    result = await _run(pipeline, "q", usage_limits=UsageLimits(total_tokens_limit=15))

    assert not result.success and result.status == "failed"
    assert [r.name for r in result.step_history] == ["first", "second"]
    assert result.total_tokens == 20
    assert result.error is not None
    assert "UsageLimitExceededError" in result.error and "20 tokens" in result.error
    assert third == []


async def test_a_step_usage_limit_fails_an_agent_step_that_spends_too_much() -> None:
    step_ = agent_step(
        Agent(_answer("big", 70, 30)),
        name="big",
        usage_limits=UsageLimits(total_tokens_limit=50),
    )
    result = await _run(step_, "q")
    assert not result.success
    assert "UsageLimitExceededError" in (result.feedback or "")
    assert result.step_history[0].token_counts == 100  # what was spent is still reported


# --- pydantic-ai: deps ---------------------------------------------------------------------


async def test_deps_built_from_context_and_resources_reach_the_system_prompt() -> None:
    system_prompts: list[str] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        system_prompts.extend(_prompts(messages, SystemPromptPart))
        return ModelResponse(parts=[TextPart("hello")])

    agent: Agent[dict[str, str], str] = Agent(FunctionModel(respond), deps_type=dict[str, str])

    @agent.system_prompt
    def who(ctx: RunContext[dict[str, str]]) -> str:
        return f"You help {ctx.deps['user']} of {ctx.deps['tenant']}."

    step_ = agent_step(
        agent,
        name="chat",
        deps=lambda context, resources: {"user": context.user, "tenant": resources["tenant"]},
    )
    result = await _run(
        step_, "hi", resources={"tenant": "acme"}, initial_context_data={"user": "zoe"}
    )

    assert result.success, result.feedback
    assert system_prompts == ["You help zoe of acme."]


class Db:
    """A stand-in for a resource an agent's tools use."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def find(self, q: str) -> str:
        self.queries.append(q)
        return f"row for {q}"


async def test_without_a_deps_builder_the_agent_gets_the_resources_in_its_tools() -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = _prompts(messages, ToolReturnPart)
        if not returns:
            return ModelResponse(parts=[ToolCallPart(tool_name="query", args={"q": "k1"})])
        return ModelResponse(parts=[TextPart(f"answer: {returns[0]}")])

    agent: Agent[Db, str] = Agent(FunctionModel(respond), deps_type=Db)

    @agent.tool
    def query(ctx: RunContext[Db], q: str) -> str:
        return ctx.deps.find(q)

    db = Db()
    result = await _run(agent_step(agent, name="ask-db"), "question", resources=db)

    assert result.success, result.feedback
    assert result.output == "answer: row for k1"
    assert db.queries == ["k1"]


# --- pydantic-ai: failures and options -----------------------------------------------------


async def test_a_failing_model_fails_the_step_with_feedback() -> None:
    def down(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise RuntimeError("model is down")

    after: list[Any] = []
    pipeline = agent_step(Agent(FunctionModel(down)), name="ask") >> Step.from_callable(
        after.append, name="after"
    )
    result = await _run(pipeline, "q")

    assert not result.success and result.status == "failed"
    (failed,) = result.step_history
    assert failed.name == "ask" and not failed.success
    assert "RuntimeError" in (failed.feedback or "") and "model is down" in (failed.feedback or "")
    assert after == []


async def test_agent_step_takes_step_options_like_max_retries() -> None:
    calls = {"n": 0}

    def flaky(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("reset by peer")
        return ModelResponse(parts=[TextPart("second time lucky")])

    step_ = agent_step(Agent(FunctionModel(flaky)), name="ask", max_retries=1)
    assert step_.config.max_retries == 1
    result = await _run(step_, "q")

    assert result.success, result.feedback
    assert result.output == "second time lucky"
    assert result.step_history[0].attempts == 2 and calls["n"] == 2


async def test_agent_step_validators_check_the_agent_output() -> None:
    step_ = agent_step(
        Agent(TestModel(custom_output_text="way too long an answer")),
        name="short",
        validators=[lambda out: len(out) < 10],
    )
    result = await _run(step_, "q")
    assert not result.success
    assert "ValidationFailedError" in (result.feedback or "")


def test_the_adapter_rejects_what_is_not_an_agent_or_a_bad_price() -> None:
    with pytest.raises(ConfigurationError, match="expected a pydantic-ai Agent"):
        agent_step(object(), name="x")
    with pytest.raises(ConfigurationError, match="price must be callable"):
        PydanticAIAgent(Agent(TestModel()), price=0.01)  # type: ignore[arg-type]


# --- agents inside control flow ------------------------------------------------------------


async def test_agent_steps_in_a_map_sum_their_tokens() -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        (prompt,) = _prompts(messages, UserPromptPart)
        return ModelResponse(
            parts=[TextPart(f"summary of {prompt}")],
            usage=RequestUsage(input_tokens=4, output_tokens=1),
        )

    summarize = agent_step(Agent(FunctionModel(respond)), name="summarize")
    result = await _run(Step.map_over(summarize, concurrency=2), ["d1", "d2", "d3"])

    assert result.success, result.feedback
    assert result.output == ["summary of d1", "summary of d2", "summary of d3"]
    assert result.step_history[0].token_counts == 15
    assert result.total_tokens == 15


async def test_agent_usage_reaches_the_usage_meter_once_even_inside_a_map() -> None:
    def price(usage: Any) -> float:
        return float(usage.total_tokens) / 1000

    executor = ExecutorCore()
    ask = agent_step(Agent(_answer("ok", 7, 3)), name="ask", price=price)

    single = await executor.execute(ask, "q")
    assert single.success, single.feedback
    cost, tokens = executor.usage_meter.totals()
    assert cost == pytest.approx(0.01) and tokens == 10

    mapped = await executor.execute(Step.map_over(ask, concurrency=2), ["a", "b", "c"])
    assert mapped.success, mapped.feedback
    assert mapped.cost_usd == pytest.approx(0.03) and mapped.token_counts == 30
    # The map's own result is not metered again on top of its nested steps.
    cost, tokens = executor.usage_meter.totals()
    assert cost == pytest.approx(0.04) and tokens == 40
