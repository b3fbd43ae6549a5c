"""The rows of ``flujo runs list``: one line per run when the terminal allows, else two.

Run ids are never cut (users copy them into ``runs show`` and ``runs resume``).
Each run's note says what it waits for or why it failed, on one line, cut to fit.
Where id, status, steps, time, pipeline and a readable note fit on one line (a wide
terminal), each run is one row; otherwise (80 columns, long names) the pipeline and
the note go on an indented line below the run's first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

from flujo.cli.render import STATUS_STYLES, shorten
from flujo.domain.models import DamagedRun, RunInfo

__all__ = ["Row", "listing", "row_of"]

_GAP = "  "
_NOTE_MIN = 24
"""The narrowest note worth a one-line layout; below it the note gets a line of its own."""
_TIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True)
class Row:
    """One run as the listing shows it."""

    run_id: str
    status: str
    steps: str
    updated: str
    pipeline: str
    note: str


def row_of(info: RunInfo | DamagedRun, reason: str | None = None) -> Row:
    """Return the row of ``info``; ``reason`` is why a failed run failed, when known."""
    if isinstance(info, DamagedRun):
        # What else the row holds cannot be trusted: the note says what is wrong.
        note = f"unreadable: column {info.column!r} holds {info.found}"
        return Row(info.run_id, "damaged", "?", "?", "?", note)
    note = info.error or reason or info.pause_message or ""
    if info.owner is not None and info.lease_until is not None:
        until = info.lease_until.strftime("%Y-%m-%d %H:%M:%S")
        note = f"leased by {info.owner} until {until}"
    return Row(
        info.run_id,
        info.status,
        str(info.steps_completed),
        info.updated_at.strftime(_TIME),
        f"{info.pipeline_name}@{info.pipeline_version}",
        note,
    )


_HEADER = Row("RUN ID", "STATUS", "STEPS", "UPDATED (UTC)", "PIPELINE", "NOTE")


def listing(rows: Sequence[Row], width: int) -> list[Text]:
    """Return the lines of the listing of ``rows`` for a terminal ``width`` columns wide."""
    every = [_HEADER, *rows]
    widths = [max(len(getattr(r, field)) for r in every) for field in Row.__slots__[:5]]
    lead = sum(widths[:4]) + len(_GAP) * 3
    room = width - lead - len(_GAP) * 2 - widths[4]
    longest_note = max((len(r.note) for r in rows), default=0)
    one_line = room >= min(_NOTE_MIN, max(longest_note, len(_HEADER.note)))
    lines = [_first(_HEADER, widths, "bold", room if one_line else None)]
    for row in rows:
        lines.append(_first(row, widths, None, room if one_line else None))
        if not one_line:
            lines.extend(_detail(row, width))
    return lines


def _first(row: Row, widths: list[int], style: str | None, room: int | None) -> Text:
    status_style = style or STATUS_STYLES.get(row.status, "")
    line = Text.assemble(
        (row.run_id.ljust(widths[0]), style or ""),
        _GAP,
        (row.status.ljust(widths[1]), status_style),
        _GAP,
        (row.steps.rjust(widths[2]), style or ""),
        _GAP,
        (row.updated.ljust(widths[3]), style or ""),
    )
    if room is not None:
        line.append(_GAP + row.pipeline.ljust(widths[4]), style or "")
        if row.note:
            line.append(_GAP + shorten(row.note, room), style or "")
    line.rstrip()
    return line


def _detail(row: Row, width: int) -> list[Text]:
    """Return the indented line(s) under a run: its pipeline, then its note where it fits."""
    indent = "  "
    pipeline = Text(indent + row.pipeline, "dim")
    if not row.note:
        return [pipeline]
    room = width - len(pipeline) - len(_GAP)
    if room >= _NOTE_MIN or room >= len(row.note):
        pipeline.append(_GAP + shorten(row.note, room))
        return [pipeline]
    return [pipeline, Text(indent + shorten(row.note, width - len(indent)))]
