"""``flujo validate FILE...`` and ``flujo schema``: pipeline files checked, and their schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from flujo.cli.render import out, report_findings
from flujo.domain.dsl.files import check_pipeline_file, shipped_schema_text

__all__ = ["schema_command", "validate_command"]


def validate_command(
    files: Annotated[
        list[Path], typer.Argument(help="Pipeline files (.yaml) to check, with what they import.")
    ],
) -> None:
    """Check pipeline files without running them; list every problem with file:line:column.

    Exits 1 if any file has a problem. Checking imports the Python modules the files
    name, as running them would.
    """
    console = out()
    found = []
    for path in files:
        loaded, findings = check_pipeline_file(path)
        if loaded is None:
            found += findings
            continue
        steps = len(loaded.pipeline)
        others = len(loaded.files) - 1
        imported = f", importing {others} file{'s' if others != 1 else ''}" if others else ""
        console.print(
            Text(f"{path}: ok, {steps} top-level step{'s' if steps != 1 else ''}{imported}")
        )
    if found:
        report_findings(list(dict.fromkeys(found)), console)
        raise typer.Exit(1)


def schema_command() -> None:
    """Print the JSON Schema of pipeline files (for editors: completion and checks)."""
    typer.echo(shipped_schema_text(), nl=False)
