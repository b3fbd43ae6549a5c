"""``flujo runs``: list, show, resume and prune the runs in the run-state backend."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from flujo.application.core.resume import MISSING, run_info, run_infos
from flujo.application.run_management import PRUNED_BY_DEFAULT
from flujo.cli.hints import Invocation
from flujo.cli.listing import Row, listing, row_of
from flujo.cli.loading import load_container, load_runner, parse_duration, parse_input
from flujo.cli.options import (
    ContextOption,
    ProfileOption,
    guarded,
    interrupted,
    run_coroutine,
)
from flujo.cli.render import err, error_line, out, report, with_progress
from flujo.cli.timeline import run_view
from flujo.domain.errors import ConfigurationError, RunNotFoundError, StateCorruptError
from flujo.domain.interfaces import Serializer, StateBackend
from flujo.domain.models import RUN_STATUSES, DamagedRun, RunInfo, RunStatus

__all__ = ["runs_app"]

runs_app = typer.Typer(help="List, inspect, resume and prune stored runs.", no_args_is_help=True)
"""The ``flujo runs`` command group."""

_EVERY_RUN = 2**31 - 1
"""A ``list_runs`` limit no store reaches: ``runs prune`` previews every run it may delete."""


async def _why_failed(
    backend: StateBackend, serializer: Serializer, info: RunInfo
) -> DamagedRun | str | None:
    """Return the feedback of a failed run's failed step (its header names no error)."""
    try:
        steps = await backend.load_steps(info.run_id)
        record = await backend.load_run(info.run_id)
        if record is None:  # deleted since it was listed
            return None
        history = run_info(record, serializer, steps).step_history
    except StateCorruptError as exc:
        return DamagedRun.from_error(info.run_id, exc)
    failed = [r for r in history if not r.success]
    if not failed:
        return None
    return f"step {failed[-1].name!r}: {failed[-1].feedback or 'failed'}"


async def _rows(
    backend: StateBackend, serializer: Serializer, runs: Sequence[RunInfo | DamagedRun]
) -> list[Row]:
    """Return the rows of ``runs``, failed ones with the reason they failed."""
    rows = []
    for info in runs:
        reason = None
        if isinstance(info, RunInfo) and info.status == "failed" and not info.error:
            why = await _why_failed(backend, serializer, info)
            if isinstance(why, DamagedRun):
                rows.append(row_of(why))
                continue
            reason = why
        rows.append(row_of(info, reason))
    return rows


@runs_app.command("list")
def runs_list(
    status: Annotated[
        str | None, typer.Option(help=f"Only runs with this status ({'/'.join(RUN_STATUSES)}).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 20,
    profile: ProfileOption = None,
) -> None:
    """List stored runs, most recent first, with what each waits for or why it failed."""
    if status is not None and status not in RUN_STATUSES:
        allowed = ", ".join(RUN_STATUSES)
        err().print(error_line(f"unknown status {status!r}; use one of {allowed}"))
        raise typer.Exit(1)

    async def fetch() -> list[Row]:
        container = load_container(profile)
        backend = container.state_backend()
        try:
            serializer = container.serializer()
            stored = await backend.list_runs(status=status, limit=limit)
            return await _rows(backend, serializer, run_infos(stored, serializer))
        finally:
            await backend.close()

    rows = guarded(lambda: run_coroutine(fetch()))
    if not rows:
        out().print("no runs stored")
        return
    console = out()
    for line in listing(rows, console.width):
        console.print(line)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run to show.")],
    profile: ProfileOption = None,
) -> None:
    """Show one run, its steps on a timeline, and their outputs."""

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
    console = out()
    for line in run_view(info, console.width):
        console.print(line)


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
    context: ContextOption = None,
) -> None:
    """Continue a crashed, failed, cancelled or paused run after its last completed step.

    A run another process drives (it holds the run's lease) is refused with one
    line naming the owner and when the lease expires.
    """
    invocation = Invocation(target, profile, context)

    def work() -> None:
        if on_pending not in (None, "rerun", "accept"):
            raise ConfigurationError(
                f"--on-pending must be 'rerun' or 'accept', got {on_pending!r}"
            )
        runner = load_runner(target, profile, context)
        answer = MISSING if human_input is None else parse_input(human_input)
        choice: Any = on_pending
        try:
            result = with_progress(
                runner, lambda: runner.resume(run_id, human_input=answer, on_pending=choice)
            )
        except KeyboardInterrupt:
            interrupted(run_id, invocation)
        report(result, invocation)

    guarded(work, shell=lambda message: invocation.for_the_shell(message, run_id))


@runs_app.command("prune")
def runs_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age, e.g. 30m, 12h, 7d (required).")
    ],
    include_paused: Annotated[
        bool,
        typer.Option(help="Also delete paused runs (default: completed, failed, cancelled)."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the runs it would delete; delete nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking for confirmation.")
    ] = False,
    profile: ProfileOption = None,
) -> None:
    """Delete completed and failed runs not updated for a while (asks first, unless --yes)."""
    statuses: tuple[RunStatus, ...] = PRUNED_BY_DEFAULT
    if include_paused:
        statuses = (*statuses, "paused")

    container = guarded(lambda: load_container(profile))
    backend: StateBackend = guarded(container.state_backend)
    serializer: Serializer = container.serializer()

    async def candidates() -> tuple[float, list[Row]]:
        try:
            cutoff: float = container.clock() - parse_duration(older_than)
            found: list[RunInfo] = []
            for status in statuses:
                stored = await backend.list_runs(status=status, limit=_EVERY_RUN)
                found += [
                    info
                    for info in run_infos(stored, serializer)
                    if isinstance(info, RunInfo) and info.updated_at.timestamp() < cutoff
                ]
            found.sort(key=lambda info: info.updated_at, reverse=True)
            return cutoff, await _rows(backend, serializer, found)
        finally:
            await backend.close()

    async def prune(cutoff: float) -> int:
        try:
            count: int = await backend.prune(older_than=cutoff, statuses=statuses)
            return count
        finally:
            await backend.close()

    cutoff, found = guarded(lambda: run_coroutine(candidates()))
    plural = "s" if len(found) != 1 else ""
    if found:
        console = out()
        for line in listing(found, console.width):
            console.print(line)
    if dry_run:
        out().print(f"would delete {len(found)} run{plural} (dry run: nothing deleted)")
        return
    if not found:
        out().print("deleted 0 runs")
        return
    if not yes:
        if not sys.stdin.isatty():
            err().print(
                error_line(
                    f"runs prune would delete {len(found)} run{plural} and cannot ask first: "
                    "stdin is not a terminal; pass --yes to delete them (--dry-run only lists them)"
                ),
            )
            raise typer.Exit(1)
        if not typer.confirm(f"Delete these {len(found)} run{plural}?", default=False):
            out().print("nothing deleted")
            raise typer.Exit(1)
    count = guarded(lambda: run_coroutine(prune(cutoff)))
    out().print(f"deleted {count} run{'s' if count != 1 else ''}")
