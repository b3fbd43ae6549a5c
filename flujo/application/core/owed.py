"""Saves a run owes its providers: made when it ends, recorded if they fail, made on resume.

When a run ends (completed, failed, paused or cancelled) it saves the references
changed in place and those ``set()`` outside a step (``StateSession.changed_in_place``).
When such a save fails, the values that did not land are recorded in the run's
final header (``RunRecord.owed``, JSON), so the run stays resumable: on resume
each is checked first — a versioned provider tells from its version and writer
tag whether it landed meanwhile or another writer got there first — and the
rest are saved before any step runs, so a resumed run never reports
``completed`` while a provider still holds the old value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from flujo.application.core.session import Entry, StateSession
from flujo.domain.errors import ConfigurationError, StateConflictError, StateError, StateLoadError
from flujo.domain.interfaces import Serializer, StateProvider, Telemetry, VersionedStateProvider

__all__ = ["Owed", "finish_saves", "record_owed", "restage", "save_restaged", "settle_owed"]

Owed = list[dict[str, Any]]
"""``[{"provider_id", "key", "value", "expected_version", "writer"}, ...]``."""


async def finish_saves(
    session: StateSession, context: BaseModel | None, writer: str
) -> tuple[list[Entry], StateError | None]:
    """Save what the run owes at its end; return what did not land and why."""
    owed = session.changed_in_place(context)
    session.staged.clear()
    if not owed:
        return [], None
    landed: list[Entry] = []
    try:
        await session.save(owed, writer, landed)
    except StateError as exc:
        error: StateError | None = exc
    else:
        error = None
    for entry in landed:
        entry.read, entry.digest = False, None  # saved: hashed again if a later run reads it
        entry.publish()
    return [e for e in owed if not any(e is done for done in landed)], error


def record_owed(
    entries: Sequence[Entry], writer: str, serializer: Serializer, telemetry: Telemetry, run_id: str
) -> bytes | None:
    """Return the JSON of the saves still owed (``None`` if none can be recorded)."""
    items: Owed = []
    for entry in entries:
        item = {
            "provider_id": entry.ident[0],
            "key": entry.ident[1],
            "value": entry.value,
            "expected_version": entry.version if entry.loaded else None,
            "writer": writer,
        }
        try:
            serializer.dumps(item)
        except (TypeError, ValueError) as exc:
            telemetry.warning(
                f"run {run_id}: the unsaved value of {entry.describe()} is not "
                f"JSON-serializable ({exc}), so it cannot be recorded for a resume: it is lost"
            )
            continue
        items.append(item)
    return serializer.dumps(items) if items else None


async def settle_owed(
    run_id: str,
    owed: bytes | None,
    *,
    providers: Mapping[str, StateProvider[Any]],
    serializer: Serializer,
    on_pending: str | None,
) -> Owed:
    """Return the recorded saves still to make; ``StateConflictError`` when another wrote first.

    A save that landed meanwhile (its writer tag is stored) is dropped. One whose
    key another writer changed since is a conflict, unless ``on_pending`` is
    ``"rerun"`` (save it over the other write) or ``"accept"`` (drop it).
    """
    if owed is None:
        return []
    keep: Owed = []
    conflicts: list[str] = []
    for item in serializer.loads(owed):
        provider_id, key = item["provider_id"], item["key"]
        provider = providers.get(provider_id)
        if provider is None:
            raise ConfigurationError(
                f"run {run_id!r} owes a save to provider {provider_id!r} (key {key!r}), which "
                f"is not registered; registered providers: {', '.join(sorted(providers)) or 'none'}"
            )
        if not isinstance(provider, VersionedStateProvider):
            keep.append(item)  # the recorded value, saved again: the same value twice is one
            continue
        try:
            found = await provider.load_versioned(key)
        except Exception as exc:
            raise StateLoadError(
                f"run {run_id!r}: checking the owed save of provider {provider_id!r}, key "
                f"{key!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if found.writer == item["writer"]:
            continue  # it landed after all
        expected = item["expected_version"]
        if expected is None or found.version == expected or on_pending == "rerun":
            keep.append(item)
        elif on_pending != "accept":
            conflicts.append(f"{provider_id}:{key}")
    if conflicts:
        raise StateConflictError(
            f"run {run_id!r} owes saves its last attempt could not make, but another writer "
            f"changed {', '.join(conflicts)} since. Resume with on_pending='rerun' to save "
            "them over that change, or on_pending='accept' to drop them"
        )
    return keep


def restage(session: StateSession, owed: Owed) -> list[Entry]:
    """Give the session's entries the owed values (after hydration); return those entries."""
    entries = []
    for item in owed:
        ident = (item["provider_id"], item["key"])
        entry = session.entries.get(ident)
        if entry is None:  # a key no reference of the context points to any more
            entry = session.entries[ident] = Entry(session, ident, session.providers[ident[0]], "")
        entry.value = item["value"]
        entry.read, entry.digest = False, None
        entry.publish()
        entries.append(entry)
    return entries


async def save_restaged(session: StateSession, entries: list[Entry], writer: str) -> None:
    """Make the owed saves; what did not land stays staged for the end of the run."""
    landed: list[Entry] = []
    try:
        await session.save(entries, writer, landed)
    except StateError:
        for entry in entries:
            if not any(entry is done for done in landed):
                session.staged[entry.ident] = entry
        raise
