"""Importable parts for pipeline files in tests: callables, agents, context models, Steps.

Pipeline files name these by import path (``tests.unit.file_parts:clean``); the round
trip tests build Python pipelines from them and write them out.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flujo import Pipeline, PipelineContext, Step, UsageLimits, ValidationResult, step
from flujo.domain.dsl.files.uses import copy_step
from flujo.domain.reducers import append


class Notes(PipelineContext):
    kind: str = "refund"
    phase: str | None = None
    docs: list[str] = Field(default_factory=list)
    seen: list[Any] = Field(default_factory=list)


class MoreNotes(Notes):
    extra: int = 0


class Other(PipelineContext):
    unrelated: int = 0


class Approval(BaseModel):
    approved: bool


def clean(text: str) -> str:
    return " ".join(str(text).split())


def shout(text: str) -> str:
    return str(text).upper()


async def count(text: str, *, context: Notes) -> int:
    context.seen = [*context.seen, text]
    return len(str(text).split())


def needs_other(text: str, *, context: Other) -> str:
    return text


def two_inputs(text: str, extra: str) -> str:
    return text + extra


def no_input() -> str:
    return "nothing"


def kind(data: Any, context: Notes) -> str:
    return context.kind


def short(text: Any, context: Any) -> bool:
    return len(str(text)) < 10


def one_arg(data: Any) -> str:
    return "a"


def non_empty(output: Any) -> bool:
    return bool(output)


def checked(output: Any, *, context: Notes) -> ValidationResult:
    return ValidationResult(bool(output), "empty")


def strip(value: Any) -> Any:
    return str(value).strip()


def key_of(data: Any, context: Any) -> str:
    return str(data)


def first_two(outputs: dict[str, Any]) -> list[Any]:
    return list(outputs.values())[:2]


def docs_of(data: Any, context: Notes) -> list[str]:
    return context.docs


def pick_both(data: Any, context: Any) -> list[str]:
    return ["a", "b"]


class Echo:
    """An agent: an object with ``async run``."""

    async def run(self, data: Any, **kwargs: Any) -> Any:
        return data


echo = Echo()

decorated = step(max_retries=2)(clean)
"""A Step made by @step (its config is the base the file's policies go over)."""

spare = Step.from_callable(shout, name="spare")
with_fallback = Step.from_callable(clean, name="with_fallback").fallback(spare)

NOT_CALLABLE = 42
a_pipeline = Step.from_callable(clean) >> Step.from_callable(shout)
reducer = append


@step(max_retries=2, timeout_s=5)
def polite(text: str) -> str:
    return f"please, {text}"


@step
def guarded(text: str) -> str:
    return text


guarded.fallback(spare)  # the module's Step carries a fallback of its own


def every_kind() -> Pipeline[Any, Any]:
    """A pipeline holding every kind of step and policy a pipeline file can write."""
    leaf = Step.from_callable(
        clean,
        name="tidy",
        max_retries=3,
        timeout_s=2.5,
        run_in_thread=True,
        backoff_s=0.1,
        backoff_factor=3.0,
        max_backoff_s=4.0,
        jitter=False,
        cache="strict",
        cache_ttl_s=60.0,
        version="7",
        cache_key_fields=["kind"],
        validators=[non_empty, checked],
        input_processors=[strip],
        output_processors=[strip],
        usage_limits=UsageLimits(total_cost_usd_limit=0.5),
    ).fallback(Step.from_callable(shout, name="loud"))
    keyed = Step.from_callable(shout, name="keyed", cache=True, cache_key_fn=key_of)
    machine = Step.state_machine(
        {"a": Step.from_callable(clean, name="sa"), "b": Step.from_callable(shout, name="sb")},
        start="a",
        end=["b", "done"],
        transitions={"a": {"again": "a", "on": "b", "stop": "done"}},
        max_transitions=6,
        name="machine",
    )
    chosen = Step.state_machine(
        {"ask": Step.from_callable(count, name="ask")},
        start="ask",
        end=["done"],
        transitions={"ask": ["ask", "done"]},
        next_state_from="phase",
        max_transitions=3,
        name="chosen",
    )
    return (
        leaf
        >> keyed
        >> Step("agent", agent=echo, max_retries=1)
        >> polite
        >> copy_step(polite.with_config(timeout_s=1.0, max_retries=0), "polite_once")
        >> guarded.with_config(max_retries=4)
        >> Step.branch_on(
            kind,
            {
                "refund": Step.from_callable(clean, name="r"),
                "other": Step.from_callable(clean, name="o1")
                >> Step.from_callable(shout, name="o2"),
            },
            default=Step.from_callable(shout, name="d"),
            name="route",
            max_retries=1,
        )
        >> Step.loop_until(
            Step.from_callable(clean, name="body"),
            short,
            max_loops=4,
            on_max_loops="return",
            name="loop",
        )
        >> Step.parallel(
            {"a": Step.from_callable(clean, name="pa"), "b": Step.from_callable(shout, name="pb")},
            merge=first_two,
            on_branch_failure="collect",
            reference_writers={"notes": "a"},
            name="fan",
        )
        >> Step.map_over(
            Step.from_callable(clean, name="m1"), items_from="docs", concurrency=3, name="each"
        )
        >> Step.map_over(Step.from_callable(clean, name="m2"), items_from=docs_of, name="each_fn")
        >> machine
        >> chosen
        >> Step.router(
            pick_both,
            {"a": Step.from_callable(clean, name="ra"), "b": Step.from_callable(shout, name="rb")},
            merge=first_two,
            name="pick",
        )
        >> Step.human_in_the_loop("Ship it?", Approval, name="gate")
    )
