"""Settling a step whose commit was interrupted: whether its provider saves landed.

A pending step record (see ``flujo.application.core.commit``) lists the writes
its step was making. On resume each is checked: a save that returned is landed; for a
``VersionedStateProvider``, the stored version and writer tag tell; otherwise a save
that raised is taken as not landed.
Every write landed: the record is committed and the step does not run again.
None landed: the step runs again (the providers hold the values from before it).
Some landed, or flujo cannot tell: ``StateConflictError`` names the step and the
references, unless the caller chose ``on_pending="rerun"`` or ``"accept"``; the
choice is recorded in the step's next record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from flujo.domain.errors import StateConflictError, StateCorruptError
from flujo.domain.interfaces import (
    RunRecord,
    Serializer,
    StateBackend,
    StateProvider,
    StepRecord,
    VersionedStateProvider,
)

__all__ = ["OnPending", "settle_pending"]

OnPending = Literal["rerun", "accept"]
"""How to resolve an interrupted commit flujo cannot settle on its own."""

_PRIVATE = ("writes", "outcome", "before")


async def _landed(
    write: Mapping[str, Any],
    outcome: Mapping[str, Any],
    providers: Mapping[str, StateProvider[Any]],
) -> bool | None:
    """Whether one write landed: ``True``, ``False``, or ``None`` when nothing can tell."""
    ident = [write["provider_id"], write["key"]]
    if ident in outcome.get("landed", []):
        return True
    provider = providers.get(write["provider_id"])
    if isinstance(provider, VersionedStateProvider):
        # Before the failed list: a save whose reply was lost is recorded failed, yet landed.
        found = await provider.load_versioned(write["key"])
        expected = write.get("expected_version")
        if found.writer == write["writer"] and (expected is None or found.version == expected + 1):
            return True
        if expected is not None and found.version == expected:
            return False
        return None
    if ident in outcome.get("failed", []):
        return False
    return None


async def settle_pending(
    record: RunRecord,
    steps: Sequence[StepRecord],
    *,
    providers: Mapping[str, StateProvider[Any]],
    backend: StateBackend,
    serializer: Serializer,
    on_pending: OnPending | None,
) -> tuple[RunRecord, list[StepRecord], str | None]:
    """Return the run's records with an interrupted commit settled, and how it was settled."""
    records = list(steps)
    index = 0  # the steps that completed: successful, committed records from the start
    while index < len(records) and records[index].index == index:
        if records[index].pending or not records[index].success:
            break
        index += 1
    if index >= len(records) or records[index].index != index or not records[index].pending:
        return record, records, None
    record = dataclasses.replace(record, step_index=index)
    pending = records[index]
    payload, writes, outcome = _pending_payload(record.run_id, pending, serializer)
    verdicts = [await _landed(w, outcome, providers) for w in writes]
    if all(v is True for v in verdicts):
        choice, label = "accept", "accept: every save had landed"
    elif all(v is False for v in verdicts):
        choice, label = "rerun", "rerun: no save had landed"
    elif on_pending is not None:
        choice, label = on_pending, f"{on_pending}: chosen by the caller"
    else:
        raise StateConflictError(_conflict(record.run_id, pending, writes, verdicts))
    kept = {k: v for k, v in payload.items() if k not in _PRIVATE}
    if choice == "accept":
        kept["settled"] = label
        settled = dataclasses.replace(pending, pending=False, result=serializer.dumps(kept))
        if pending.success:
            record = dataclasses.replace(record, step_index=index + 1)
        rerun_label = None  # the step does not run again: its record keeps the choice
    else:
        settled = _before(pending, payload, serializer)
        rerun_label = label  # written into the record of the step's new run
    await backend.checkpoint(settled)
    records[index] = settled
    return record, records, rerun_label


def _pending_payload(
    run_id: str, pending: StepRecord, serializer: Serializer
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Return a pending record's payload, writes and outcome; ``StateCorruptError`` if damaged."""
    try:
        payload = serializer.loads(pending.result)
    except (TypeError, ValueError):
        payload = None
    if isinstance(payload, dict):
        writes, outcome = payload.get("writes") or [], payload.get("outcome") or {}
        named = ("provider_id", "key", "writer")
        if (
            isinstance(outcome, dict)
            and isinstance(writes, list)
            and all(
                isinstance(w, dict) and all(isinstance(w.get(n), str) for n in named)
                for w in writes
            )
        ):
            return payload, writes, outcome
    raise StateCorruptError(
        f"stored state of run {run_id!r} cannot be read: the pending record of step "
        f"{pending.index} does not hold the writes its step was making",
        run_id=run_id,
        column="result",
        found=repr(pending.result[:80]),
    )


def _before(pending: StepRecord, payload: Mapping[str, Any], serializer: Serializer) -> StepRecord:
    """Return the step's record as it stood before the interrupted commit (it runs again)."""
    before = payload.get("before")
    body: dict[str, Any] = {"name": pending.name, "success": False}
    context = pending.context
    if before is not None:
        if before.get("partial") is not None:
            body["partial"] = before["partial"]
        context = serializer.dumps(before["context"])
    return dataclasses.replace(
        pending, success=False, pending=False, result=serializer.dumps(body), context=context
    )


def _conflict(
    run_id: str, pending: StepRecord, writes: Sequence[Mapping[str, Any]], verdicts: list[Any]
) -> str:
    def names(wanted: bool | None) -> str:
        chosen = [
            f"{w['provider_id']}:{w['key']}"
            for w, v in zip(writes, verdicts, strict=True)
            if v is wanted
        ]
        return ", ".join(chosen) or "none"

    return (
        f"run {run_id!r}: step {pending.name!r} (index {pending.index}) stopped while saving "
        f"its references; written: {names(True)}; not written: {names(False)}; cannot tell: "
        f"{names(None)}. Resume with on_pending='rerun' to run the step again (what was "
        "written gets its change twice) or on_pending='accept' to keep the step as recorded "
        "(what was not written loses its change)"
    )
