"""The ``flujo`` command prints user text as written: brackets and colons are never markup."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.cli_support import (
    enter_project,
    error_lines,
    invoke,
    json_after_completed,
    run_id_of,
)

MARKUP = textwrap.dedent(
    """
    from pydantic import BaseModel

    from flujo import Step


    class Answer(BaseModel):
        text: str


    def missing(x):
        raise KeyError("missing [user] in payload; see [docs]")


    def closing_tag(x):
        raise ValueError("a stray [/] closes nothing; [bold red]not red[/]")


    def bold(x):
        return "[b]bold[/b] :x: :thumbs_up:"


    def echo(x):
        return x


    keyerror = Step.from_callable(missing, name="lookup")
    stray = Step.from_callable(closing_tag, name="stray")
    marked = Step.from_callable(bold, name="mark")
    bracketed = (
        Step.from_callable(echo, name="[step] :x:") >> Step.from_callable(missing, name="two")
    )
    asks = (
        Step.from_callable(echo, name="first")
        >> Step.human_in_the_loop("Approve [this]? :x:", Answer, name="ask")
        >> Step.from_callable(lambda a: a.text, name="answer")
    )
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from enter_project(tmp_path, monkeypatch, {"marks.py": MARKUP})


def test_a_step_error_with_brackets_prints_them(project: Path) -> None:
    result = invoke("run", "marks.py:keyerror", "--input", "1")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert line.endswith("KeyError: 'missing [user] in payload; see [docs]'"), line


def test_a_closing_tag_in_an_error_neither_crashes_nor_styles(project: Path) -> None:
    result = invoke("run", "marks.py:stray", "--input", "1")
    assert result.exit_code == 1, result.exception
    (line,) = error_lines(result)
    assert "a stray [/] closes nothing; [bold red]not red[/]" in line


def test_an_output_with_markup_and_emoji_codes_prints_as_written(project: Path) -> None:
    result = invoke("run", "marks.py:marked", "--input", "1")
    assert result.exit_code == 0, result.stderr
    assert json_after_completed(result.stdout) == "[b]bold[/b] :x: :thumbs_up:"

    shown = invoke("runs", "show", run_id_of(result))
    assert shown.exit_code == 0, shown.stderr
    assert '"[b]bold[/b] :x: :thumbs_up:"' in shown.stdout


def test_step_names_with_brackets_print_in_progress_show_and_the_reason(project: Path) -> None:
    result = invoke("run", "marks.py:bracketed", "--input", "1")
    assert result.exit_code == 1
    assert "ok [step] :x: (" in result.stdout
    shown = invoke("runs", "show", run_id_of(result))
    assert "[step] :x:" in shown.stdout
    assert "KeyError: 'missing [user] in payload; see [docs]'" in shown.stdout


def test_the_failure_reason_in_runs_list_keeps_its_brackets(project: Path) -> None:
    run_id = run_id_of(invoke("run", "marks.py:keyerror", "--input", "1"))
    listed = invoke("runs", "list", columns=200)
    row = next(line for line in listed.stdout.splitlines() if run_id in line)
    assert "KeyError: 'missing [user] in payload; see [docs]'" in row


def test_a_pause_message_and_its_answer_print_as_written(project: Path) -> None:
    paused = invoke("run", "marks.py:asks", "--input", "1")
    assert paused.exit_code == 0, paused.stderr
    assert "Approve [this]? :x:" in paused.stdout
    run_id = run_id_of(paused)
    assert "Approve [this]? :x:" in invoke("runs", "list").stdout

    done = invoke(
        "runs", "resume", run_id, "marks.py:asks", "--human-input", '{"text": "[i]yes[/i] :x:"}'
    )
    assert done.exit_code == 0, done.stderr
    assert json_after_completed(done.stdout) == "[i]yes[/i] :x:"


def test_a_target_attribute_in_brackets_is_named(project: Path) -> None:
    (project / "mark.py").write_text("x = 1\n", encoding="utf-8")
    result = invoke("run", "mark:[x]")
    (line,) = error_lines(result)
    assert "module 'mark' has no attribute '[x]'" in line, line


def test_a_run_id_with_brackets_prints_as_written(project: Path) -> None:
    result = invoke("run", "marks.py:marked", "--run-id", "[red]job[/red]")
    assert result.exit_code == 0, result.stderr
    assert "completed run [red]job[/red]" in result.stdout
    assert "[red]job[/red]" in invoke("runs", "list").stdout
    assert "run [red]job[/red]" in invoke("runs", "show", "[red]job[/red]").stdout


def test_the_error_of_a_profile_that_is_not_yaml_keeps_its_text(project: Path) -> None:
    (project / "broken.yaml").write_text("state: [unclosed\n", encoding="utf-8")
    result = invoke("runs", "list", "--profile", "broken.yaml")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "broken.yaml is not valid YAML" in line
    assert "[unclosed" in line or "flow sequence" in line, line
    # What the YAML parser said is all there: its position marks are not eaten as tags.
    assert "line 1, column" in line, line


def test_a_profile_that_is_not_a_mapping_names_what_it_found(project: Path) -> None:
    (project / "list.yaml").write_text("- [a]\n", encoding="utf-8")
    result = invoke("runs", "list", "--profile", "list.yaml")
    (line,) = error_lines(result)
    assert "must be a mapping, got list" in line, line
