"""``flujo run MODULE:PIPELINE`` over a typed context: the one its steps declare, or --context."""

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

TYPED = textwrap.dedent(
    """
    from __future__ import annotations

    from pathlib import Path

    from pydantic import BaseModel, Field

    from flujo import Flujo, PipelineContext, Step, step


    class Words(PipelineContext):
        words: list[str] = Field(default_factory=list)


    class Tagged(Words):
        tag: str = "none"


    class Other(PipelineContext):
        n: int = 0


    class Answer(BaseModel):
        ok: bool


    @step
    def split(text: str, *, context: Words) -> int:
        context.words = text.split()
        return len(context.words)


    @step
    def tag(count: int, *, context: Tagged) -> str:
        context.tag = f"{count} words"
        return context.tag


    @step
    def report(data: object, *, context: Words) -> dict:
        if Path("BROKEN").exists():
            raise RuntimeError("broken while the flag exists")
        return {"words": context.words, "type": type(context).__name__}


    @step
    def other(n: object, *, context: Other) -> int:
        return context.n


    def check(answer: Answer, *, context: Words) -> dict:
        return {"ok": answer.ok, "words": context.words}


    pipeline = split >> report
    tagged = split >> tag >> report
    clash = split >> other
    flaky = split >> report
    review = (
        split
        >> Step.human_in_the_loop("Fine?", Answer, name="ask")
        >> Step.from_callable(check, name="check")
    )
    untyped = Step.from_callable(lambda data: data, name="plain")
    runner = Flujo(pipeline, context_model=Words, pipeline_name="typed-runner")
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from enter_project(tmp_path, monkeypatch, {"typed.py": TYPED})


def test_a_pipeline_runs_over_the_context_its_steps_declare(project: Path) -> None:
    result = invoke("run", "typed.py:pipeline", "--input", "three short words")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert json_after_completed(result.stdout) == {
        "words": ["three", "short", "words"],
        "type": "Words",
    }


def test_the_most_derived_declared_context_is_used(project: Path) -> None:
    result = invoke("run", "typed.py:tagged", "--input", "a b")
    assert result.exit_code == 0, result.stderr
    assert json_after_completed(result.stdout)["type"] == "Tagged"


def test_context_names_the_class_explicitly(project: Path) -> None:
    result = invoke("run", "typed.py:pipeline", "--input", "a b", "--context", "typed.py:Tagged")
    assert result.exit_code == 0, result.stderr
    assert json_after_completed(result.stdout)["type"] == "Tagged"


def test_context_gives_a_class_to_a_pipeline_that_declares_none(project: Path) -> None:
    result = invoke("run", "typed.py:untyped", "--input", "1", "--context", "typed.py:Other")
    assert result.exit_code == 0, result.stderr


def test_steps_declaring_unrelated_contexts_are_one_line_naming_them_and_the_flag(
    project: Path,
) -> None:
    result = invoke("run", "typed.py:clash", "--input", "a")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "step 'split' takes typed.Words" in line
    assert "step 'other' takes typed.Other" in line
    assert "--context MODULE:CLASS" in line


def test_a_context_the_steps_cannot_take_is_one_line(project: Path) -> None:
    result = invoke("run", "typed.py:pipeline", "--input", "a", "--context", "typed.py:Other")
    (line,) = error_lines(result)
    assert "typed.Other is not a typed.Words, which step 'split' declares" in line


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("typed.py:Answer", "Answer; expected a subclass of flujo.PipelineContext"),
        ("typed.py:split", "Step; expected a subclass of flujo.PipelineContext"),
        ("typed.py:Nope", "no attribute 'Nope'"),
        ("Words", "--context 'Words' must look like MODULE:ATTR"),
    ],
)
def test_a_bad_context_is_one_line(project: Path, spec: str, needle: str) -> None:
    result = invoke("run", "typed.py:untyped", "--context", spec)
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert needle in line, line


def test_a_context_module_spelled_another_way_is_named_as_loaded_twice(project: Path) -> None:
    result = invoke("run", "typed.py:pipeline", "--input", "a", "--context", "typed:Words")
    (line,) = error_lines(result)
    assert "loaded twice" in line, line


def test_context_is_refused_for_a_runner_target(project: Path) -> None:
    result = invoke("run", "typed.py:runner", "--context", "typed.py:Words")
    (line,) = error_lines(result)
    assert "typed.py:runner is a Flujo runner" in line and "--context applies only" in line


def test_a_failed_typed_run_resumes_over_the_same_context(project: Path) -> None:
    (project / "BROKEN").touch()
    failed = invoke("run", "typed.py:flaky", "--input", "x y")
    assert failed.exit_code == 1
    (project / "BROKEN").unlink()
    resumed = invoke("runs", "resume", run_id_of(failed), "typed.py:flaky")
    assert resumed.exit_code == 0, resumed.stderr
    assert json_after_completed(resumed.stdout) == {"words": ["x", "y"], "type": "Words"}


def test_a_paused_typed_run_resumes_with_its_context_and_the_hint_repeats_context(
    project: Path,
) -> None:
    paused = invoke("run", "typed.py:review", "--input", "x y", "--context", "typed.py:Tagged")
    assert paused.exit_code == 0, paused.stderr
    run_id = run_id_of(paused)
    hint = f"flujo runs resume {run_id} typed.py:review --context typed.py:Tagged --human-input"
    assert hint in paused.stdout
    done = invoke(
        "runs",
        "resume",
        run_id,
        "typed.py:review",
        "--context",
        "typed.py:Tagged",
        "--human-input",
        '{"ok": true}',
    )
    assert done.exit_code == 0, done.stderr
    assert json_after_completed(done.stdout) == {"ok": True, "words": ["x", "y"]}
