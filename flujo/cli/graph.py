"""``flujo graph TARGET``: print a pipeline as a Mermaid flowchart."""

from __future__ import annotations

from typing import Annotated

import typer

from flujo.cli.loading import load_pipeline
from flujo.domain.dsl.mermaid import DIRECTIONS
from flujo.domain.errors import FlujoError

__all__ = ["graph_command"]


def graph_command(
    target: Annotated[
        str, typer.Argument(help="MODULE:ATTR or file.py:ATTR of a Flujo runner, pipeline or step.")
    ],
    direction: Annotated[
        str,
        typer.Option("--direction", "-d", help=f"Flowchart direction: {', '.join(DIRECTIONS)}."),
    ] = "TD",
) -> None:
    """Print a pipeline as a Mermaid flowchart (paste it into a ```mermaid block)."""
    try:
        chart = load_pipeline(target).to_mermaid(direction)
    except FlujoError as exc:
        # Printed as it is: user text (a step name, a path) is never read as markup.
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(chart)
