"""Driving the ``flujo`` command in tests: a project folder, the command, reading its output."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from flujo.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
TESTING_PROFILE = "testing"
RUN_ID = re.compile(r"\brun ([0-9a-zA-Z_-]+)\b")


def enter_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]
) -> Iterator[Path]:
    """Make a project folder holding ``files``, work from it, and undo the imports after."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)
    # The CLI puts the working directory on sys.path (like `python -m`): undo it after.
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        module = sys.modules[name]
        if str(getattr(module, "__file__", "") or "").startswith(str(folder)):
            del sys.modules[name]


def invoke(*args: str, columns: int = 80, env: dict[str, str] | None = None) -> Result:
    """Run ``flujo ARGS`` in-process, on a terminal ``columns`` wide (80 unless told)."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns), **(env or {})})


def run_id_of(result: Result) -> str:
    """Return the run id the command printed (``... run ID ...``)."""
    match = RUN_ID.search(result.stdout + result.stderr)
    assert match, (result.stdout, result.stderr)
    return match.group(1)


def json_after_completed(stdout: str) -> Any:
    """Return the JSON output printed after ``completed run ID``."""
    _, _, rest = stdout.partition("completed run ")
    _, _, payload = rest.partition("\n")
    return json.loads(payload)


def error_lines(result: Result) -> list[str]:
    """Return the non-blank lines on stderr."""
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_fits(text: str, columns: int) -> None:
    """Assert no line of ``text`` is wider than ``columns``."""
    wide = [line for line in text.splitlines() if len(line) > columns]
    assert not wide, f"lines wider than {columns}: {wide}"


def subprocess_env(state_home: Path, columns: int = 80) -> dict[str, str]:
    """Return the environment of a ``python -m flujo`` subprocess using this worktree."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XDG_STATE_HOME": str(state_home),
        "COLUMNS": str(columns),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("FLUJO_STATE_URI", None)
    return env
