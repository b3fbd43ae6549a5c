"""A step's saves and its checkpoint as one unit: exactly once, or a record that says why not.

- No saves: the checkpoint alone.
- Every provider saved to lives in the run-state database (``AtomicCheckpoints``):
  saves and checkpoint commit in one transaction.
- Otherwise the checkpoint is written *pending* (with the writes it is about to
  make), then the saves run (all keys of one versioned provider in one atomic
  call), then the checkpoint is written again as committed. A crash in between
  leaves the pending record, and resume (``flujo.application.core.pending``)
  tells from the providers' versions whether the saves landed.

A save that fails is retried as the step's own retries allow (backoff included);
only the saves that did not land are tried again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeGuard

from flujo.application.core.session import Entry, StateSession
from flujo.domain.errors import StateConflictError, StateError
from flujo.domain.interfaces import AtomicCheckpoints, StateBackend, StepRecord, Write
from flujo.domain.policies import StepConfig

__all__ = ["commit_step", "save_staged"]

Backoff = Callable[[StepConfig, int], Awaitable[None]]
MakeRecord = Callable[[dict[str, Any], bool], StepRecord]
"""``(payload, pending) -> StepRecord``: the record of the step with that payload."""


async def save_staged(
    session: StateSession,
    staged: Sequence[Entry],
    writer: str,
    config: StepConfig,
    backoff: Backoff,
    landed: list[Entry] | None = None,
) -> None:
    """Save ``staged``, retrying what did not land; ``landed`` collects what did."""
    done: list[Entry] = [] if landed is None else landed
    owed = list(staged)
    attempt = 0
    while owed:
        attempt += 1
        try:
            await session.save(owed, writer, done)
            return
        except StateConflictError:
            raise  # another writer got there first: saving again would overwrite it
        except StateError:
            owed = [entry for entry in owed if not _saved(entry, done)]
            if attempt > config.max_retries:
                raise
            await backoff(config, attempt)


def _saved(entry: Entry, done: list[Entry]) -> bool:
    return any(entry is other for other in done)


def _atomic(backend: StateBackend) -> TypeGuard[AtomicCheckpoints]:
    # isinstance(backend, AtomicCheckpoints) without the runtime-protocol check, which
    # costs microseconds on every commit that saves.
    return callable(getattr(backend, "holds", None)) and callable(
        getattr(backend, "checkpoint_with", None)
    )


def _writes(staged: Sequence[Entry], writer: str) -> list[dict[str, Any]]:
    return [
        {
            "provider_id": entry.ident[0],
            "key": entry.ident[1],
            "expected_version": entry.version if entry.loaded else None,
            "writer": writer,
        }
        for entry in staged
    ]


async def commit_step(
    backend: StateBackend,
    make: MakeRecord,
    payload: dict[str, Any],
    staged: Sequence[Entry],
    session: StateSession,
    writer: str,
    config: StepConfig,
    backoff: Backoff,
) -> None:
    """Write the step's checkpoint with its saves (see the module docstring).

    Raises ``StateError`` when the saves failed; the record left behind is pending
    and says which saves landed, failed, or cannot be told.
    """
    if not staged:
        await backend.checkpoint(make(payload, False))
        return
    if _atomic(backend) and all(backend.holds(e.provider) for e in staged):
        writes = [
            (e.provider, Write(e.ident[1], e.value, e.version if e.loaded else None, writer))
            for e in staged
        ]
        versions = await backend.checkpoint_with(make(payload, False), writes)
        for entry, version in zip(staged, versions, strict=True):
            entry.version, entry.loaded = version, True
        return
    pending = {**payload, "writes": _writes(staged, writer)}
    await backend.checkpoint(make(pending, True))
    landed: list[Entry] = []
    try:
        await save_staged(session, staged, writer, config, backoff, landed)
    except StateError as exc:
        timed_out = "no answer within" in str(exc)
        outcome = {
            "landed": [list(e.ident) for e in landed],
            # A save that timed out may have landed all the same: only versions can tell.
            "failed": [] if timed_out else [list(e.ident) for e in staged if not _saved(e, landed)],
            "error": f"{type(exc).__name__}: {exc}",
        }
        await backend.checkpoint(make({**pending, "outcome": outcome}, True))
        raise
    await backend.checkpoint(make(payload, False))


def settled_record(record: StepRecord, result: bytes) -> StepRecord:
    """Return ``record`` as committed with ``result`` as its payload."""
    return dataclasses.replace(record, pending=False, result=result)
