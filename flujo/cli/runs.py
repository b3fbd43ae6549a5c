"""``flujo runs``: list, show, resume and prune the runs in the run-state backend."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flujo.application.core.resume import MISSING, run_info, run_infos
from flujo.cli.loading import load_container, load_runner, parse_duration, parse_input
from flujo.cli.options import ProfileOption, guarded, run_coroutine
from flujo.cli.render import err, out, report, runs_table, steps_table, with_progress
from flujo.domain.errors import RunNotFoundError
from flujo.domain.models import RUN_STATUSES, DamagedRun, RunInfo, RunStatus

__all__ = ["runs_app"]

runs_app = typer.Typer(help="List, inspect, resume and prune stored runs.", no_args_is_help=True)
"""The ``flujo runs`` command group."""


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

    runs = guarded(lambda: run_coroutine(fetch()))
    if not runs:
        out.print("no runs stored")
        return
    out.print(runs_table(runs))


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

    info = guarded(lambda: run_coroutine(fetch()))
    out.print(runs_table([info]))
    out.print(steps_table(info))


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
        result = with_progress(
            runner, lambda: runner.resume(run_id, human_input=answer, on_pending=choice)
        )
        report(result, target)

    guarded(work)


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

    count = guarded(lambda: run_coroutine(prune()))
    out.print(f"deleted {count} run{'s' if count != 1 else ''}")
