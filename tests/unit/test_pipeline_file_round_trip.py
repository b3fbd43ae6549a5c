"""``pipeline.to_yaml()`` and back: a pipeline of importable parts reads back as an equal one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flujo import ConfigurationError, Pipeline, Step
from flujo.domain.dsl.files import load_pipeline_file, to_data
from flujo.domain.dsl.files.uses import copy_step
from flujo.domain.dsl.sub_pipeline import SubPipelineStep
from tests.unit import file_parts as fp
from tests.unit.file_parts import every_kind


@pytest.fixture(autouse=True)
def _keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield


def _walk(pipeline: Pipeline[Any, Any]) -> list[Step[Any, Any]]:
    found: list[Step[Any, Any]] = []
    for step in pipeline.steps:
        found.append(step)
        if step.fallback_step is not None:
            found += _walk(Pipeline.of(step.fallback_step))
        for value in vars_of(step):
            if isinstance(value, Pipeline):
                found += _walk(value)
            elif isinstance(value, dict):
                found += [
                    s for body in value.values() if isinstance(body, Pipeline) for s in _walk(body)
                ]
    return found


def vars_of(step: Step[Any, Any]) -> list[Any]:
    slots = getattr(type(step), "construct_slots", lambda: ())()
    return [getattr(step, slot) for slot in slots]


def _read_back(pipeline: Pipeline[Any, Any], folder: Path, **keys: Any) -> Pipeline[Any, Any]:
    path = folder / "written.yaml"
    path.write_text(pipeline.to_yaml(relative_to=folder, **keys), encoding="utf-8")
    return Pipeline.from_yaml(path)


def test_every_kind_of_step_reads_back_equal(tmp_path: Path) -> None:
    original = every_kind()
    again = _read_back(original, tmp_path, context_model=fp.Notes)
    assert to_data(again) == to_data(original)
    before, after = _walk(original), _walk(again)
    assert [type(s) for s in after] == [type(s) for s in before]
    assert [s.name for s in after] == [s.name for s in before]
    assert [s.identity for s in after] == [s.identity for s in before]
    assert [s.config for s in after] == [s.config for s in before]
    assert [getattr(s.fallback_step, "name", None) for s in after] == [
        getattr(s.fallback_step, "name", None) for s in before
    ]
    assert again.to_mermaid() == original.to_mermaid()


def test_the_file_keys_are_written_and_read(tmp_path: Path) -> None:
    pipeline = Pipeline.of(Step.from_callable(fp.count))
    text = pipeline.to_yaml(name="counting", description="Counts words.", context_model=fp.Notes)
    assert yaml.safe_load(text) == {
        "version": 1,
        "name": "counting",
        "description": "Counts words.",
        "context": "tests.unit.file_parts:Notes",
        "steps": [{"name": "count", "uses": "tests.unit.file_parts:count"}],
    }
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    loaded = load_pipeline_file(tmp_path / "c.yaml")
    assert (loaded.name, loaded.description, loaded.context_model) == (
        "counting",
        "Counts words.",
        fp.Notes,
    )


def test_a_step_a_decorator_made_is_written_by_its_path_over_its_own_config() -> None:
    data = to_data(fp.polite >> Step.from_callable(fp.clean) >> fp.guarded)
    polite, clean, guarded = data["steps"]
    assert polite == {"name": "polite", "uses": "tests.unit.file_parts:polite"}
    assert clean == {"name": "clean", "uses": "tests.unit.file_parts:clean"}
    assert guarded == {
        "name": "guarded",
        "uses": "tests.unit.file_parts:guarded",
    }  # its fallback too
    patched = to_data(Pipeline.of(fp.polite.with_config(max_retries=0, timeout_s=None)))
    assert patched["steps"] == [
        {
            "name": "polite",
            "uses": "tests.unit.file_parts:polite",
            "max_retries": 0,
            "timeout_s": None,
        }
    ]


def test_a_file_read_back_and_written_again_is_the_same_text(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "pipeline_files"
    loaded = load_pipeline_file(examples / "triage.yaml")
    text = loaded.pipeline.to_yaml(
        name=loaded.name, context_model=loaded.context_model, relative_to=examples
    )
    assert "imports:\n  clarify: ./clarify.yaml\n" in text
    (examples_copy := tmp_path / "t.yaml").write_text(
        text.replace("./clarify.yaml", str(examples / "clarify.yaml")), encoding="utf-8"
    )
    again = load_pipeline_file(examples_copy)
    assert to_data(again.pipeline) == to_data(loaded.pipeline)
    sub = again.pipeline.steps[2].branches["complaint"].steps[0]  # type: ignore[attr-defined]
    assert isinstance(sub, SubPipelineStep) and sub.source == str(examples / "clarify.yaml")


def _local() -> Step[Any, Any]:
    def inner(text: str) -> str:
        return text

    return Step.from_callable(inner, name="inner")


@pytest.mark.parametrize(
    ("pipeline", "fragment"),
    [
        (
            Step.branch_on(lambda x, c: "a", {"a": Step.from_callable(fp.clean)}, name="route"),
            "step 'route': condition <lambda> cannot be written as an import path",
        ),
        (_local(), "step 'inner': its callable _local.<locals>.inner cannot be written"),
        (
            SubPipelineStep("sub", Step.from_callable(fp.clean)),
            "step 'sub' is a sub-pipeline built in Python, not read from a file",
        ),
        (
            Step.from_callable(fp.clean, validators=[lambda out: True]),
            "step 'clean': validator <lambda> cannot be written",
        ),
    ],
)
def test_what_no_import_path_names_is_a_clear_error(pipeline: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Pipeline.of(pipeline).to_yaml()
    assert fragment in str(info.value)


def test_a_function_of_main_is_refused_naming_main() -> None:
    def job(text: str) -> str:
        return text

    job.__module__ = "__main__"
    job.__qualname__ = "job"
    with pytest.raises(ConfigurationError, match="defined in __main__, which another process"):
        Pipeline.of(Step.from_callable(job)).to_yaml()


def test_taking_away_the_fallback_of_a_named_step_cannot_be_written() -> None:
    bare = copy_step(fp.guarded, "guarded")
    bare.fallback_step = None
    with pytest.raises(ConfigurationError, match="a file cannot take it away"):
        Pipeline.of(bare).to_yaml()


def test_an_agent_is_found_by_the_module_attribute_that_holds_it() -> None:
    data = to_data(Pipeline.of(Step("agent", agent=fp.echo)))
    assert data["steps"] == [{"name": "agent", "uses": "tests.unit.file_parts:echo"}]
