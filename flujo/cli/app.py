"""The ``flujo`` command (typer + rich): the root app, ``flujo run``, and its command groups."""

from __future__ import annotations

from typing import Annotated

import typer

import flujo
from flujo.cli.files import schema_command, validate_command
from flujo.cli.graph import graph_command
from flujo.cli.hints import Invocation
from flujo.cli.loading import load_runner, parse_input
from flujo.cli.options import ContextOption, ProfileOption, guarded, interrupted
from flujo.cli.render import out, report, with_progress
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
app.command("graph")(graph_command)
app.command("validate")(validate_command)
app.command("schema")(schema_command)


def _show_version(value: bool) -> None:
    if value:
        out().print(f"flujo {flujo.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_show_version,
            is_eager=True,
            help="Print flujo's version and exit.",
        ),
    ] = False,
) -> None:
    """Run flujo pipelines and manage their stored runs."""


@app.command("run")
def run_command(
    target: Annotated[
        str,
        typer.Argument(help="MODULE:ATTR of a Flujo runner, pipeline or step, or a pipeline file."),
    ],
    input_text: Annotated[
        str | None, typer.Option("--input", "-i", help="Input: JSON, or plain text.")
    ] = None,
    profile: ProfileOption = None,
    context: ContextOption = None,
    run_id: Annotated[str | None, typer.Option(help="Id for the new run.")] = None,
    replace: Annotated[
        bool,
        typer.Option(help="If a run with --run-id is stored, delete it and start over."),
    ] = False,
) -> None:
    """Run a pipeline, showing its steps as they go."""
    invocation = Invocation(target, profile, context)

    def work() -> None:
        runner = load_runner(target, profile, context)
        data = parse_input(input_text)
        # Chosen here, not in the run, so Ctrl-C can name the run to resume.
        chosen = run_id or runner.container.run_id()
        try:
            result = with_progress(runner, lambda: runner.run(data, run_id=chosen, replace=replace))
        except KeyboardInterrupt:
            interrupted(chosen, invocation)
        report(result, invocation)

    guarded(work)


def main() -> None:
    """Entry point of the ``flujo`` command."""
    app()
