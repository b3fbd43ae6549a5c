"""A run killed with SIGKILL mid-run resumes in a new process and loses no completed step."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.children import ROOT, spawn
from tests.integration.crash_child import STEPS

CHILD = Path(__file__).with_name("crash_child.py")


def _child(command: str, run_id: str, folder: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return spawn(CHILD, command, run_id, str(folder), env=env)


def _steps_completed(state_db: Path, run_id: str) -> int:
    if not state_db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=5) as conn:
            # A running run's progress is its successful step records.
            row = conn.execute(
                "SELECT COUNT(*) FROM flujo_steps WHERE run_id = ? AND success = 1", (run_id,)
            ).fetchone()
    except sqlite3.OperationalError:
        return 0  # tables not created yet
    return int(row[0])


def _journal(folder: Path) -> list[int]:
    with sqlite3.connect(folder / "journal.db") as conn:
        (blob,) = conn.execute("SELECT value FROM flujo_state WHERE key = 'log'").fetchone()
    entries: list[int] = json.loads(blob)
    return entries


def test_sigkill_mid_run_then_resume_in_new_process(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    state_db = tmp_path / "state" / "flujo" / "runs.db"
    run_id = "crash-run"

    child = _child("run", run_id, tmp_path, env)
    deadline = time.monotonic() + 60
    while _steps_completed(state_db, run_id) < 10:
        assert child.poll() is None, f"child ended early: {child.communicate()}"
        assert time.monotonic() < deadline, "child made no progress"
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)  # reaps the child and closes its pipes
    assert child.returncode == -signal.SIGKILL
    killed_at = _steps_completed(state_db, run_id)
    assert 10 <= killed_at < STEPS, "the kill must land mid-run"

    resumed = _child("resume", run_id, tmp_path, env)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, (out, err)
    assert out.split() == ["completed", str(STEPS)]

    entries = _journal(tmp_path)
    # No completed step's effect is lost, and each step's effect is in order.
    assert sorted(set(entries)) == list(range(STEPS))
    assert entries == sorted(entries)
    # At most the step in flight at the kill ran twice.
    repeated = [i for i in set(entries) if entries.count(i) > 1]
    assert len(repeated) <= 1
    assert all(entries.count(i) == 2 and i >= killed_at - 1 for i in repeated)


@pytest.mark.parametrize("command", ["resume"])
def test_resume_of_unknown_run_fails_clearly(tmp_path: Path, command: str) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    child = _child(command, "no-such-run", tmp_path, env)
    _, err = child.communicate(timeout=60)
    assert child.returncode != 0
    assert "RunNotFoundError" in err and "no-such-run" in err
