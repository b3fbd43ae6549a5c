"""Saving a run's referenced values: one atomic call per versioned provider, deadlines on each.

A versioned save that meets a conflict checks whether the conflict is its own
earlier try, landed with its reply lost (the stored writer is this writer and the
version one past what it expected): that save is then known landed, and saving
again would store the change twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from flujo.application.core.awaiting import deadline, gather_all, why
from flujo.application.core.entry import Entry
from flujo.domain.errors import StateConflictError, StateSaveError
from flujo.domain.interfaces import StateProvider, Write

__all__ = ["save_entries"]


async def save_entries(
    entries: Iterable[Entry],
    writer: str,
    landed: list[Entry],
    *,
    versioned: Callable[[str, StateProvider[Any]], bool],
    save_timeout_s: float | None,
    load_timeout_s: float | None,
) -> None:
    """Save ``entries``; ``landed`` collects those that landed; the first failure is raised."""
    by_provider: dict[str, list[Entry]] = {}
    for entry in entries:
        by_provider.setdefault(entry.ident[0], []).append(entry)
    calls: list[Awaitable[None]] = []
    for provider_id, group in by_provider.items():
        if versioned(provider_id, group[0].provider):
            calls.append(_save_versioned(group, writer, landed, save_timeout_s, load_timeout_s))
        else:
            calls.extend(_save_plain(entry, landed, save_timeout_s) for entry in group)
    await gather_all(calls)


async def _save_versioned(
    group: list[Entry],
    writer: str,
    landed: list[Entry],
    save_timeout_s: float | None,
    load_timeout_s: float | None,
) -> None:
    writes = [Write(e.ident[1], e.value, e.version if e.loaded else None, writer) for e in group]
    provider: Any = group[0].provider
    try:
        versions = await deadline(provider.save_versioned(writes), save_timeout_s)
    except StateConflictError:
        found = await _own_writes(provider, writes, load_timeout_s)
        if found is None:
            raise
        versions = found
    except Exception as exc:
        names = ", ".join(e.describe() for e in group)
        raise StateSaveError(f"saving {names} failed: {why(exc, save_timeout_s)}") from exc
    for entry, version in zip(group, versions, strict=True):
        entry.version, entry.loaded = version, True
        landed.append(entry)


async def _own_writes(
    provider: Any, writes: list[Write[Any]], load_timeout_s: float | None
) -> list[int] | None:
    """Return the versions ``writes`` stored if an earlier try of theirs landed, else None."""
    versions = []
    for write in writes:
        try:
            found = await deadline(provider.load_versioned(write.key), load_timeout_s)
        except Exception:
            return None  # cannot tell: the conflict stands
        expected = write.expected_version
        if expected is None or (found.writer, found.version) != (write.writer, expected + 1):
            return None
        versions.append(found.version)
    return versions


async def _save_plain(entry: Entry, landed: list[Entry], save_timeout_s: float | None) -> None:
    try:
        await deadline(entry.provider.save(entry.ident[1], entry.value), save_timeout_s)
    except Exception as exc:
        raise StateSaveError(
            f"saving {entry.describe()} failed: {why(exc, save_timeout_s)}"
        ) from exc
    landed.append(entry)
