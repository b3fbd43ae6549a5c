"""Importable parts for pipeline files in tests: callables, agents, context models, Steps.

Pipeline files name these by import path (``tests.unit.file_parts:clean``); the round
trip tests build Python pipelines from them and write them out.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from flujo import PipelineContext, Step, ValidationResult, step
from flujo.domain.reducers import append


class Notes(PipelineContext):
    kind: str = "refund"
    phase: str | None = None
    docs: list[str] = []
    seen: list[str] = []


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
