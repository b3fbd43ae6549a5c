"""``flujo run|graph|validate FILE.yaml``, ``flujo runs resume ID FILE.yaml``, ``flujo schema``."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flujo import Pipeline
from flujo.domain.dsl.files import shipped_schema_text
from tests.unit.cli_support import (
    enter_project,
    error_lines,
    invoke,
    json_after_completed,
    run_id_of,
)

FILES = {
    "desk.py": textwrap.dedent(
        """
        from pydantic import BaseModel

        from flujo import PipelineContext


        class Desk(PipelineContext):
            words: int = 0


        class BigDesk(Desk):
            size: int = 1


        class Unrelated(PipelineContext):
            other: int = 0


        class Approval(BaseModel):
            approved: bool


        def count(text: str, *, context: Desk) -> int:
            context.words = len(text.split())
            return context.words


        def verdict(approval: Approval, *, context: Desk) -> str:
            return f"{context.words} words, approved={approval.approved}"
        """
    ),
    "desk.yaml": textwrap.dedent(
        """
        version: 1
        name: desk-words
        context: desk:Desk
        steps:
          - uses: desk:count
        """
    ),
    "review.yaml": textwrap.dedent(
        """
        version: 1
        context: desk:Desk
        steps:
          - uses: desk:count
          - name: approve
            human: {message: "Publish it?", input_model: desk:Approval}
          - uses: desk:verdict
        """
    ),
    "main.yaml": textwrap.dedent(
        """
        version: 1
        context: desk:Desk
        imports: {review: ./review.yaml}
        steps:
          - uses: imports.review.count
            name: first_count
        """
    ),
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from enter_project(tmp_path, monkeypatch, FILES)


def test_run_of_a_pipeline_file_runs_over_its_context_under_its_name(project: Path) -> None:
    result = invoke("run", "desk.yaml", "--input", "three short words")
    assert result.exit_code == 0, result.output
    assert json_after_completed(result.stdout) == 3
    listed = invoke("runs", "list", columns=200)
    assert run_id_of(result) in listed.stdout and "desk-words" in listed.stdout


def test_a_file_without_a_name_is_stored_under_its_stem(project: Path) -> None:
    result = invoke("run", "main.yaml", "--input", "a b")
    assert result.exit_code == 0, result.output
    assert " main@latest" in invoke("runs", "list", columns=200).stdout


def test_a_paused_file_run_resumes_from_the_file(project: Path) -> None:
    started = invoke("run", "review.yaml", "--input", "four words right here")
    assert started.exit_code == 0, started.output
    run_id = run_id_of(started)
    assert "Publish it?" in started.stdout
    assert f"flujo runs resume {run_id} review.yaml --human-input" in started.stdout
    resumed = invoke("runs", "resume", run_id, "review.yaml", "--human-input", '{"approved": true}')
    assert resumed.exit_code == 0, resumed.output
    assert json_after_completed(resumed.stdout) == "4 words, approved=True"


def test_context_may_name_a_subclass_of_the_files_model_only(project: Path) -> None:
    ok = invoke("run", "desk.yaml", "--input", "a b", "--context", "desk:BigDesk")
    assert ok.exit_code == 0, ok.output
    bad = invoke("run", "desk.yaml", "--input", "a b", "--context", "desk:Unrelated")
    assert bad.exit_code == 1
    assert error_lines(bad) == [
        "error: ConfigurationError: --context desk:Unrelated is not a desk.Desk, the context "
        "model desk.yaml declares"
    ]


def test_graph_of_a_file_draws_what_from_yaml_loads(project: Path) -> None:
    result = invoke("graph", "review.yaml", "--direction", "LR")
    assert result.exit_code == 0, result.output
    assert result.stdout == Pipeline.from_yaml("review.yaml").to_mermaid("LR") + "\n"


def test_validate_says_ok_with_the_count_of_steps_and_imported_files(project: Path) -> None:
    result = invoke("validate", "desk.yaml", "main.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "desk.yaml: ok, 1 top-level step",
        "main.yaml: ok, 1 top-level step, importing 1 file",
    ]


def test_schema_prints_the_shipped_json_schema(project: Path) -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    assert result.stdout == shipped_schema_text()
    assert json.loads(result.stdout)["title"] == "flujo pipeline file"


def test_a_file_target_that_is_missing_is_one_finding(project: Path) -> None:
    result = invoke("run", "nowhere.yaml")
    assert result.exit_code == 1
    assert error_lines(result) == [
        "nowhere.yaml:1:1: cannot read the pipeline file: no such file",
        "error: 1 problem in nowhere.yaml",
    ]
