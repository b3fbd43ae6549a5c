"""``flujo runs list`` fits 80 columns and says why runs failed; ``runs show`` draws a timeline."""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flujo import StepResult
from flujo.application.core.run_state import result_payload
from flujo.cli.listing import listing, row_of
from flujo.cli.timeline import Bar, bars
from flujo.containers import FlujoContainer
from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.domain.models import RunInfo, RunStatus
from tests.unit.cli_support import assert_fits, enter_project, invoke, run_id_of

PIPES = textwrap.dedent(
    """
    from pydantic import BaseModel

    from flujo import Step


    class Answer(BaseModel):
        ok: bool


    def double(x):
        return x * 2


    def explode(x):
        raise ValueError("the upstream service answered 503 " + "and a long story " * 20)


    done = Step.from_callable(double, name="double")
    failing = Step.from_callable(double, name="double") >> Step.from_callable(explode, name="call")
    waiting = (
        Step.from_callable(double, name="double")
        >> Step.human_in_the_loop("Is the doubled number right?", Answer, name="check")
    )
    """
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from enter_project(tmp_path, monkeypatch, {"pipes.py": PIPES})


def _runs() -> dict[str, str]:
    return {
        status: run_id_of(invoke("run", f"pipes.py:{target}", "--input", "2"))
        for status, target in [("completed", "done"), ("failed", "failing"), ("paused", "waiting")]
    }


def _block(stdout: str, run_id: str) -> list[str]:
    """The lines of one run in a listing: its first line and the indented ones under it."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(run_id))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        block.append(line)
    return block


# --- runs list -------------------------------------------------------------------------


def test_runs_list_fits_80_columns_with_whole_ids(project: Path) -> None:
    ids = _runs()
    result = invoke("runs", "list", columns=80)
    assert result.exit_code == 0, result.stderr
    assert_fits(result.stdout, 80)
    for status, run_id in ids.items():
        first = _block(result.stdout, run_id)[0]
        assert first.split()[:3] == [run_id, status, "1"]
    assert "│" not in result.stdout  # no table borders eating the width


def test_runs_list_at_80_columns_shows_why_a_run_failed_cut_to_fit(project: Path) -> None:
    ids = _runs()
    result = invoke("runs", "list", columns=80)
    block = " ".join(_block(result.stdout, ids["failed"]))
    assert "pipes:failing@latest" in block
    assert "step 'call': ValueError: the upstream service" in block
    assert block.rstrip().endswith("…")  # the long story is cut, on one line


def test_runs_list_at_80_columns_shows_what_a_paused_run_waits_for(project: Path) -> None:
    ids = _runs()
    result = invoke("runs", "list", columns=80)
    block = " ".join(_block(result.stdout, ids["paused"]))
    assert "pipes:waiting@latest" in block and "Is the doubled number right?" in block


def test_runs_list_in_a_wide_terminal_is_one_line_per_run(project: Path) -> None:
    ids = _runs()
    result = invoke("runs", "list", columns=200)
    assert_fits(result.stdout, 200)
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "RUN",
        "ID",
        "STATUS",
        "STEPS",
        "UPDATED",
        "(UTC)",
        "PIPELINE",
        "NOTE",
    ]
    assert len(lines) == 1 + len(ids)
    failed = _block(result.stdout, ids["failed"])
    assert len(failed) == 1 and "pipes:failing@latest" in failed[0]
    assert "step 'call': ValueError: the upstream service answered 503" in failed[0]


def test_a_run_id_longer_than_the_terminal_is_never_cut(project: Path) -> None:
    long_id = "nightly-import-" + "x" * 80
    assert invoke("run", "pipes.py:done", "--input", "1", "--run-id", long_id).exit_code == 0
    result = invoke("runs", "list", columns=80)
    assert long_id in result.stdout


def test_a_damaged_run_at_80_columns_names_what_is_wrong(
    project: Path, isolated_state_home: Path
) -> None:
    import sqlite3

    run_id = _runs()["completed"]
    conn = sqlite3.connect(isolated_state_home / "flujo" / "runs.db")
    try:
        with conn:
            conn.execute("UPDATE flujo_runs SET status = 'exploded' WHERE run_id = ?", (run_id,))
    finally:
        conn.close()
    result = invoke("runs", "list", columns=80)
    assert result.exit_code == 0, result.stderr
    assert_fits(result.stdout, 80)
    block = " ".join(_block(result.stdout, run_id))
    assert "damaged" in block and "unreadable: column 'status' holds 'exploded'" in block


def test_the_listing_layout_switches_at_the_width_the_note_needs() -> None:
    info = RunInfo.model_validate(
        {
            "run_id": "r" * 32,
            "pipeline_name": "p",
            "pipeline_version": "latest",
            "status": "failed",
            "steps_completed": 1,
            "created_at": 0,
            "updated_at": 0,
            "error": "E" * 100,
        }
    )
    rows = [row_of(info)]
    narrow = [line.plain for line in listing(rows, 80)]
    wide = [line.plain for line in listing(rows, 120)]
    assert len(narrow) == 3 and len(wide) == 2
    assert all(len(line) <= 80 for line in narrow) and all(len(line) <= 120 for line in wide)
    assert wide[1].endswith("E…")


# --- runs show -------------------------------------------------------------------------


def _result(name: str, latency_s: float, **fields: Any) -> StepResult:
    values: dict[str, Any] = {"name": name, "output": name.upper(), "latency_s": latency_s}
    return StepResult.model_validate({**values, **fields})


def _store(run_id: str, results: list[StepResult], status: RunStatus = "completed") -> None:
    """Write a run with exactly these step results (and so these latencies) to the store."""

    async def write() -> None:
        container = FlujoContainer()
        backend, serializer = container.state_backend(), container.serializer()
        try:
            done = sum(r.success for r in results)
            await backend.save_run(
                RunRecord(run_id, "shown", "7", status, done, b"null", b"{}", 1000.0, 1060.0)
            )
            for index, result in enumerate(results):
                payload = serializer.dumps(result_payload(result))
                step = StepRecord(run_id, index, result.name, result.success, payload, b"{}", 1.0)
                await backend.checkpoint(step)
        finally:
            await backend.close()

    asyncio.run(write())


def _timeline_rows(stdout: str) -> dict[str, str]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#  STEP"))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows[line.split()[1]] = line
    return rows


def test_runs_show_draws_bars_scaled_to_latency_one_after_another(project: Path) -> None:
    _store("timed", [_result("fetch", 0.010), _result("parse", 0.030), _result("save", 0.020)])
    result = invoke("runs", "show", "timed", columns=80)
    assert result.exit_code == 0, result.stderr
    assert_fits(result.stdout, 80)
    rows = _timeline_rows(result.stdout)
    spans = {}
    for name, line in rows.items():
        start = line.index("█")
        spans[name] = (start, len(line) - start)
    assert all(set(rows[n][spans[n][0] :]) == {"█"} for n in rows)
    lengths = [spans[n][1] for n in ("fetch", "parse", "save")]
    assert lengths[1] == pytest.approx(3 * lengths[0], abs=1)
    assert lengths[2] == pytest.approx(2 * lengths[0], abs=1)
    # Each bar starts where the one before ended.
    assert spans["parse"][0] == spans["fetch"][0] + lengths[0]
    assert spans["save"][0] == spans["parse"][0] + lengths[1]
    assert "10.0" in rows["fetch"] and "30.0" in rows["parse"]


def test_runs_show_colours_each_bar_by_how_its_step_ended(project: Path) -> None:
    _store(
        "coloured",
        [
            _result("ok-step", 0.01),
            _result("cached-step", 0.01, cache_hit=True),
            _result("fell-back", 0.01, fallback="backup"),
            _result("broke", 0.01, success=False, output=None, feedback="RuntimeError: no"),
        ],
        status="failed",
    )
    result = invoke("runs", "show", "coloured", env={"FORCE_COLOR": "1", "TERM": "xterm"})
    assert result.exit_code == 0, result.stderr
    rows = {
        ANSI.sub("", line).split()[1]: line for line in result.stdout.splitlines() if "█" in line
    }
    colours = {"ok-step": "32", "cached-step": "36", "fell-back": "33", "broke": "31"}
    for name, code in colours.items():
        assert re.search(rf"\x1b\[{code}m█+", rows[name]), (name, rows[name])
    plain = ANSI.sub("", result.stdout)
    assert "cached" in plain and "fallback" in plain and "failed" in plain


def test_runs_show_without_colour_still_names_each_status(project: Path) -> None:
    _store("plain", [_result("a", 0.01), _result("b", 0.01, success=False, feedback="boom")])
    result = invoke("runs", "show", "plain", env={"NO_COLOR": "1"})
    assert "\x1b[" not in result.stdout
    rows = _timeline_rows(result.stdout)
    assert rows["a"].split()[2] == "ok" and rows["b"].split()[2] == "failed"


def test_runs_show_prints_the_header_outputs_and_feedback(project: Path) -> None:
    _store("facts", [_result("a", 0.01), _result("b", 0.01, success=False, feedback="boom [x]")])
    result = invoke("runs", "show", "facts")
    text = result.stdout
    assert text.startswith("run facts\n")
    assert "pipeline shown@7" in text and "status   completed" in text
    assert '"A"' in text and "boom [x]" in text


def test_runs_show_cuts_a_long_output_to_the_terminal(project: Path) -> None:
    _store("long", [_result("a", 0.01, output="word " * 100)])
    result = invoke("runs", "show", "long", columns=80)
    assert_fits(result.stdout, 80)
    assert "word word" in result.stdout and "…" in result.stdout


def test_a_real_run_shows_every_step_on_the_timeline(project: Path) -> None:
    run_id = run_id_of(invoke("run", "pipes.py:failing", "--input", "2"))
    result = invoke("runs", "show", run_id, columns=80)
    assert_fits(result.stdout, 80)
    assert set(_timeline_rows(result.stdout)) == {"double", "call"}


def test_bars_give_every_step_a_cell_and_fill_the_scale() -> None:
    assert bars([0.0, 0.0], 10) == [Bar(0, 1), Bar(0, 1)]
    assert bars([1.0, 1.0], 10) == [Bar(0, 5), Bar(5, 5)]
    made = bars([0.001, 10.0], 20)
    assert made[0].length == 1 and made[1].start + made[1].length == 20
