"""Control flow and agents together: a map, a parallel, a branch and a loop, offline.

    pip install -e '.[ai]'   # the `ai` extra: pydantic-ai, which this example uses
    python examples/control_flow_demo.py

A document-triage pipeline. Its "model" is a pydantic-ai agent on a
``FunctionModel`` (no network, no API key), wrapped with ``agent_step`` so its
tokens and cost reach the results:

- ``documents`` maps over the documents, three at a time: each is summarized by
  the agent, then labelled ``urgent`` or ``routine``; outputs keep input order;
- ``stats`` runs two branches in parallel, each on its own copy of the context,
  writing different fields (merged without conflict), and ``merge`` builds one
  report from their outputs;
- ``route`` branches on that report: urgent documents are escalated, else
  archived;
- ``headline`` loops the agent until the headline is short, and a validator checks
  what the loop ended with.

Then the same map runs with durable state in memory: a summary fails once, the run
fails, and ``resume_async`` finishes it without summarizing the finished documents
again.

Runs in a few seconds, writes nothing to disk, and asserts what it shows: it exits
non-zero on a regression.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

try:
    from pydantic_ai import Agent, models
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, UserPromptPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.usage import RequestUsage, RunUsage
except ModuleNotFoundError as missing:
    if not (missing.name or "").startswith("pydantic_ai"):
        raise
    raise SystemExit(
        "examples/control_flow_demo.py needs pydantic-ai, which flujo's `ai` extra installs:\n"
        "    pip install -e '.[ai]'     (from a clone of flujo)\n"
        "    pip install 'flujo[ai]'    (from a package index)"
    ) from None

from flujo import Flujo, PipelineContext, Step, ValidationResult, step
from flujo.agents.pydantic_ai import agent_step
from flujo.state import InMemoryBackend

models.ALLOW_MODEL_REQUESTS = False  # nothing here may reach a real model

DOCUMENTS = [
    "Server room temperature alarm. The cooling unit failed overnight and needs repair.",
    "Quarterly newsletter draft. Please review the photos and the layout.",
    "Invoice 1042 is overdue. Payment reminder for the cleaning contract.",
    "URGENT: customer data export failing since noon. Several customers affected.",
    "Team lunch on Friday. Vote for the restaurant by Thursday.",
]
MODEL_DELAY_S = 0.05


class Triage(PipelineContext):
    """What the steps of one run share."""

    total_words: int = 0
    urgent_count: int = 0


class Model:
    """A fake LLM: the first sentence as the summary, or half the words for a headline."""

    calls = 0
    in_flight = 0
    peak = 0  # the most calls in flight at once
    fail_on: str | None = None  # a prompt fragment that makes one call fail

    @classmethod
    async def respond(cls, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        cls.calls += 1
        prompt = next(
            part.content
            for message in reversed(messages)
            for part in message.parts
            if isinstance(part, UserPromptPart)
        )
        assert isinstance(prompt, str)
        if cls.fail_on is not None and cls.fail_on in prompt:
            cls.fail_on = None  # fails once, like a provider's hiccup
            raise ConnectionError("model endpoint reset the connection")
        cls.in_flight += 1
        cls.peak = max(cls.peak, cls.in_flight)
        await asyncio.sleep(MODEL_DELAY_S)  # the network round trip
        cls.in_flight -= 1
        words = prompt.split()
        if prompt.startswith("headline:"):
            words = words[1:]
            answer = " ".join(words[: max(1, len(words) // 2)])
        else:
            answer = prompt.split(".")[0].strip() + "."
        return ModelResponse(
            parts=[TextPart(answer)],
            usage=RequestUsage(input_tokens=len(words) + 20, output_tokens=len(answer.split())),
        )


def price(usage: RunUsage) -> float:
    """Dollars for one agent run: $1 per million input tokens, $4 per million output."""
    return usage.input_tokens * 1e-6 + usage.output_tokens * 4e-6


agent = Agent(FunctionModel(Model.respond), instructions="Summarize in one sentence.")
summarize = agent_step(agent, name="summarize", price=price, max_retries=1)


@step
def label(summary: str) -> dict[str, str]:
    """A cheap rule after the model: urgent or routine."""
    urgent = any(word in summary.lower() for word in ("urgent", "alarm", "failing", "failed"))
    return {"summary": summary, "kind": "urgent" if urgent else "routine"}


documents = Step.map_over(summarize >> label, concurrency=3, name="documents")


@step
def count_words(items: list[dict[str, str]], *, context: Triage) -> int:
    context.total_words = sum(len(item["summary"].split()) for item in items)
    return context.total_words


@step
def count_urgent(items: list[dict[str, str]], *, context: Triage) -> list[str]:
    urgent = [item["summary"] for item in items if item["kind"] == "urgent"]
    context.urgent_count = len(urgent)
    return urgent


def report(outputs: dict[str, Any]) -> dict[str, Any]:
    """Merge the branch outputs into one report."""
    return {"words": outputs["words"], "urgent": outputs["urgent"]}


stats = Step.parallel({"words": count_words, "urgent": count_urgent}, merge=report, name="stats")


@step
def escalate(found: dict[str, Any]) -> str:
    return "escalate: " + " ".join(found["urgent"])


@step
def archive(found: dict[str, Any]) -> str:
    return "archive: nothing urgent"


route = Step.branch_on(
    lambda found, context: "urgent" if found["urgent"] else "routine",
    {"urgent": escalate, "routine": archive},
    name="route",
)


@step
def as_headline_prompt(text: str) -> str:
    for prefix in ("headline: ", "escalate: ", "archive: "):
        text = text.removeprefix(prefix)
    return "headline: " + text


def at_most_five_words(text: str) -> ValidationResult:
    words = len(text.split())
    return ValidationResult(words <= 5, f"{words} words, at most 5")


headline = Step.loop_until(
    as_headline_prompt >> agent_step(agent, name="shorten", price=price),
    lambda text, context: len(text.split()) <= 3,
    max_loops=4,
    on_max_loops="return",  # give up shortening after 4 rounds; the validator judges
    validators=[at_most_five_words],
    name="headline",
)

pipeline = documents >> stats >> route >> headline


async def triage() -> None:
    """Run the whole pipeline once and check every construct's outcome."""
    runner = Flujo(pipeline, context_model=Triage, persist_state=False)
    started = time.perf_counter()
    result = await runner.run_async(DOCUMENTS)
    elapsed = time.perf_counter() - started
    assert result.success, result.feedback
    by_name = {r.name: r for r in result.step_history}
    print(
        f"triage: {elapsed * 1000:.0f} ms, {result.total_tokens} tokens, "
        f"${result.total_cost_usd:.6f}"
    )

    # The map: five documents, three at a time, outputs in input order.
    mapped = by_name["documents"]
    kinds = [item["kind"] for item in mapped.output]
    print("documents:", kinds)
    assert kinds == ["urgent", "routine", "routine", "urgent", "routine"]
    assert [r.name for r in mapped.step_history] == [f"documents[{i}]" for i in range(5)]
    assert [s.name for s in mapped.step_history[0].step_history] == ["summarize", "label"]
    print("model calls in flight at once, at most:", Model.peak)
    assert 2 <= Model.peak <= 3  # concurrent, and never more than concurrency=3

    # The parallel: both branches' fields merged, and the merge's report.
    stats_result = by_name["stats"]
    context = result.final_pipeline_context
    print("stats:", stats_result.output["words"], "words,", context.urgent_count, "urgent")
    assert stats_result.output["words"] == context.total_words > 0
    assert context.urgent_count == len(stats_result.output["urgent"]) == 2

    # The branch: urgent documents were found, so they were escalated.
    routed = by_name["route"]
    print(routed.output)
    assert routed.output.startswith("escalate: Server room") and routed.step_history[0].name == (
        "escalate"
    )

    # The loop: shortened by the agent until at most three words; the validator passed.
    looped = by_name["headline"]
    rounds = len(looped.step_history) // 2  # two steps per iteration
    print(f"headline: {looped.output!r} after {rounds} rounds")
    assert looped.output == "Server room" and rounds == 2 and looped.attempts == 1
    assert looped.token_counts > 0 and looped.cost_usd > 0  # the agent's usage, summed

    # Usage: every model call's tokens reach the run's totals.
    assert result.total_tokens == sum(r.token_counts for r in result.step_history)


async def resume_a_map() -> None:
    """A map whose fourth summary fails once; the resumed run skips the finished ones."""
    Model.fail_on = "customer data export"  # the fourth document
    summarize_once = summarize.with_config(max_retries=0)  # no retry: let the run fail
    runner = Flujo(
        Step.map_over(summarize_once >> label, name="documents"),  # one at a time
        state_backend=InMemoryBackend(),  # durable state, kept in memory
        pipeline_name="triage-map",
    )
    async with runner:
        failed = await runner.run_async(DOCUMENTS, run_id="map-1")
        print("first run:", failed.status, "-", failed.feedback)
        assert failed.status == "failed" and "ConnectionError" in (failed.feedback or "")

        Model.calls = 0
        resumed = await runner.resume_async("map-1")
    done = [r.name for r in resumed.step_history[0].step_history]
    print("resumed:", resumed.status, "- ran", done, "with", Model.calls, "model calls")
    assert resumed.success and len(resumed.output) == len(DOCUMENTS)
    assert done == ["documents[3]", "documents[4]"] and Model.calls == 2


async def main() -> None:
    """Run both parts."""
    await triage()
    await resume_a_map()


if __name__ == "__main__":
    asyncio.run(main())
