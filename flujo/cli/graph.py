"""``flujo graph TARGET``: print a pipeline as a Mermaid flowchart."""

from __future__ import annotations

from typing import Annotated

import typer

from flujo.cli.loading import load_pipeline
from flujo.cli.options import guarded
from flujo.domain.dsl.mermaid import DIRECTIONS

__all__ = ["graph_command"]


def graph_command(
    target: Annotated[
        str,
        typer.Argument(
            help="MODULE:ATTR or file.py:ATTR of a Flujo runner, pipeline or step; or a "
            "pipeline file (.yaml)."
        ),
    ],
    direction: Annotated[
        str,
        typer.Option("--direction", "-d", help=f"Flowchart direction: {', '.join(DIRECTIONS)}."),
    ] = "TD",
) -> None:
    """Print a pipeline as a Mermaid flowchart (paste it into a ```mermaid block)."""
    # The chart goes out as plain text: a console would wrap or style a long line.
    typer.echo(guarded(lambda: load_pipeline(target).to_mermaid(direction)))
