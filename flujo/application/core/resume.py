"""Turning a stored run back into the point a run continues from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from flujo.application.core.lease import Lease
from flujo.application.core.owed import settle_owed
from flujo.application.core.pending import OnPending, settle_pending
from flujo.application.core.run_state import UNSERIALIZABLE, RunParts, RunStart
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import HumanStep
from flujo.domain.errors import ResumeError, RunNotFoundError, StateCorruptError
from flujo.domain.interfaces import (
    SCHEMA_VERSION,
    RunRecord,
    Serializer,
    StateBackend,
    StateProvider,
    StepRecord,
)
from flujo.domain.models import DamagedRun, PipelineContext, RunInfo, StepResult

__all__ = ["MISSING", "claim_and_restore", "restore", "run_info", "run_infos"]

ContextT = TypeVar("ContextT", bound=PipelineContext)

MISSING: Any = object()
"""Marker for "no human input was given"."""


def _corrupt(run_id: str, detail: str, column: str, found: object = "") -> StateCorruptError:
    return StateCorruptError(
        f"stored state of run {run_id!r} cannot be read: {detail}",
        run_id=run_id,
        column=column,
        found=str(found),
    )


def _load(serializer: Serializer, blob: bytes, run_id: str, what: str, column: str) -> Any:
    try:
        return serializer.loads(blob)
    except (ValueError, TypeError) as exc:
        raise _corrupt(run_id, f"{what} is not valid JSON ({exc})", column, blob[:80]) from exc


def decode_steps(
    records: Sequence[StepRecord], serializer: Serializer, run_id: str
) -> list[StepResult]:
    """Return the step results stored in ``records``."""
    results = []
    for record in records:
        payload = _load(serializer, record.result, run_id, f"step {record.index}", "result")
        try:
            results.append(StepResult.model_validate(payload))
        except ValidationError as exc:
            raise _corrupt(
                run_id, f"step {record.index} is malformed ({exc})", "result", record.result[:80]
            ) from exc
    return results


def run_info(
    record: RunRecord, serializer: Serializer, steps: Sequence[StepRecord] = ()
) -> RunInfo:
    """Describe a stored run."""
    return RunInfo(
        run_id=record.run_id,
        pipeline_name=record.pipeline_name,
        pipeline_version=record.pipeline_version,
        status=record.status,
        steps_completed=record.step_index,
        created_at=datetime.fromtimestamp(record.created_at, tz=UTC),
        updated_at=datetime.fromtimestamp(record.updated_at, tz=UTC),
        error=record.error,
        pause_message=record.pause_message,
        step_history=decode_steps(steps, serializer, record.run_id),
        owner=record.owner,
        lease_until=(
            None
            if record.lease_until is None
            else datetime.fromtimestamp(record.lease_until, tz=UTC)
        ),
    )


def run_infos(
    records: Sequence[RunRecord | DamagedRun], serializer: Serializer
) -> list[RunInfo | DamagedRun]:
    """Describe listed runs; one a backend listed as damaged stays a ``DamagedRun``."""
    return [r if isinstance(r, DamagedRun) else run_info(r, serializer) for r in records]


def _check_records(
    run_id: str, steps: Sequence[StepRecord], index: int, pipeline: Pipeline[Any, Any]
) -> None:
    """Check that the first ``index`` records are the pipeline's steps, each successful."""
    for position, stored in enumerate(steps[:index]):
        if stored.index != position or not stored.success:
            raise _corrupt(
                run_id,
                f"it says {index} steps completed but step {position} has no successful record",
                "step_index",
                index,
            )
        expected = pipeline.steps[position].name
        if stored.name != expected:
            raise ResumeError(
                f"run {run_id!r} ran step {position} as {stored.name!r}, but this pipeline's "
                f"step {position} is {expected!r}: resume it with the pipeline it ran with"
            )


def _partial(
    steps: Sequence[StepRecord], index: int, serializer: Serializer, run_id: str
) -> dict[str, Any] | None:
    """Return the progress a loop or map at ``index`` stored before the run stopped."""
    if index >= len(steps) or steps[index].index != index or steps[index].success:
        return None
    payload = _load(serializer, steps[index].result, run_id, f"step {index}", "result")
    partial = payload.get("partial") if isinstance(payload, dict) else None
    return partial if isinstance(partial, dict) else None


def restore(
    record: RunRecord,
    steps: Sequence[StepRecord],
    *,
    pipeline: Pipeline[Any, Any],
    pipeline_name: str,
    context_model: type[ContextT],
    serializer: Serializer,
    human_input: Any = MISSING,
) -> RunStart[ContextT]:
    """Return where the stored run continues; ``ResumeError`` if it cannot."""
    run_id = record.run_id
    if record.status == "completed":
        raise ResumeError(f"run {run_id!r} has already completed; there is nothing to resume")
    if record.pipeline_name != pipeline_name:
        raise ResumeError(
            f"run {run_id!r} belongs to pipeline {record.pipeline_name!r}, "
            f"not {pipeline_name!r}; resume it with the runner of that pipeline"
        )
    if record.schema_version > SCHEMA_VERSION:
        raise _corrupt(
            run_id,
            f"it has schema version {record.schema_version}, newer than {SCHEMA_VERSION}",
            "schema_version",
            record.schema_version,
        )
    index = record.step_index
    if not 0 <= index <= len(pipeline.steps) or len(steps) < index:
        raise _corrupt(
            run_id,
            f"it says {index} steps completed but holds {len(steps)} step records",
            "step_index",
            index,
        )
    _check_records(run_id, steps, index, pipeline)
    history = decode_steps(steps[:index], serializer, run_id)
    if index == 0:
        data = _load(serializer, record.input, run_id, "the run input", "input")
        context_blob = record.context
    else:
        data = history[-1].output
        context_blob = steps[index - 1].context
        answered = pipeline.steps[index - 1]
        if isinstance(answered, HumanStep):
            # Stored as JSON: the next step gets the validated model back, as on the first pass.
            data = answered.validate_input(data)
    partial = _partial(steps, index, serializer, run_id)
    if partial is not None:
        context_blob = steps[index].context  # the context as the loop or map left it
    if isinstance(data, dict) and UNSERIALIZABLE in data:
        raise ResumeError(
            f"run {run_id!r} cannot resume: the input of step {index} was not JSON-serializable "
            "when it was stored"
        )
    try:
        context = context_model.model_validate(
            _load(serializer, context_blob, run_id, "the context", "context")
        )
    except ValidationError as exc:
        raise _corrupt(
            run_id,
            f"the stored context does not fit {context_model.__name__} ({exc})",
            "context",
            context_blob[:80],
        ) from exc
    start = RunStart(
        run_id=run_id,
        context=context,
        data=data,
        index=index,
        history=history,
        created_at=record.created_at,
        input_json=record.input,
        context_json=record.context,
        partial=partial,
    )
    waiting = pipeline.steps[index] if index < len(pipeline.steps) else None
    if record.status == "paused":
        if not isinstance(waiting, HumanStep):
            raise _corrupt(
                run_id,
                f"it is paused at step {index}, which is not a human step",
                "status",
                record.status,
            )
        if human_input is MISSING:
            raise ResumeError(
                f"run {run_id!r} is paused at step {waiting.name!r} waiting for: "
                f"{waiting.message} — pass human_input=... to resume_async"
            )
        start.human_output = waiting.validate_input(human_input)
        start.has_human_output = True
    elif human_input is not MISSING:
        raise ResumeError(f"run {run_id!r} is {record.status}, not paused: it takes no human input")
    return start


async def claim_and_restore(
    run_id: str,
    *,
    backend: StateBackend,
    parts: RunParts,
    providers: Mapping[str, StateProvider[Any]],
    pipeline: Pipeline[Any, Any],
    pipeline_name: str,
    context_model: type[ContextT],
    human_input: Any,
    on_pending: OnPending | None,
) -> tuple[Lease, RunStart[ContextT]]:
    """Take the stored run's lease, then settle what it left unsettled and restore it.

    ``RunLeasedError`` when another process holds the run. Nothing else is
    read or written before the lease is taken; if the run cannot resume
    (``ResumeError``, ``StateConflictError``, ...) the lease is given back.
    """
    try:
        lease, claimed = await Lease.claim(
            backend, run_id, parts.owner, parts.lease, parts.clock, parts.telemetry
        )
    except RunNotFoundError:
        raise RunNotFoundError(f"no run {run_id!r} in this runner's state backend") from None
    try:
        record, steps, settled = await settle_pending(
            claimed,
            await backend.load_steps(run_id),
            providers=providers,
            backend=backend,
            serializer=parts.serializer,
            on_pending=on_pending,
        )
        start = restore(
            record,
            steps,
            pipeline=pipeline,
            pipeline_name=pipeline_name,
            context_model=context_model,
            serializer=parts.serializer,
            human_input=human_input,
        )
        start.settled = settled
        start.owed = await settle_owed(
            run_id,
            record.owed,
            providers=providers,
            serializer=parts.serializer,
            on_pending=on_pending,
        )
        start.owed_json = record.owed if start.owed else None
    except BaseException:
        await lease.release(claimed)
        raise
    return lease, start
