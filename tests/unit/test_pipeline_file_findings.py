"""Checking pipeline files: every problem at once, each with file, line and column; no traceback.

The table is the folder ``tests/data/pipeline_files/broken``: each ``NAME.yaml`` sits
beside ``NAME.expected``, the findings ``flujo validate NAME.yaml`` must report, one
``file:line:column: message`` a line, in order (``...`` in a line stands for any text:
the wording of a YAML syntax error is the parser's, libyaml's or PyYAML's own). Files
under ``broken/imported/`` are only imported by the others.
"""

from __future__ import annotations

import pickle
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flujo import ConfigurationError, Pipeline
from flujo.domain.dsl.files import check_pipeline_file, load_pipeline_file
from flujo.domain.errors import Finding, PipelineFileError
from tests.unit.cli_support import invoke

BROKEN = Path(__file__).resolve().parents[1] / "data" / "pipeline_files" / "broken"
CASES = sorted(path.stem for path in BROKEN.glob("*.yaml"))


@pytest.fixture
def in_broken(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Work from the broken folder, so findings name files as the user gave them."""
    monkeypatch.chdir(BROKEN)
    monkeypatch.setattr(sys, "path", list(sys.path))  # loading puts file folders on it
    yield BROKEN


def _expected(case: str) -> list[str]:
    text = (BROKEN / f"{case}.expected").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _same(expected: list[str], found: list[str]) -> bool:
    patterns = [re.compile(".*".join(map(re.escape, line.split("...")))) for line in expected]
    return len(patterns) == len(found) and all(
        p.fullmatch(line) for p, line in zip(patterns, found, strict=True)
    )


def test_every_broken_file_has_its_expected_findings() -> None:
    assert CASES, "no broken files found"
    missing = [case for case in CASES if not (BROKEN / f"{case}.expected").is_file()]
    assert missing == []
    strays = sorted(p.stem for p in BROKEN.glob("*.expected") if p.stem not in CASES)
    assert strays == []


@pytest.mark.parametrize("case", CASES)
def test_a_broken_file_reports_exactly_its_findings(case: str, in_broken: Path) -> None:
    loaded, findings = check_pipeline_file(f"{case}.yaml")
    assert loaded is None
    shown = [str(finding) for finding in findings]
    assert _same(_expected(case), shown), "\n".join(shown)


@pytest.mark.parametrize("case", CASES)
def test_flujo_validate_prints_the_findings_and_exits_1(case: str, in_broken: Path) -> None:
    result = invoke("validate", f"{case}.yaml", columns=300)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert _same(_expected(case), lines[:-1])
    count = len(_expected(case))
    assert lines[-1].startswith(f"error: {count} problem{'s' if count != 1 else ''} in ")
    assert "Traceback" not in result.output


def test_every_finding_has_a_file_a_line_and_a_column(in_broken: Path) -> None:
    for case in CASES:
        for finding in check_pipeline_file(f"{case}.yaml")[1]:
            assert finding.file.endswith(".yaml") and finding.line >= 1 and finding.column >= 1


def test_from_yaml_raises_one_error_holding_every_finding(in_broken: Path) -> None:
    with pytest.raises(PipelineFileError) as info:
        Pipeline.from_yaml("wrong_types.yaml")
    error = info.value
    assert isinstance(error, ConfigurationError)
    assert [str(f) for f in error.findings] == _expected("wrong_types")
    assert str(error).splitlines()[1:] == _expected("wrong_types")
    assert str(error).startswith(f"{len(error.findings)} problems in pipeline files:")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.findings == error.findings and str(copy) == str(error)


def test_flujo_run_of_a_broken_file_prints_the_findings_and_runs_nothing(
    in_broken: Path,
) -> None:
    result = invoke("run", "unknown_keys.yaml", "--profile", "testing", columns=300)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:-1] == _expected("unknown_keys")
    assert result.stderr.splitlines()[-1] == "error: 5 problems in unknown_keys.yaml"
    assert "completed" not in result.stdout and "Traceback" not in result.output


def test_validate_reports_several_files_and_ok_ones(in_broken: Path) -> None:
    result = invoke("validate", "imported/fine.yaml", "bad_version.yaml", columns=300)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "imported/fine.yaml: ok, 2 top-level steps",
        *_expected("bad_version"),
        "error: 1 problem in bad_version.yaml",
    ]


def test_a_python_tag_builds_nothing_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    file = tmp_path / "evil.yaml"
    file.write_text(
        "version: 1\nsteps:\n"
        f"  - uses: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path "
        f'["{marker}"]]\n',
        encoding="utf-8",
    )
    loaded, findings = check_pipeline_file(file)
    assert loaded is None and not marker.exists()
    assert len(findings) == 1 and "could not determine a constructor" in findings[0].message


def test_a_finding_names_the_file_as_the_user_reached_it(in_broken: Path, tmp_path: Path) -> None:
    # The broken folder's import of a missing file, reached from the folder above.
    findings = check_pipeline_file(Path("..") / "broken" / "imports.yaml")[1]
    assert findings[0] == Finding(
        "../broken/imports.yaml",
        4,
        9,
        "imports: gone: no pipeline file at ../broken/imported/missing.yaml",
    )


def test_a_file_that_is_not_there_or_not_text_is_one_finding(tmp_path: Path) -> None:
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00version")
    (tmp_path / "list.yaml").write_text("- version: 1\n", encoding="utf-8")
    assert [str(f) for f in check_pipeline_file(tmp_path / "nope.yaml")[1]] == [
        f"{tmp_path / 'nope.yaml'}:1:1: cannot read the pipeline file: no such file"
    ]
    assert [f.message for f in check_pipeline_file(tmp_path / "binary.yaml")[1]] == [
        "cannot read the pipeline file: it is not UTF-8 text"
    ]
    assert [f.message for f in check_pipeline_file(tmp_path / "list.yaml")[1]] == [
        "a pipeline file is a mapping with version: 1 and a list of steps"
    ]


def test_a_module_that_raises_while_it_imports_is_a_finding(tmp_path: Path) -> None:
    (tmp_path / "exploding.py").write_text("raise RuntimeError('no config')\n", encoding="utf-8")
    (tmp_path / "needs_dep.py").write_text("import not_installed_dep\n", encoding="utf-8")
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(3)\n", encoding="utf-8")
    file = tmp_path / "p.yaml"
    file.write_text(
        "version: 1\nsteps:\n"
        "  - uses: exploding:step\n"
        "  - uses: needs_dep:step\n"
        "  - uses: quits:step\n",
        encoding="utf-8",
    )
    old_path = list(sys.path)
    try:
        messages = [f.message for f in check_pipeline_file(file)[1]]
    finally:
        sys.path[:] = old_path
        for name in ("exploding", "needs_dep", "quits"):
            sys.modules.pop(name, None)
    assert messages == [
        "step exploding:step: cannot import 'exploding:step': importing 'exploding' raised "
        "RuntimeError: no config",
        "step needs_dep:step: cannot import 'needs_dep:step': importing 'needs_dep' failed: "
        "ModuleNotFoundError: No module named 'not_installed_dep'",
        "step quits:step: cannot import 'quits:step': importing 'quits' raised SystemExit: 3",
    ]


def test_load_pipeline_file_of_a_good_file_raises_nothing(in_broken: Path) -> None:
    loaded = load_pipeline_file("imported/fine.yaml")
    assert loaded.pipeline.step_names == ["normalize", "needs_other"]
