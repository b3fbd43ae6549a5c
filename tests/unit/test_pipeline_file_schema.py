"""The JSON Schema of pipeline files: shipped as generated, and it agrees with the loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from flujo.domain.dsl.files import pipeline_schema, shipped_schema_text
from flujo.domain.dsl.files.format import CONSTRUCTS, FILE_KEYS, KINDS, STEP_KEYS
from flujo.domain.dsl.files.schema import schema_text
from tests.unit.file_parts import every_kind

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "data" / "pipeline_files" / "broken"
GOOD = [
    ROOT / "examples" / "pipeline_files" / "triage.yaml",
    ROOT / "examples" / "pipeline_files" / "clarify.yaml",
    BROKEN / "imported" / "fine.yaml",
]
# Broken files whose problems are of shape: the schema must reject them too.
SHAPE_BROKEN = ["bad_version", "no_version", "unknown_keys", "wrong_types", "human"]


def _validator() -> Any:
    schema = json.loads(shipped_schema_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_shipped_schema_is_the_generated_one() -> None:
    # Regenerate with: python -c "from flujo.domain.dsl.files.schema import schema_text;
    # print(schema_text(), end='')" > flujo/domain/dsl/files/pipeline-file.schema.json
    assert shipped_schema_text() == schema_text()
    assert json.loads(shipped_schema_text()) == pipeline_schema()


def test_the_schema_knows_the_keys_the_loader_knows() -> None:
    schema = pipeline_schema()
    assert set(schema["properties"]) == {key.name for key in FILE_KEYS}
    step = schema["$defs"]["step"]
    assert set(step["properties"]) == {key.name for key in STEP_KEYS}
    assert [branch["required"] for branch in step["oneOf"]] == [[kind] for kind in KINDS]
    for kind, keys in CONSTRUCTS.items():
        assert set(step["properties"][kind]["properties"]) == {key.name for key in keys}, kind


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_files_fit_the_schema(path: Path) -> None:
    errors = list(_validator().iter_errors(yaml.safe_load(path.read_text(encoding="utf-8"))))
    assert errors == []


def test_a_written_pipeline_of_every_kind_fits_the_schema() -> None:
    data = yaml.safe_load(every_kind().to_yaml(name="all"))
    assert [e.message for e in _validator().iter_errors(data)] == []


@pytest.mark.parametrize("case", SHAPE_BROKEN)
def test_files_with_problems_of_shape_do_not_fit_the_schema(case: str) -> None:
    data = yaml.safe_load((BROKEN / f"{case}.yaml").read_text(encoding="utf-8"))
    # human.yaml's only shape problem is the empty message and a policy on a human step;
    # the schema catches the first.
    assert list(_validator().iter_errors(data)) != []
