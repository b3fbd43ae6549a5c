"""How the commands show things: the consoles, literal text, a run's outcome, live progress.

Everything printed from user data — step names, outputs, feedback, error messages,
ids — is text, never markup: the consoles have markup and emoji codes off, and
styled output is built from ``rich.text.Text`` pieces, so ``[b]`` or ``:x:`` in a
message prints as written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from flujo.application.runner import Flujo
from flujo.cli.hints import Invocation
from flujo.domain.errors import Finding
from flujo.domain.events import HookEvent, RunFinished, StepFinished, StepStarted
from flujo.domain.models import PipelineResult

__all__ = [
    "STATUS_STYLES",
    "as_json",
    "err",
    "error_line",
    "findings_summary",
    "one_line",
    "out",
    "report",
    "report_findings",
    "shorten",
    "with_progress",
]


def out() -> Console:
    """Return a console on standard output (results, listings, progress)."""
    return _console(stderr=False)


def err() -> Console:
    """Return a console on standard error (failures and errors)."""
    return _console(stderr=True)


def _console(*, stderr: bool) -> Console:
    # Made per use, not at import: the terminal's width, colours and NO_COLOR / FORCE_COLOR
    # are read when something is printed. Soft wrap leaves a line longer than the terminal
    # to the terminal, never cut or broken, so ids and commands copy whole.
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


STATUS_STYLES = {
    "completed": "green",
    "failed": "red",
    "paused": "yellow",
    "running": "cyan",
    "cancelled": "magenta",
    "damaged": "bold red",
}
"""The colour of each run status (and of a stored run that cannot be read)."""

_SPACES = re.compile(r"\s+")


def one_line(text: str) -> str:
    """Return ``text`` with its lines joined by spaces (an error is reported on one line)."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def shorten(text: str, width: int) -> str:
    """Return ``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = _SPACES.sub(" ", text).strip()
    if len(flat) <= width:
        return flat
    return flat[: max(width - 1, 0)] + "…" if width > 0 else ""


def as_json(value: Any) -> str:
    """Return ``value`` as compact JSON (a value JSON cannot hold by its ``repr``)."""
    return json.dumps(value, default=repr, ensure_ascii=False)


def error_line(message: str, kind: str | None = None) -> Text:
    """Return ``error: KIND: MESSAGE`` (``error: MESSAGE`` without a kind) as literal text."""
    text = one_line(message)
    return Text.assemble(("error:", "bold red"), f" {kind}: {text}" if kind else f" {text}")


def findings_summary(findings: Sequence[Finding]) -> str:
    """Return ``N problem(s) in FILE, ...`` for a non-empty list of findings."""
    files = list(dict.fromkeys(finding.file for finding in findings))
    count = len(findings)
    return f"{count} problem{'s' if count != 1 else ''} in {', '.join(files)}"


def report_findings(findings: Sequence[Finding], console: Console) -> None:
    """Print each finding as ``file:line:column: message``, then an error line summing up."""
    for finding in findings:
        console.print(Text(str(finding)))
    console.print(error_line(findings_summary(findings)))


class _ProgressHook:
    """Shows each step of a run as it starts and ends."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=total)

    def __call__(self, event: HookEvent) -> None:
        if isinstance(event, StepStarted):
            self.progress.update(self.task, description=f"step {event.step_name}")
        elif isinstance(event, StepFinished):
            ok = event.result.success
            ms = event.result.latency_s * 1000
            self.progress.console.print(
                Text.assemble(
                    "  ",
                    ("ok", "green") if ok else ("failed", "red"),
                    f" {event.step_name} ({ms:.1f} ms)",
                ),
            )
            self.progress.advance(self.task)
        elif isinstance(event, RunFinished):
            self.progress.update(self.task, description=f"run {event.result.status}")


def report(result: PipelineResult[Any], invocation: Invocation) -> None:
    """Print how a run ended; a failed run exits 1."""
    run_id = result.run_id or ""
    if result.status == "completed":
        out().print(Text.assemble(("completed", "green"), f" run {run_id}"))
        out().print_json(as_json(result.output))
        return
    if result.status == "paused":
        message = one_line(result.pause_message or "")
        out().print(Text.assemble(("paused", "yellow"), f" run {run_id}: {message}"))
        # Never broken across lines: the command is meant to be copied whole.
        command = invocation.resume_command(run_id, human_input=True)
        out().print(f"resume with: {command}")
        return
    reason = one_line(result.error or result.feedback or "") or "unknown"
    err().print(Text.assemble(("failed", "bold red"), f" run {run_id}: {reason}"))
    raise typer.Exit(1)


def with_progress(runner: Flujo[Any, Any, Any], work: Callable[[], PipelineResult[Any]]) -> Any:
    """Call ``work`` (a run of ``runner``) while a progress bar follows its steps."""
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=out(), transient=True) as progress:
        hook = _ProgressHook(progress, total=len(runner.pipeline))
        runner.add_hook(hook)
        try:
            return work()
        finally:
            runner.remove_hook(hook)
