"""Step policies at work: retries with backoff, a validator, a fallback, a cache, usage limits.

    python examples/policies_demo.py

A support-ticket pipeline whose steps stand in for slow or unreliable services:

- ``classify`` is cached: the second run with the same ticket is a cache hit;
- ``fetch_account`` fails twice with a transient error, then succeeds on its third
  attempt (exponential backoff with jitter between attempts);
- ``draft_reply`` is checked by a validator; its first draft is rejected, so the
  attempt is retried;
- ``suggest_fix`` always fails, and its fallback answers instead;
- a tight ``UsageLimits`` budget stops a run after the step that crossed it.

Runs offline in well under a second, with ``persist_state=False`` (nothing is
written to disk). It asserts what it shows, so it exits non-zero on a regression.
"""

from __future__ import annotations

from flujo import Flujo, PipelineContext, Step, StepOutput, UsageLimits, ValidationResult
from flujo.domain.events import HookEvent, StepFinished


class Ticket(PipelineContext):
    """What the steps of one run share."""

    customer: str = "Ada"
    account_calls: int = 0
    """Changed by every attempt, kept only from the one that succeeded."""


class Calls:
    """How often each service was called (outside the context: failed attempts count too)."""

    classify = 0
    account = 0
    drafts = 0


def classify(text: str) -> StepOutput[dict[str, str]]:
    """An expensive model call: worth caching."""
    Calls.classify += 1
    label = "billing" if "invoice" in text.lower() else "other"
    return StepOutput({"text": text, "label": label}, cost_usd=0.02, tokens=120)


def fetch_account(ticket: dict[str, str], *, context: Ticket) -> dict[str, str]:
    """A flaky service: the first two calls of each run fail."""
    Calls.account += 1
    context.account_calls += 1  # a failed attempt's change is dropped with its attempt
    if Calls.account < 3:
        raise ConnectionError(f"account service timed out (call {Calls.account})")
    return {**ticket, "plan": "pro"}


def draft_reply(ticket: dict[str, str]) -> StepOutput[str]:
    """A model call whose first draft of each run forgets to greet the customer."""
    Calls.drafts += 1
    if Calls.drafts == 1:
        text = f"Your {ticket['label']} issue on the {ticket['plan']} plan is being handled."
    else:
        text = f"Hi Ada, your {ticket['label']} issue on the {ticket['plan']} plan is handled."
    return StepOutput(text, cost_usd=0.05, tokens=300)


def greets_customer(reply: str, *, context: Ticket) -> ValidationResult:
    """Validator: the reply must name the customer."""
    if context.customer not in reply:
        return ValidationResult(False, f"the reply does not greet {context.customer}")
    return ValidationResult(True)


def suggest_fix(reply: str) -> str:
    """The primary knowledge-base lookup, which is down today."""
    raise RuntimeError("knowledge base unavailable")


def canned_fix(reply: str) -> str:
    """The fallback: a safe canned answer."""
    return reply + " Meanwhile, see https://example.com/help/billing."


# Steps are immutable: the two runners below share this pipeline (and so does
# `flujo graph examples/policies_demo.py:pipeline`).
pipeline = (
    Step.from_callable(classify, cache=True, cache_ttl_s=3600)
    >> Step.from_callable(
        fetch_account, max_retries=3, backoff_s=0.002, backoff_factor=2, jitter=True
    )
    >> Step.from_callable(draft_reply, validators=[greets_customer], max_retries=1)
    >> Step.from_callable(suggest_fix).fallback(Step.from_callable(canned_fix))
)


def main() -> None:
    finished: list[str] = []

    def on_event(event: HookEvent) -> None:
        if isinstance(event, StepFinished):
            r = event.result
            how = "cache hit" if r.cache_hit else f"{r.attempts} attempt(s)"
            if r.fallback:
                how += f", fallback {r.fallback!r}"
            finished.append(f"  {event.step_name:<14} ok={r.success} {how}")

    ticket = "My invoice shows the wrong amount"
    runner = Flujo(pipeline, context_model=Ticket, hooks=[on_event], persist_state=False)

    # --- first run: every policy at work ----------------------------------------------
    first = runner.run(ticket)
    assert first.final_pipeline_context is not None
    assert first.final_pipeline_context.account_calls == 1  # only the successful attempt's
    print(f"first run: {first.status}, ${first.total_cost_usd:.2f}, {first.total_tokens} tokens")
    print("\n".join(finished))
    print(f"  output: {first.output}")
    assert first.success, first.feedback
    by_name = {r.name: r for r in first.step_history}
    assert not by_name["classify"].cache_hit
    assert by_name["fetch_account"].attempts == 3
    assert by_name["draft_reply"].attempts == 2  # the validator rejected the first draft
    assert by_name["suggest_fix"].fallback == "canned_fix"
    assert "knowledge base unavailable" in (by_name["suggest_fix"].feedback or "")
    assert first.output is not None and first.output.startswith("Hi Ada")
    assert (by_name["classify"].cost_usd, by_name["classify"].token_counts) == (0.02, 120)

    # --- second run, same ticket: classify comes from the cache ------------------------
    finished.clear()
    Calls.account = Calls.drafts = 0
    second = runner.run(ticket)
    print(f"\nsecond run: {second.status}, ${second.total_cost_usd:.2f}")
    print("\n".join(finished))
    assert second.success, second.feedback
    assert second.step_history[0].cache_hit and second.step_history[0].attempts == 0
    assert Calls.classify == 1  # the model was called once for two runs

    # --- a tight budget: the run stops after the step that crossed it ------------------
    finished.clear()
    budget = UsageLimits(total_cost_usd_limit=0.03)
    tight = Flujo(pipeline, context_model=Ticket, usage_limits=budget, persist_state=False)
    Calls.account = Calls.drafts = 0
    stopped = tight.run("Where is my invoice?")
    print(f"\nwith a $0.03 budget: {stopped.status}: {stopped.error}")
    print(f"  steps run: {[r.name for r in stopped.step_history]}")
    assert not stopped.success
    assert stopped.error is not None and stopped.error.startswith("UsageLimitExceededError")
    assert [r.name for r in stopped.step_history] == ["classify", "fetch_account", "draft_reply"]
    print("\nall policy checks passed")


if __name__ == "__main__":
    main()
