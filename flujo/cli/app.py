"""The ``flujo`` command (typer + rich): the root app, ``flujo run``, and its command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from flujo.cli.loading import load_runner, parse_input
from flujo.cli.options import ProfileOption, guarded
from flujo.cli.render import report, with_progress
from flujo.cli.runs import runs_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="flujo",
    help="Run flujo pipelines and manage their stored runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
"""The ``flujo`` command."""
app.add_typer(runs_app, name="runs")


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
        result = with_progress(runner, lambda: runner.run(data, run_id=run_id))
        report(result, target)

    guarded(work)


def main() -> None:
    """Entry point of the ``flujo`` command."""
    app()
