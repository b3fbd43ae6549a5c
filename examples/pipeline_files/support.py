"""The Python parts of the support-ticket pipeline files beside this module.

``triage.yaml`` and ``clarify.yaml`` name these by import path (``support:normalize``);
the folder of a pipeline file is importable while it loads, so ``support`` is found
from any working directory. Everything here is offline: keyword rules stand in for a
classifier, a canned question for a conversation with the customer.
"""

from __future__ import annotations

from pydantic import Field

from flujo import PipelineContext


class Ticket(PipelineContext):
    """What the steps learn about one ticket."""

    kind: str = "question"
    details: list[str] = Field(default_factory=list)


_KINDS = {"refund": ("refund", "money back"), "complaint": ("broken", "unacceptable", "late")}


def normalize(text: str) -> str:
    """Collapse the whitespace of the ticket's text."""
    return " ".join(str(text).split())


def not_empty(text: str) -> bool:
    """A validator: a ticket says something."""
    return bool(text)


def classify(text: str, *, context: Ticket) -> str:
    """Record what kind of ticket this is; pass the text on."""
    lowered = text.lower()
    context.kind = next(
        (kind for kind, words in _KINDS.items() if any(w in lowered for w in words)), "question"
    )
    return text


def kind_of(text: str, context: Ticket) -> str:
    """The branch condition: the kind ``classify`` recorded."""
    return context.kind


def ask_details(text: str, *, context: Ticket) -> str:
    """Note what the support team would ask the customer (offline: a canned question)."""
    context.details = [*context.details, "order number?"]
    return text


def summarize(text: str, *, context: Ticket) -> str:
    """One line for the team: kind, text, and the open questions."""
    questions = f" (ask: {', '.join(context.details)})" if context.details else ""
    return f"[{context.kind}] {text}{questions}"


def refund(summary: str) -> str:
    """Hand a refund to billing."""
    return f"billing: {summary}"


def escalate(summary: str) -> str:
    """Hand a complaint to a person."""
    return f"escalated: {summary}"


def answer(summary: str) -> str:
    """Answer a question from the FAQ."""
    return f"answered from the FAQ: {summary}"
