"""Reading stored rows back: every value a backend returns is checked here, once.

A row is a mapping of column names (the record's field names) to what the store
gave back. Anything that does not fit what flujo writes — a blob that is text, a
count that is text or a fraction, a time out of range, an unknown status or schema
version, a flag that is neither true nor false — raises ``StateCorruptError``
naming the run, the column and what was found, so no damaged value ever reaches a
decoder, a pydantic model or ``datetime``.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flujo.domain.errors import StateCorruptError
from flujo.domain.interfaces import SCHEMA_VERSION, RunRecord, StepRecord
from flujo.domain.models import RUN_STATUSES, DamagedRun, RunStatus

__all__ = [
    "MAX_TIMESTAMP",
    "Corrupt",
    "blob",
    "count",
    "flag",
    "listed",
    "optional_blob",
    "optional_text",
    "optional_timestamp",
    "run_record",
    "run_row",
    "schema_version",
    "shown",
    "status",
    "step_record",
    "text",
    "timestamp",
]

MAX_TIMESTAMP = 253402300799.0

_RUN_VALUES = operator.attrgetter(*(f.name for f in dataclasses.fields(RunRecord)))


def run_row(run: RunRecord) -> tuple[Any, ...]:
    """Return ``run``'s values in field order (``dataclasses.astuple`` without its deep copy)."""
    values: tuple[Any, ...] = _RUN_VALUES(run)
    return values


"""The last second of year 9999, the latest time a ``datetime`` can show."""

_SHOWN = 80


class Corrupt(Exception):
    """One value does not fit its column; the caller adds which record it is in."""

    def __init__(self, value: object, expected: str) -> None:
        super().__init__(expected)
        self.value = value
        self.expected = expected


def shown(value: object) -> str:
    """Return ``value`` as a message shows it: its repr, shortened, and its type."""
    text_ = repr(value)
    if len(text_) > _SHOWN:
        text_ = text_[: _SHOWN - 3] + "..."
    return f"{text_} ({type(value).__name__})"


def text(value: object) -> str:
    """Return a text column's value."""
    if not isinstance(value, str):
        raise Corrupt(value, "text")
    return value


def optional_text(value: object) -> str | None:
    """Return the value of a text column that may be empty (NULL)."""
    return None if value is None else text(value)


def blob(value: object) -> bytes:
    """Return a binary column's value (JSON bytes); text is not accepted."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise Corrupt(value, "bytes (a blob)")


def count(value: object) -> int:
    """Return a count: a whole number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Corrupt(value, "a whole number >= 0")
    return value


def flag(value: object) -> bool:
    """Return a flag, stored as a boolean or as 0 or 1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise Corrupt(value, "a boolean (true/false, or 1/0)")


def timestamp(value: object) -> float:
    """Return a Unix time between 1970 and the end of year 9999."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Corrupt(value, "a Unix time (a number of seconds)")
    if not (math.isfinite(value) and 0 <= value <= MAX_TIMESTAMP):
        raise Corrupt(value, f"a Unix time between 0 and {MAX_TIMESTAMP:.0f} (year 9999)")
    return float(value)


def optional_timestamp(value: object) -> float | None:
    """Return a Unix time that may be empty (NULL)."""
    return None if value is None else timestamp(value)


def optional_blob(value: object) -> bytes | None:
    """Return the value of a binary column that may be empty (NULL)."""
    return None if value is None else blob(value)


def status(value: object) -> RunStatus:
    """Return a run status flujo knows."""
    if isinstance(value, str) and value in RUN_STATUSES:
        return value
    raise Corrupt(value, "one of " + ", ".join(repr(s) for s in RUN_STATUSES))


def schema_version(value: object) -> int:
    """Return a schema version this flujo reads."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Corrupt(value, f"a schema version (a whole number from 1 to {SCHEMA_VERSION})")
    if value > SCHEMA_VERSION:
        raise Corrupt(
            value,
            f"a schema version this flujo reads (1 to {SCHEMA_VERSION}); the run was written "
            "by a newer flujo",
        )
    return value


_RUN_COLUMNS: dict[str, Callable[[object], Any]] = {
    "run_id": text,
    "pipeline_name": text,
    "pipeline_version": text,
    "status": status,
    "step_index": count,
    "input": blob,
    "context": blob,
    "created_at": timestamp,
    "updated_at": timestamp,
    "error": optional_text,
    "pause_message": optional_text,
    "schema_version": schema_version,
    "owner": optional_text,
    "lease_until": optional_timestamp,
    "owed": optional_blob,
}
"""How each ``RunRecord`` field is checked; every field has an entry (a test checks it)."""

_STEP_COLUMNS: dict[str, Callable[[object], Any]] = {
    "run_id": text,
    "index": count,
    "name": text,
    "success": flag,
    "result": blob,
    "context": blob,
    "recorded_at": timestamp,
    "pending": flag,
}
"""How each ``StepRecord`` field is checked; every field has an entry (a test checks it)."""


def _run_id(row: Mapping[str, object], fallback: str | None) -> str | None:
    found = row.get("run_id")
    return found if isinstance(found, str) else fallback


def _checked(
    row: Mapping[str, object],
    columns: Mapping[str, Callable[[object], Any]],
    run_id: str | None,
    where: str,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column, check in columns.items():
        value = row.get(column)
        try:
            values[column] = check(value)
        except Corrupt as exc:
            run = repr(run_id) if run_id is not None else f"with id {shown(row.get('run_id'))}"
            raise StateCorruptError(
                f"stored state of run {run} cannot be read: column {column!r} of {where} "
                f"holds {shown(value)}; expected {exc.expected}",
                run_id=run_id,
                column=column,
                found=shown(value),
            ) from None
    return values


def run_record(row: Mapping[str, object], run_id: str | None = None) -> RunRecord:
    """Return the run header in ``row``, every column checked (``StateCorruptError``).

    ``run_id`` names the run in the message when the row's own id cannot be read.
    """
    return RunRecord(**_checked(row, _RUN_COLUMNS, _run_id(row, run_id), "its header"))


def step_record(row: Mapping[str, object], run_id: str | None = None) -> StepRecord:
    """Return the step record in ``row``, every column checked (``StateCorruptError``)."""
    index = row.get("index")
    where = f"its step record {index}" if isinstance(index, int) else "one of its step records"
    return StepRecord(**_checked(row, _STEP_COLUMNS, _run_id(row, run_id), where))


def listed(rows: Iterable[Mapping[str, object]]) -> list[RunRecord | DamagedRun]:
    """Return the headers of ``rows`` for ``list_runs``: a damaged row as a ``DamagedRun``."""
    found: list[RunRecord | DamagedRun] = []
    for row in rows:
        try:
            found.append(run_record(row))
        except StateCorruptError as exc:
            run_id = exc.run_id if exc.run_id is not None else shown(row.get("run_id"))
            found.append(DamagedRun.from_error(run_id, exc))
    return found
