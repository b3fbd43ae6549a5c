"""What every command shares: its common options and the one-line report of a flujo error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from flujo.cli.render import err
from flujo.domain.errors import FlujoError

__all__ = ["ProfileOption", "guarded", "run_coroutine"]

T = TypeVar("T")

ProfileOption = Annotated[
    Path | None,
    typer.Option("--profile", "-p", help="Container profile (YAML), e.g. containers/default.yaml."),
]
"""``--profile PATH``: the container profile a command builds its parts from."""


def guarded(work: Callable[[], T]) -> T:
    """Run ``work``; a flujo error becomes one line on stderr and exit code 1."""
    try:
        return work()
    except FlujoError as exc:
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a fresh event loop and return its result."""
    return asyncio.run(coroutine)
