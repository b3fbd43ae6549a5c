"""What ``flujo runs show`` draws: a run's header, its steps on a timeline, their outputs.

The timeline puts the steps one after another, as they ran: each bar starts where
the steps before it ended and is as long as its step's latency, on one scale for
the whole run, coloured by how the step ended. Time a run spent paused or
stopped between steps is not drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from flujo.cli.render import STATUS_STYLES, as_json, shorten
from flujo.domain.models import RunInfo, StepResult

__all__ = ["Bar", "bars", "run_view", "step_status"]

_GAP = "  "
_TIME = "%Y-%m-%d %H:%M:%S"
_MIN_BAR_WIDTH = 10
_STEP_STYLES = {"ok": "green", "failed": "red", "cached": "cyan", "fallback": "yellow"}


@dataclass(frozen=True, slots=True)
class Bar:
    """Where one step's bar starts and how many cells it covers."""

    start: int
    length: int


def step_status(result: StepResult) -> str:
    """Return how a step ended: ``ok``, ``cached``, ``fallback`` or ``failed``."""
    if not result.success:
        return "failed"
    if result.cache_hit:
        return "cached"
    return "fallback" if result.fallback else "ok"


def bars(latencies: list[float], width: int) -> list[Bar]:
    """Return one bar per latency on a ``width``-cell scale, each one after the last.

    Every step gets at least one cell, so a fast step stays visible.
    """
    total = sum(max(s, 0.0) for s in latencies)
    made: list[Bar] = []
    elapsed = 0.0
    for seconds in latencies:
        seconds = max(seconds, 0.0)
        if total > 0:
            start = round(elapsed / total * width)
            end = round((elapsed + seconds) / total * width)
        else:
            start = end = 0
        start = min(start, width - 1)
        made.append(Bar(start, max(end - start, 1)))
        elapsed += seconds
    return made


def run_view(info: RunInfo, width: int) -> list[Text]:
    """Return the lines ``flujo runs show`` prints for ``info`` at ``width`` columns."""
    lines = [Text.assemble(("run ", "bold"), (info.run_id, "bold"))]
    facts = [
        ("status", Text(info.status, STATUS_STYLES.get(info.status, ""))),
        ("pipeline", Text(f"{info.pipeline_name}@{info.pipeline_version}")),
        ("created", Text(info.created_at.strftime(_TIME) + " UTC")),
        ("updated", Text(info.updated_at.strftime(_TIME) + " UTC")),
        ("steps", Text(f"{info.steps_completed} completed")),
    ]
    if info.error:
        facts.append(("error", Text(info.error)))
    if info.pause_message:
        facts.append(("waiting", Text(info.pause_message)))
    for label, value in facts:
        lines.append(Text.assemble(f"  {label:<9}", value))
    if info.step_history:
        lines += [Text(""), *_timeline(info.step_history, width)]
        lines += [Text(""), *_outputs(info.step_history, width)]
    return lines


def _timeline(steps: list[StepResult], width: int) -> list[Text]:
    names = [s.name for s in steps]
    index_w = max(len("#"), len(str(len(steps) - 1)))
    name_w = max(len("STEP"), *(len(n) for n in names))
    status_w = len("fallback")
    millis = [f"{s.latency_s * 1000:.1f}" for s in steps]
    ms_w = max(len("MS"), *(len(m) for m in millis))
    tries_w = len("TRIES")
    lead = index_w + name_w + status_w + tries_w + ms_w + len(_GAP) * 5
    bar_width = max(width - lead, _MIN_BAR_WIDTH)
    header = Text.assemble(
        "#".rjust(index_w),
        _GAP,
        "STEP".ljust(name_w),
        _GAP,
        "STATUS".ljust(status_w),
        _GAP,
        "TRIES",
        _GAP,
        "MS".rjust(ms_w),
        _GAP,
        "TIMELINE",
        style="bold",
    )
    lines = [header]
    placed = bars([s.latency_s for s in steps], bar_width)
    for index, (step, ms, bar) in enumerate(zip(steps, millis, placed, strict=True)):
        status = step_status(step)
        style = _STEP_STYLES[status]
        lines.append(
            Text.assemble(
                str(index).rjust(index_w),
                _GAP,
                step.name.ljust(name_w),
                _GAP,
                (status.ljust(status_w), style),
                _GAP,
                str(step.attempts).rjust(tries_w),
                _GAP,
                ms.rjust(ms_w),
                _GAP,
                " " * bar.start,
                ("█" * bar.length, style),
            )
        )
    return lines


def _outputs(steps: list[StepResult], width: int) -> list[Text]:
    index_w = max(len("#"), len(str(len(steps) - 1)))
    lines = [Text.assemble("#".rjust(index_w), _GAP, "OUTPUT / FEEDBACK", style="bold")]
    room = max(width - index_w - len(_GAP), _MIN_BAR_WIDTH)
    for index, step in enumerate(steps):
        shown = as_json(step.output) if step.success else (step.feedback or "")
        style = "" if step.success else "red"
        lines.append(Text.assemble(str(index).rjust(index_w), _GAP, (shorten(shown, room), style)))
    return lines
