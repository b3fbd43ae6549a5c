"""How the commands show things: the consoles, a run's outcome, tables of runs, live progress."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column, Table

from flujo.application.runner import Flujo
from flujo.domain.events import HookEvent, RunFinished, StepFinished, StepStarted
from flujo.domain.models import DamagedRun, PipelineResult, RunInfo

__all__ = ["err", "out", "report", "runs_table", "steps_table", "with_progress"]

out = Console()
"""Standard output: results, tables, progress."""
err = Console(stderr=True)
"""Standard error: failures and errors."""


class _ProgressHook:
    """Shows each step of a run as it starts and ends."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=total)

    def __call__(self, event: HookEvent) -> None:
        if isinstance(event, StepStarted):
            self.progress.update(self.task, description=f"step [bold]{event.step_name}[/]")
        elif isinstance(event, StepFinished):
            mark = "[green]ok[/]" if event.result.success else "[red]failed[/]"
            ms = event.result.latency_s * 1000
            self.progress.console.print(f"  {mark} {event.step_name} ({ms:.1f} ms)")
            self.progress.advance(self.task)
        elif isinstance(event, RunFinished):
            self.progress.update(self.task, description=f"run {event.result.status}")


def report(result: PipelineResult[Any], target: str) -> None:
    """Print how a run ended; a failed run exits 1."""
    if result.status == "completed":
        out.print(f"[green]completed[/] run {result.run_id}")
        out.print_json(json.dumps(result.output, default=repr))
        return
    if result.status == "paused":
        out.print(f"[yellow]paused[/] run {result.run_id}: {result.pause_message}")
        out.print(f"resume with: flujo runs resume {result.run_id} {target} --human-input '<json>'")
        return
    reason = result.error or result.feedback or "unknown"
    err.print(f"[bold red]failed[/] run {result.run_id}: {reason}", soft_wrap=True)
    raise typer.Exit(1)


def with_progress(runner: Flujo[Any, Any, Any], work: Callable[[], PipelineResult[Any]]) -> Any:
    """Call ``work`` (a run of ``runner``) while a progress bar follows its steps."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=out, transient=True) as progress:
        hook = _ProgressHook(progress, total=len(runner.pipeline))
        runner.add_hook(hook)
        try:
            return work()
        finally:
            runner.remove_hook(hook)


def runs_table(runs: list[RunInfo | DamagedRun]) -> Table:
    """Return the table of stored runs ``flujo runs list`` prints."""
    table = Table("pipeline", "status", "steps", "updated (UTC)", "note")
    # Ids are what users copy into `runs show/resume`: never cut them.
    table.columns.insert(0, Column("run id", no_wrap=True, min_width=32))
    colours = {"completed": "green", "failed": "red", "paused": "yellow", "running": "cyan"}
    for info in runs:
        if isinstance(info, DamagedRun):
            # What else the row holds cannot be trusted: the note says what is wrong.
            table.add_row(info.run_id, "?", "[bold red]damaged[/]", "?", "?", info.error)
            continue
        note = info.error or info.pause_message or ""
        table.add_row(
            info.run_id,
            f"{info.pipeline_name}@{info.pipeline_version}",
            f"[{colours.get(info.status, 'white')}]{info.status}[/]",
            str(info.steps_completed),
            info.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            note,
        )
    return table


def steps_table(info: RunInfo) -> Table:
    """Return the table of one run's steps ``flujo runs show`` prints."""
    steps = Table("#", "step", "ok", "attempts", "ms", "output / feedback")
    for index, step in enumerate(info.step_history):
        shown = step.feedback if not step.success else json.dumps(step.output, default=repr)
        steps.add_row(
            str(index),
            step.name,
            "[green]yes[/]" if step.success else "[red]no[/]",
            str(step.attempts),
            f"{step.latency_s * 1000:.1f}",
            (shown or "")[:120],
        )
    return steps
