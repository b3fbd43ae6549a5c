"""How the PostgreSQL backend writes step records: a plain insert first, an upsert if need be.

A record is replaced only when a step runs again (a resume, a failed loop's retry, a
pending record committed), so the plain form, cheaper on the server (10-15 µs for a
checkpoint, 4-15 µs for the final statement, measured), goes first; a duplicate key
fails that statement whole and the replacing form runs instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flujo.infra.state.postgres_sql import FINISH_OWNED_NEW, FINISH_OWNED_RUN, INSERT_STEP, NEW_STEP

if TYPE_CHECKING:
    import asyncpg

__all__ = ["CHECKPOINT", "FINISH", "RecordWrite", "write_record"]

_UNIQUE_VIOLATION = "23505"
"""The SQLSTATE of a duplicate key (asyncpg's ``UniqueViolationError``)."""


@dataclass(frozen=True, slots=True)
class RecordWrite:
    """A statement writing a step record, in its plain form and its replacing form."""

    plain: str
    replacing: str
    fetch: bool
    """Whether it returns a value (the final statement: whether the owner held the run)."""


CHECKPOINT = RecordWrite(NEW_STEP, INSERT_STEP, fetch=False)
FINISH = RecordWrite(FINISH_OWNED_NEW, FINISH_OWNED_RUN, fetch=True)


async def write_record(
    conn: asyncpg.Connection, args: tuple[object, ...], how: RecordWrite, replaces: bool
) -> object:
    """Run ``how`` on ``args``: its plain form unless ``replaces``, the replacing one if need be."""
    run = conn.fetchval if how.fetch else conn.execute
    if not replaces:
        try:
            return await run(how.plain, *args)
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
    return await run(how.replacing, *args)
