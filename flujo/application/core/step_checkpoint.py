"""A top-level step's checkpoint: its result stored with the saves it staged, as one unit.

The run loop (``flujo.application.core.pipeline_run``) calls ``commit_result`` after
every top-level step; ``flujo.application.core.commit`` makes the saves and the record
one unit, and ``RunState`` (``flujo.application.core.run_state``) gives the record's form.
"""

from __future__ import annotations

from typing import Any

from flujo.application.core.commit import commit_step, save_staged
from flujo.application.core.control_flow import Progress
from flujo.application.core.record_encoding import UnstorableOutputError
from flujo.application.core.run_state import RunState
from flujo.domain.dsl.step import Step
from flujo.domain.errors import StateError
from flujo.domain.models import StepResult

__all__ = ["commit_result"]


async def commit_result(
    run: RunState[Any],
    index: int,
    step: Step[Any, Any],
    result: StepResult,
    progress: Progress | None,
) -> StepResult:
    """Save what the step staged and write its checkpoint, as one unit (see ``commit``).

    A failed save fails the step: its result says why, and the record left says
    which saves landed.
    """
    parts = run.parts
    executor, state_backend = parts.executor, parts.state_backend
    lease = run.lease
    if lease is not None and not lease.fresh():
        await lease.confirm()  # raises RunLeasedError: never commit over a run another took
    session = executor.session
    staged = session.take_staged() if result.success and session.staged else []
    try:
        if state_backend is None:
            if staged:
                writer = f"{run.run_id}/{index}"
                await save_staged(session, staged, writer, step.config, executor.backoff)
            return result
        partial = progress.last if progress is not None and not result.success else None
        try:
            payload, payload_json = run.step_payload(result, partial)
        except UnstorableOutputError as exc:
            result, staged = exc.failed(result), []  # a failed step saves nothing it set()
            partial = progress.last if progress is not None else None
            payload, payload_json = run.step_payload(result, partial)
        if progress is not None and progress.pending and not result.success:
            return result  # the pending record of its last commit is what a resume settles
        if index == run.start.index and run.start.settled is not None:
            payload["settled"] = run.start.settled  # how the caller resolved a pending step
            payload_json = None  # dumped before the key was added
        if partial is not None and run.last_context is not None:
            context = run.last_context  # the context as the loop or map last committed it
        else:
            context = run.json(run.context, "the context")
        make = run.recorder(index, result, context, payload, payload_json)
        if (
            not staged
            and run.finishes
            and result.success
            and index == len(run.plan.pipeline.steps) - 1
            and not session.entries
        ):
            # The last step, and nothing referenced (so nothing to save at the end): its
            # record is written with the final header (FinalCheckpoint), one write less.
            run.final = (result, make, payload)
            return result
        if not staged:
            # Kept until it lands: the end of the run tries it once more (see `unrecorded`).
            run.unrecorded = (result, make, payload)
            # commit_step's first case, inline: one coroutine less on every checkpoint.
            await state_backend.checkpoint(make(payload, False))
        else:
            writer = f"{run.run_id}/{index}"
            await commit_step(
                state_backend, make, payload, staged, session, writer, step.config, executor.backoff
            )
        run.unrecorded = None
    except StateError as exc:
        if not staged:
            raise  # the checkpoint itself failed: the run cannot go on
        return StepResult.trusted(
            result.name,
            None,
            False,
            result.attempts,
            result.latency_s,
            f"{type(exc).__name__}: {exc}",
            result.cost_usd,
            result.token_counts,
            step_history=result.step_history,
        )
    return result
