"""``flujo graph TARGET``: prints the pipeline's Mermaid chart; bad targets are one clear line."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flujo.cli.app import app
from tests.mermaid_chart import parse

MODULE = textwrap.dedent(
    """
    from flujo import Flujo, Step

    def same(x):
        return x

    first = Step.from_callable(same, name="first")
    review = Step.human_in_the_loop("Ship it?", name="approve")
    pipeline = first >> Step.map_over(Step.from_callable(same, name="each"), name="items") >> review
    runner = Flujo(first >> Step.from_callable(same, name="second"), persist_state=False)
    marked = Step.from_callable(same, name="[b]bold[/b] and [red]red[/]")
    number = 3
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "flows.py").write_text(MODULE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # loading a target extends sys.path
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name == "flows":
            del sys.modules[name]


def graph(*args: str) -> Result:
    return CliRunner().invoke(app, ["graph", *args])


def test_graph_prints_the_chart_of_a_pipeline(project: Path) -> None:
    result = graph("flows.py:pipeline")
    assert result.exit_code == 0, result.output
    chart = parse(result.stdout.rstrip("\n"))
    assert chart.arrows() == {("first", "each", None), ("each", "approve\nShip it?", None)}
    assert chart.frame_title("each") == "items: for each item, one at a time"
    assert result.stderr == ""


def test_graph_prints_what_to_mermaid_returns(project: Path) -> None:
    sys.path.insert(0, str(project))
    import flows  # type: ignore[import-not-found]

    assert graph("flows:pipeline").stdout == flows.pipeline.to_mermaid() + "\n"


def test_graph_of_a_runner_draws_its_pipeline(project: Path) -> None:
    chart = parse(graph("flows.py:runner").stdout.rstrip("\n"))
    assert chart.arrows() == {("first", "second", None)}


def test_graph_of_a_step_draws_one_node(project: Path) -> None:
    chart = parse(graph("flows.py:first").stdout.rstrip("\n"))
    assert list(chart.labels.values()) == ["first"]


def test_graph_takes_a_direction(project: Path) -> None:
    assert parse(graph("flows.py:runner", "-d", "LR").stdout.rstrip("\n")).direction == "LR"


def test_step_names_are_printed_literally_never_as_markup(project: Path) -> None:
    result = graph("flows.py:marked")
    assert result.exit_code == 0
    assert list(parse(result.stdout.rstrip("\n")).labels.values()) == [
        "[b]bold[/b] and [red]red[/]"
    ]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["flows.py"], ["MODULE:ATTR"]),
        (["flows.py:missing"], ["missing"]),
        (["flows.py:number"], ["int", "Pipeline"]),
        (["nowhere.py:pipeline"], ["nowhere.py"]),
        (["flows.py:runner", "--direction", "up"], ["'up'", "TD, LR, BT, RL"]),
        (["[x].py:pipeline"], ["[x].py"]),
    ],
    ids=["no-colon", "no-attr", "not-a-pipeline", "no-file", "bad-direction", "brackets"],
)
def test_a_bad_target_or_option_is_one_clear_line(
    project: Path, args: list[str], needles: list[str]
) -> None:
    result = graph(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ConfigurationError: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
