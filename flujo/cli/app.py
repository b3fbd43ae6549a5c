"""The ``flujo`` command (typer + rich)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column, Table

from flujo.application.core.resume import MISSING, run_info, run_infos
from flujo.application.runner import Flujo
from flujo.cli.graph import graph_command
from flujo.cli.loading import load_container, load_runner, parse_duration, parse_input
from flujo.domain.errors import FlujoError, RunNotFoundError
from flujo.domain.events import HookEvent, RunFinished, StepFinished, StepStarted
from flujo.domain.models import RUN_STATUSES, DamagedRun, PipelineResult, RunInfo, RunStatus

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    name="flujo",
    help="Run flujo pipelines and manage their stored runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="List, inspect, resume and prune stored runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.command("graph")(graph_command)

out = Console()
err = Console(stderr=True)

ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile", "-p", help="Container profile: a shipped name (testing) or a YAML path."
    ),
]


def _guarded(work: Callable[[], T]) -> T:
    """Run ``work``; a flujo error becomes one line on stderr and exit code 1."""
    try:
        return work()
    except FlujoError as exc:
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


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


def _report(result: PipelineResult[Any], target: str) -> None:
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


def _with_progress(runner: Flujo[Any, Any, Any], work: Callable[[], PipelineResult[Any]]) -> Any:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=out, transient=True) as progress:
        hook = _ProgressHook(progress, total=len(runner.pipeline))
        runner.add_hook(hook)
        try:
            return work()
        finally:
            runner.remove_hook(hook)


@app.command("run")
def run_command(
    target: Annotated[str, typer.Argument(help="MODULE:ATTR of a Flujo runner, pipeline or step.")],
    input_text: Annotated[
        str | None, typer.Option("--input", "-i", help="Input: JSON, or plain text.")
    ] = None,
    profile: ProfileOption = None,
    run_id: Annotated[str | None, typer.Option(help="Id for the new run.")] = None,
) -> None:
    """Run a pipeline, showing its steps as they go."""

    def work() -> None:
        runner = load_runner(target, profile)
        data = parse_input(input_text)
        result = _with_progress(runner, lambda: runner.run(data, run_id=run_id))
        _report(result, target)

    _guarded(work)


def _runs_table(runs: list[RunInfo | DamagedRun]) -> Table:
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


@runs_app.command("list")
def runs_list(
    status: Annotated[
        str | None, typer.Option(help=f"Only runs with this status ({'/'.join(RUN_STATUSES)}).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 20,
    profile: ProfileOption = None,
) -> None:
    """List stored runs, most recent first."""
    if status is not None and status not in RUN_STATUSES:
        allowed = ", ".join(RUN_STATUSES)
        err.print(f"[bold red]error:[/] unknown status {status!r}; use one of {allowed}")
        raise typer.Exit(1)

    async def fetch() -> list[RunInfo | DamagedRun]:
        container = load_container(profile)
        backend = container.state_backend()
        try:
            chosen: Any = status
            records = await backend.list_runs(status=chosen, limit=limit)
            return run_infos(records, container.serializer())
        finally:
            await backend.close()

    runs = _guarded(lambda: _run(fetch()))
    if not runs:
        out.print("no runs stored")
        return
    out.print(_runs_table(runs))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run to show.")],
    profile: ProfileOption = None,
) -> None:
    """Show one run and its steps."""

    async def fetch() -> RunInfo:
        container = load_container(profile)
        backend = container.state_backend()
        try:
            record = await backend.load_run(run_id)
            if record is None:
                raise RunNotFoundError(f"no run {run_id!r} in the configured state backend")
            steps = await backend.load_steps(run_id)
            return run_info(record, container.serializer(), steps)
        finally:
            await backend.close()

    info = _guarded(lambda: _run(fetch()))
    out.print(_runs_table([info]))
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
    out.print(steps)


@runs_app.command("resume")
def runs_resume(
    run_id: Annotated[str, typer.Argument(help="The run to resume.")],
    target: Annotated[str, typer.Argument(help="MODULE:ATTR of the run's runner or pipeline.")],
    human_input: Annotated[
        str | None, typer.Option("--human-input", help="Answer for a paused run (JSON or text).")
    ] = None,
    on_pending: Annotated[
        str | None,
        typer.Option(
            "--on-pending",
            help="A step stopped while saving, and flujo cannot tell if its saves landed: "
            "'rerun' it or 'accept' it as recorded.",
        ),
    ] = None,
    profile: ProfileOption = None,
) -> None:
    """Continue a crashed, failed or paused run after its last completed step."""

    def work() -> None:
        runner = load_runner(target, profile)
        answer = MISSING if human_input is None else parse_input(human_input)
        choice: Any = on_pending
        result = _with_progress(
            runner, lambda: runner.resume(run_id, human_input=answer, on_pending=choice)
        )
        _report(result, target)

    _guarded(work)


@runs_app.command("prune")
def runs_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age, e.g. 30m, 12h, 7d (required).")
    ],
    include_paused: Annotated[
        bool, typer.Option(help="Also delete paused runs (default: completed and failed only).")
    ] = False,
    profile: ProfileOption = None,
) -> None:
    """Delete completed and failed runs not updated for a while."""
    statuses: tuple[RunStatus, ...] = ("completed", "failed")
    if include_paused:
        statuses = (*statuses, "paused")

    async def prune() -> int:
        container = load_container(profile)
        backend = container.state_backend()
        try:
            cutoff = container.clock() - parse_duration(older_than)
            count: int = await backend.prune(older_than=cutoff, statuses=statuses)
            return count
        finally:
            await backend.close()

    count = _guarded(lambda: _run(prune()))
    out.print(f"deleted {count} run{'s' if count != 1 else ''}")


def main() -> None:
    """Entry point of the ``flujo`` command."""
    app()
