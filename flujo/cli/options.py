"""What the commands share: common options, the one-line error report, the Ctrl-C report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.text import Text

from flujo.cli.hints import Invocation
from flujo.cli.render import err, error_line, report_findings
from flujo.domain.errors import FlujoError, PipelineFileError

__all__ = [
    "INTERRUPTED_EXIT_CODE",
    "ContextOption",
    "ProfileOption",
    "guarded",
    "interrupted",
    "run_coroutine",
]

T = TypeVar("T")

INTERRUPTED_EXIT_CODE = 130
"""What a shell reports for a command stopped by Ctrl-C (128 + SIGINT)."""

ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile", "-p", help="Container profile: a shipped name (testing) or a YAML path."
    ),
]
"""``--profile PROFILE``: the container profile (shipped name or path) a command builds from."""

ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context",
        "-c",
        help="MODULE:CLASS of the run's context model (default: the one the steps declare).",
    ),
]
"""``--context MODULE:CLASS``: the context model of a pipeline or step target."""


def guarded(work: Callable[[], T], shell: Callable[[str], str] | None = None) -> T:
    """Run ``work``; a flujo error becomes one line on stderr and exit code 1.

    A pipeline file that does not check is reported with every finding, one a line.

    ``shell`` rewrites the message first (to name CLI flags instead of Python arguments).
    """
    try:
        return work()
    except PipelineFileError as exc:
        report_findings(exc.findings, err())
        raise typer.Exit(1) from None
    except FlujoError as exc:
        message = str(exc) if shell is None else shell(str(exc))
        err().print(error_line(message, type(exc).__name__))
        raise typer.Exit(1) from None


def interrupted(run_id: str, invocation: Invocation) -> NoReturn:
    """Report a run stopped by Ctrl-C, with the command that continues it; exit 130."""
    err().print(
        Text.assemble(("interrupted", "bold yellow"), f" run {run_id}; continue it with:"),
    )
    err().print(f"  {invocation.resume_command(run_id)}")
    raise typer.Exit(INTERRUPTED_EXIT_CODE)


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a fresh event loop and return its result."""
    return asyncio.run(coroutine)
