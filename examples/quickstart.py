"""A first flujo pipeline: sync and async steps sharing a typed context.

    python examples/quickstart.py

Runs on the default runner, so each run is checkpointed to the embedded SQLite
file at $XDG_STATE_HOME/flujo/runs.db (~/.local/state/flujo/runs.db).
"""

from __future__ import annotations

import asyncio

from pydantic import Field

from flujo import Flujo, PipelineContext, step


class Review(PipelineContext):
    """What the steps of one run share."""

    words: int = 0
    flagged: list[str] = Field(default_factory=list)


@step
def normalize(text: str) -> str:
    """A sync step: runs inline on the event loop."""
    return " ".join(text.lower().split())


@step
async def check_words(text: str, *, context: Review) -> str:
    """An async step that records what it found in the context."""
    await asyncio.sleep(0)  # stands in for an API call
    words = text.split()
    context.words = len(words)
    context.flagged = [w for w in words if w in {"asap", "urgent"}]
    return text


@step(max_retries=1)
def verdict(text: str, *, context: Review) -> str:
    """A sync step reading the context; retried once if it raises."""
    if context.flagged:
        return f"needs a human: {', '.join(context.flagged)}"
    return f"ok ({context.words} words)"


pipeline = normalize >> check_words >> verdict  # `flujo graph examples/quickstart.py:pipeline`


def main() -> None:
    runner = Flujo(pipeline, context_model=Review)

    calm = runner.run("Please  review the draft when you can")
    print(f"{calm.status}: {calm.output}")
    assert calm.success and calm.output == "ok (7 words)"

    rushed = runner.run("Review this ASAP  it is URGENT")
    print(f"{rushed.status}: {rushed.output}")
    context = rushed.final_pipeline_context
    assert context is not None and context.flagged == ["asap", "urgent"]
    for result in rushed.step_history:
        print(f"  {result.name}: ok={result.success} in {result.latency_s * 1000:.3f} ms")

    failed = runner.run(None)  # normalize raises: the run fails with feedback, it does not crash
    print(f"{failed.status}: {failed.feedback}")
    assert not failed.success and failed.feedback is not None


if __name__ == "__main__":
    main()
