"""The ``flujo`` command: run, runs list/show/resume/prune, and one clear line for every error."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from flujo.cli.app import app, main

ROOT = Path(__file__).resolve().parents[2]
TESTING_PROFILE = "testing"
RUN_ID = re.compile(r"\brun ([0-9a-f]{32})\b")

PIPELINE_MODULE = textwrap.dedent(
    """
    from pathlib import Path

    from pydantic import BaseModel

    from flujo import Flujo, Step


    class Approval(BaseModel):
        approved: bool
        reviewer: str


    def double(x):
        return x * 2


    def shout(x):
        return {"text": str(x).upper()}


    def kaboom(x):
        raise ValueError("kaboom in step bad")


    def broken_while_flag_exists(x):
        if Path("BROKEN").exists():
            raise RuntimeError("flag file present")
        return x + 1


    def finish(approval):
        return {"approved": approval.approved, "by": approval.reviewer}


    pipeline = Step.from_callable(double, name="double") >> Step.from_callable(double, name="again")
    texty = Step.from_callable(shout, name="shout")
    failing = Step.from_callable(double, name="double") >> Step.from_callable(kaboom, name="bad")
    flaky = (
        Step.from_callable(double, name="double")
        >> Step.from_callable(broken_while_flag_exists, name="flaky")
    )
    review = (
        Step.from_callable(double, name="double")
        >> Step.human_in_the_loop("Approve the number?", Approval, name="approve")
        >> Step.from_callable(finish, name="finish")
    )
    runner = Flujo(pipeline, pipeline_name="runner-pipeline")
    single = Step.from_callable(double, name="only")
    number = 5
    """
)


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUJO_STATE_URI", raising=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "pipe.py").write_text(PIPELINE_MODULE, encoding="utf-8")
    monkeypatch.chdir(folder)
    # The CLI puts the working directory on sys.path (like `python -m`): undo it after.
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("flujo_cli_test_"):
            del sys.modules[name]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def _run_id(result: Result) -> str:
    match = RUN_ID.search(result.stdout + result.stderr)
    assert match, (result.stdout, result.stderr)
    return match.group(1)


def _json_after_completed(stdout: str) -> Any:
    _, _, rest = stdout.partition("completed run ")
    _, _, payload = rest.partition("\n")
    return json.loads(payload)


def assert_one_error_line(result: Result, *needles: str) -> str:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    # Only flujo's own exits: no exception escaped the command.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    return lines[0]


# --- flujo run -------------------------------------------------------------------------


def test_run_prints_completed_and_the_json_output(project: Path) -> None:
    result = invoke("run", "pipe.py:pipeline", "--input", "3")

    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "completed run" in result.stdout
    assert len(_run_id(result)) == 32
    assert _json_after_completed(result.stdout) == 12
    assert "double" in result.stdout and "again" in result.stdout  # step progress


def test_run_takes_plain_text_input_and_prints_structured_output(project: Path) -> None:
    result = invoke("run", "pipe.py:texty", "--input", "hello world")
    assert result.exit_code == 0, result.stderr
    assert _json_after_completed(result.stdout) == {"text": "HELLO WORLD"}


def test_run_with_a_module_target_from_the_working_directory(project: Path) -> None:
    name = f"flujo_cli_test_{uuid.uuid4().hex[:8]}"
    (project / f"{name}.py").write_text(PIPELINE_MODULE, encoding="utf-8")
    result = invoke("run", f"{name}:pipeline", "--input", "4")
    assert result.exit_code == 0, result.stderr
    assert _json_after_completed(result.stdout) == 16


def test_run_uses_the_given_run_id(project: Path) -> None:
    result = invoke("run", "pipe.py:pipeline", "--input", "1", "--run-id", "f" * 32)
    assert result.exit_code == 0, result.stderr
    assert _run_id(result) == "f" * 32
    shown = invoke("runs", "show", "f" * 32)
    assert shown.exit_code == 0, shown.stderr


def test_a_failing_pipeline_exits_1_with_one_line_naming_the_error(project: Path) -> None:
    result = invoke("run", "pipe.py:failing", "--input", "3")
    line = assert_one_error_line(result, "failed", "ValueError", "kaboom in step bad")
    assert _run_id(result) in line


def test_a_paused_run_prints_the_resume_hint(project: Path) -> None:
    result = invoke("run", "pipe.py:review", "--input", "3")

    assert result.exit_code == 0, result.stderr
    run_id = _run_id(result)
    assert "paused" in result.stdout
    assert "Approve the number?" in result.stdout
    assert f"flujo runs resume {run_id} pipe.py:review --human-input" in result.stdout


def test_run_with_the_testing_profile_keeps_state_in_memory(
    project: Path, isolated_state_home: Path
) -> None:
    result = invoke("run", "pipe.py:pipeline", "--input", "2", "--profile", str(TESTING_PROFILE))
    assert result.exit_code == 0, result.stderr
    assert _json_after_completed(result.stdout) == 8
    assert not (isolated_state_home / "flujo" / "runs.db").exists()
    assert sorted(p.name for p in project.iterdir()) == ["pipe.py"]


def test_run_with_the_default_state_stores_the_run_under_the_state_home(
    project: Path, isolated_state_home: Path
) -> None:
    result = invoke("run", "pipe.py:pipeline", "--input", "2")
    assert result.exit_code == 0, result.stderr
    assert (isolated_state_home / "flujo" / "runs.db").is_file()
    assert sorted(p.name for p in project.iterdir()) == ["pipe.py"]


def test_a_flujo_runner_target_runs_with_its_own_pipeline_name(project: Path) -> None:
    result = invoke("run", "pipe.py:runner", "--input", "5")
    assert result.exit_code == 0, result.stderr
    listed = invoke("runs", "list")
    assert "runner-pipeline" in listed.stdout
    assert _run_id(result) in listed.stdout


def test_a_flujo_runner_target_with_a_profile_is_an_error(project: Path) -> None:
    result = invoke("run", "pipe.py:runner", "--profile", str(TESTING_PROFILE))
    assert_one_error_line(result, "error:", "pipe.py:runner", "--profile")


def test_a_single_step_target_runs(project: Path) -> None:
    result = invoke("run", "pipe.py:single", "--input", "21")
    assert result.exit_code == 0, result.stderr
    assert _json_after_completed(result.stdout) == 42


@pytest.mark.parametrize(
    ("target", "needles"),
    [
        ("pipe.py", ("MODULE:ATTR",)),
        ("pipe.py:", ("MODULE:ATTR",)),
        (":pipeline", ("MODULE:ATTR",)),
        ("missing.py:pipeline", ("missing.py",)),
        ("flujo_no_such_module_xyz:pipeline", ("flujo_no_such_module_xyz",)),
        ("pipe.py:nothing_here", ("nothing_here",)),
        ("pipe.py:number", ("pipe.py:number", "int", "Pipeline")),
        ("pipe.py:Approval", ("pipe.py:Approval", "Pipeline")),
    ],
    ids=[
        "no-colon",
        "no-attr",
        "no-module",
        "missing-file",
        "missing-module",
        "missing-attr",
        "int",
        "a-class",
    ],
)
def test_a_bad_target_is_one_clear_line(project: Path, target: str, needles: tuple[str]) -> None:
    result = invoke("run", target, "--input", "1")
    assert_one_error_line(result, "error:", *needles)


def test_a_target_file_with_a_syntax_error_is_one_clear_line(project: Path) -> None:
    (project / "broken.py").write_text("def oops(:\n    pass\n", encoding="utf-8")
    result = invoke("run", "broken.py:pipeline", "--input", "1")
    assert_one_error_line(result, "error:", "broken.py")


def test_a_target_module_raising_at_import_is_one_clear_line(project: Path) -> None:
    (project / "raises.py").write_text("raise RuntimeError('bad setup')\n", encoding="utf-8")
    result = invoke("run", "raises.py:pipeline", "--input", "1")
    assert_one_error_line(result, "error:", "raises.py", "bad setup")


def test_a_missing_profile_is_one_clear_line(project: Path) -> None:
    result = invoke("run", "pipe.py:pipeline", "--profile", "nope.yaml")
    assert_one_error_line(result, "error:", "nope.yaml")


def test_an_unknown_state_uri_scheme_is_one_clear_line(project: Path) -> None:
    result = invoke("runs", "list", env={"FLUJO_STATE_URI": "redis://localhost"})
    assert_one_error_line(result, "error:", "redis", "sqlite://")


# --- flujo runs list / show ------------------------------------------------------------


def _three_runs() -> dict[str, str]:
    ids = {}
    for status, target in [
        ("completed", "pipe.py:pipeline"),
        ("failed", "pipe.py:failing"),
        ("paused", "pipe.py:review"),
    ]:
        ids[status] = _run_id(invoke("run", target, "--input", "1"))
    return ids


def test_runs_list_shows_full_run_ids_and_statuses(project: Path) -> None:
    ids = _three_runs()
    result = invoke("runs", "list")

    assert result.exit_code == 0, result.stderr
    for status, run_id in ids.items():
        row = next(line for line in result.stdout.splitlines() if run_id in line)
        assert status in row
    paused_row = next(line for line in result.stdout.splitlines() if ids["paused"] in line)
    assert "Approve the number?" in paused_row
    assert "review" in paused_row  # the pipeline column names the target's attribute


def test_runs_list_keeps_ids_whole_in_a_narrow_terminal(project: Path) -> None:
    ids = _three_runs()
    result = CliRunner().invoke(app, ["runs", "list"], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.stderr
    for run_id in ids.values():
        assert run_id in result.stdout


def test_runs_list_filters_by_status(project: Path) -> None:
    ids = _three_runs()
    result = invoke("runs", "list", "--status", "failed")

    assert result.exit_code == 0, result.stderr
    assert ids["failed"] in result.stdout
    assert ids["completed"] not in result.stdout
    assert ids["paused"] not in result.stdout


def test_runs_list_limit(project: Path) -> None:
    ids = _three_runs()
    result = invoke("runs", "list", "--limit", "1")
    assert result.exit_code == 0, result.stderr
    shown = [run_id for run_id in ids.values() if run_id in result.stdout]
    assert shown == [ids["paused"]]


def test_runs_list_with_nothing_stored(project: Path) -> None:
    result = invoke("runs", "list")
    assert result.exit_code == 0, result.stderr
    assert "no runs" in result.stdout


def test_runs_list_unknown_status_exits_1(project: Path) -> None:
    result = invoke("runs", "list", "--status", "finished")
    assert_one_error_line(result, "error:", "finished")


def test_runs_show_lists_the_steps(project: Path) -> None:
    ids = _three_runs()
    result = invoke("runs", "show", ids["failed"])

    assert result.exit_code == 0, result.stderr
    assert ids["failed"] in result.stdout
    assert "double" in result.stdout and "bad" in result.stdout
    assert "kaboom in step bad" in result.stdout
    assert "failed" in result.stdout


def test_runs_show_of_an_unknown_run_is_one_error_line(project: Path) -> None:
    result = invoke("runs", "show", "0123456789abcdef0123456789abcdef")
    assert_one_error_line(result, "error:", "RunNotFoundError", "0123456789abcdef0123456789abcdef")


def test_runs_show_of_a_corrupt_run_is_one_error_line(
    project: Path, isolated_state_home: Path
) -> None:
    ids = _three_runs()
    conn = sqlite3.connect(isolated_state_home / "flujo" / "runs.db")
    try:
        with conn:
            conn.execute(
                "UPDATE flujo_steps SET result = ? WHERE run_id = ?", (b"\xff{oops", ids["failed"])
            )
    finally:
        conn.close()
    result = invoke("runs", "show", ids["failed"])
    assert_one_error_line(result, "error:", "StateCorruptError", ids["failed"])


# --- flujo runs resume -----------------------------------------------------------------


def test_runs_resume_with_human_input_completes(project: Path) -> None:
    run_id = _run_id(invoke("run", "pipe.py:review", "--input", "3"))

    result = invoke(
        "runs",
        "resume",
        run_id,
        "pipe.py:review",
        "--human-input",
        '{"approved": true, "reviewer": "ana"}',
    )

    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert f"completed run {run_id}" in result.stdout
    assert _json_after_completed(result.stdout) == {"approved": True, "by": "ana"}
    listed = invoke("runs", "list", "--status", "completed")
    assert run_id in listed.stdout


def test_runs_resume_with_invalid_human_input_keeps_the_run_paused(project: Path) -> None:
    run_id = _run_id(invoke("run", "pipe.py:review", "--input", "3"))

    bad = invoke(
        "runs", "resume", run_id, "pipe.py:review", "--human-input", '{"approved": "perhaps"}'
    )
    assert_one_error_line(bad, "error:", "HumanInputError", "approved")
    assert run_id in invoke("runs", "list", "--status", "paused").stdout

    good = invoke(
        "runs",
        "resume",
        run_id,
        "pipe.py:review",
        "--human-input",
        '{"approved": false, "reviewer": "bo"}',
    )
    assert good.exit_code == 0, good.stderr
    assert _json_after_completed(good.stdout) == {"approved": False, "by": "bo"}


def test_runs_resume_of_a_paused_run_without_input_names_what_it_waits_for(
    project: Path,
) -> None:
    run_id = _run_id(invoke("run", "pipe.py:review", "--input", "3"))
    result = invoke("runs", "resume", run_id, "pipe.py:review")
    assert_one_error_line(result, "error:", "ResumeError", "Approve the number?")


def test_runs_resume_of_a_failed_run_continues_after_the_fix(project: Path) -> None:
    (project / "BROKEN").touch()
    failed = invoke("run", "pipe.py:flaky", "--input", "5")
    assert failed.exit_code == 1
    run_id = _run_id(failed)

    (project / "BROKEN").unlink()
    result = invoke("runs", "resume", run_id, "pipe.py:flaky")

    assert result.exit_code == 0, result.stderr
    assert _json_after_completed(result.stdout) == 11


def test_runs_resume_passes_on_pending_and_checks_it(project: Path) -> None:
    (project / "BROKEN").touch()
    run_id = _run_id(invoke("run", "pipe.py:flaky", "--input", "5"))
    (project / "BROKEN").unlink()

    bad = invoke("runs", "resume", run_id, "pipe.py:flaky", "--on-pending", "maybe")
    line = assert_one_error_line(bad, "error:", "ConfigurationError", "--on-pending", "'maybe'")
    assert "on_pending" not in line  # the flag, not the Python argument

    # Nothing is pending in this run: the choice is accepted and has nothing to settle.
    result = invoke("runs", "resume", run_id, "pipe.py:flaky", "--on-pending", "rerun")
    assert result.exit_code == 0, result.stderr
    assert _json_after_completed(result.stdout) == 11


def test_runs_resume_accepts_another_spelling_of_the_same_target_file(project: Path) -> None:
    (project / "BROKEN").touch()
    run_id = _run_id(invoke("run", "pipe.py:flaky", "--input", "5"))
    (project / "BROKEN").unlink()

    result = invoke("runs", "resume", run_id, f"{project / 'pipe.py'}:flaky")

    assert result.exit_code == 0, result.stderr
    assert _json_after_completed(result.stdout) == 11


def test_runs_resume_of_a_completed_run_is_one_error_line(project: Path) -> None:
    run_id = _run_id(invoke("run", "pipe.py:pipeline", "--input", "3"))
    result = invoke("runs", "resume", run_id, "pipe.py:pipeline")
    assert_one_error_line(result, "error:", "ResumeError", run_id)


def test_runs_resume_with_another_pipeline_is_one_error_line(project: Path) -> None:
    run_id = _run_id(invoke("run", "pipe.py:failing", "--input", "3"))
    result = invoke("runs", "resume", run_id, "pipe.py:pipeline")
    assert_one_error_line(result, "error:", "ResumeError", run_id)


def test_runs_resume_of_an_unknown_run_is_one_error_line(project: Path) -> None:
    result = invoke("runs", "resume", "feedface" * 4, "pipe.py:pipeline")
    assert_one_error_line(result, "error:", "RunNotFoundError", "feedface" * 4)


def _lease(state_home: Path, run_id: str, owner: str, until: float) -> None:
    """Mark a stored run as driven by ``owner`` (another process) until ``until``."""
    with contextlib.closing(sqlite3.connect(state_home / "flujo" / "runs.db")) as conn, conn:
        conn.execute(
            "UPDATE flujo_runs SET status = 'running', owner = ?, lease_until = ? WHERE run_id = ?",
            (owner, until, run_id),
        )
    conn.close()


def test_runs_resume_of_a_run_another_process_drives_is_one_error_line(
    project: Path, isolated_state_home: Path
) -> None:
    (project / "BROKEN").touch()
    run_id = _run_id(invoke("run", "pipe.py:flaky", "--input", "5"))
    (project / "BROKEN").unlink()
    _lease(isolated_state_home, run_id, "worker-7:4242:c0ffee00", time.time() + 600)

    result = invoke("runs", "resume", run_id, "pipe.py:flaky")

    line = assert_one_error_line(result, "error:", "RunLeasedError", run_id)
    assert "'worker-7:4242:c0ffee00'" in line and "until" in line
    listed = invoke("runs", "list")
    row = next(r for r in listed.stdout.splitlines() if run_id in r)
    assert "leased by worker-7:4242:c0ffee00" in row
    _lease(isolated_state_home, run_id, "worker-7:4242:c0ffee00", time.time() - 1)  # it died
    taken_over = invoke("runs", "resume", run_id, "pipe.py:flaky")
    assert taken_over.exit_code == 0, taken_over.stderr


def test_run_with_a_stored_run_id_is_refused_unless_replaced(project: Path) -> None:
    first = invoke("run", "pipe.py:pipeline", "--input", "1", "--run-id", "fixed-id")
    assert first.exit_code == 0, first.stderr

    again = invoke("run", "pipe.py:pipeline", "--input", "2", "--run-id", "fixed-id")
    assert_one_error_line(again, "error:", "RunExistsError", "'fixed-id'", "replace")

    replaced = invoke(
        "run", "pipe.py:pipeline", "--input", "2", "--run-id", "fixed-id", "--replace"
    )
    assert replaced.exit_code == 0, replaced.stderr
    assert _json_after_completed(replaced.stdout) == 8


# --- flujo runs prune ------------------------------------------------------------------


def test_runs_prune_older_than_zero_deletes_completed_and_failed(project: Path) -> None:
    ids = _three_runs()
    result = invoke("runs", "prune", "--older-than", "0s", "--yes")

    assert result.exit_code == 0, result.stderr
    assert "deleted 2 runs" in result.stdout
    listed = invoke("runs", "list").stdout
    assert ids["paused"] in listed
    assert ids["completed"] not in listed and ids["failed"] not in listed


def test_runs_prune_include_paused(project: Path) -> None:
    _three_runs()
    result = invoke("runs", "prune", "--older-than", "0", "--include-paused", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "deleted 3 runs" in result.stdout
    assert "no runs" in invoke("runs", "list").stdout


def test_runs_prune_keeps_recent_runs(project: Path) -> None:
    _three_runs()
    result = invoke("runs", "prune", "--older-than", "7d")
    assert result.exit_code == 0, result.stderr
    assert "deleted 0 runs" in result.stdout


@pytest.mark.parametrize("duration", ["abc", "-5s", "10y", "5 days", ""])
def test_runs_prune_with_a_bad_duration_is_one_clear_line(project: Path, duration: str) -> None:
    result = invoke("runs", "prune", "--older-than", duration)
    assert_one_error_line(result, "error:", "duration")


# --- the console script ----------------------------------------------------------------


def test_the_console_script_is_main() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "flujo"]
    assert script.value == "flujo.cli.app:main"
    assert script.load() is main


def test_main_runs_the_app(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["flujo", "runs", "show", "nope"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    captured = capsys.readouterr()
    assert "RunNotFoundError" in captured.err and "Traceback" not in captured.err


def test_no_arguments_shows_the_help(project: Path) -> None:
    result = invoke()
    shown = result.stdout + result.stderr
    assert "Usage" in shown
    assert "run" in shown and "runs" in shown
    assert "Traceback" not in shown
