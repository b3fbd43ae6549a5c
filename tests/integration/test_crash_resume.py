"""A run killed with SIGKILL mid-run resumes in a new process and loses no completed step."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.integration.children import ROOT, spawn
from tests.integration.crash_child import STEPS
from tests.integration.crash_child_refs import CONFLICT as REFS_CONFLICT
from tests.integration.crash_child_refs import KEY as REFS_KEY
from tests.integration.crash_child_refs import NAMESPACE as REFS_NAMESPACE
from tests.integration.crash_child_refs import STEPS as REFS_STEPS

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


# -- a reference set() by every step, killed many times ------------------------------------

REFS_CHILD = Path(__file__).with_name("crash_child_refs.py")
CHILD_TIMEOUT_S = 30.0


class _Child:
    """A child of ``crash_child_refs``, its output read line by line as it comes."""

    def __init__(self, mode: str, run_id: str, folder: Path, on_pending: str | None) -> None:
        env = {**os.environ, "XDG_STATE_HOME": str(folder / "state"), "PYTHONPATH": str(ROOT)}
        args = [mode, run_id, str(folder)] + ([on_pending] if on_pending else [])
        self.proc = spawn(REFS_CHILD, *args, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.deadline = time.monotonic() + CHILD_TIMEOUT_S
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, False), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: IO[str], to_queue: bool) -> None:
        for line in stream:
            (self.out if to_queue else self.err).append(line.rstrip("\n"))
            if to_queue:
                self.lines.put(line.rstrip("\n"))
        if to_queue:
            self.lines.put(None)

    def next_line(self) -> str | None:
        """The next stdout line, or ``None`` once the child closed its output."""
        remaining = self.deadline - time.monotonic()
        try:
            return self.lines.get(timeout=max(remaining, 0.001))
        except queue.Empty:
            raise AssertionError(f"child gave no output within {CHILD_TIMEOUT_S}s") from None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    def finish(self) -> int:
        """Wait for the child (killing it if it overruns) and its output; its exit code."""
        try:
            code = self.proc.wait(timeout=max(self.deadline - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"child overran {CHILD_TIMEOUT_S}s: {self.out[-5:]}") from None
        finally:
            for pump in self._pumps:
                pump.join(timeout=10)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        return code


Plan = tuple[str, int, float]
"""``(kind, nth, delay)``: kill on the nth ``SAVED`` line, or ``delay`` after the nth ``STEP``."""


def _child_run(
    mode: str, run_id: str, folder: Path, plan: Plan | None, on_pending: str | None
) -> tuple[bool, int, _Child]:
    """Run one child; kill it as ``plan`` says: whether the kill ended it, its exit code."""
    child = _Child(mode, run_id, folder, on_pending)
    try:
        killed = False
        counts = {"STEP": 0, "SAVED": 0}
        while (line := child.next_line()) is not None:
            word = line.split(" ", 1)[0]
            if word not in counts or plan is None:
                continue
            counts[word] += 1
            kind, nth, delay = plan
            if kind == "marker" and word == "SAVED" and counts[word] == nth:
                child.kill()  # it sleeps right after this line, before its checkpoint
            elif kind == "random" and word == "STEP" and counts[word] == nth:
                time.sleep(delay)
                child.kill()
            else:
                continue
            killed = True
            break
        code = child.finish()
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(timeout=10)
    return killed and code == -signal.SIGKILL, code, child


def _provider_list(db: Path) -> list[int]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            row = conn.execute(
                "SELECT value FROM flujo_state WHERE namespace = ? AND key = ?",
                (REFS_NAMESPACE, REFS_KEY),
            ).fetchone()
        except sqlite3.OperationalError:
            return []  # tables not created yet
    entries: list[int] = [] if row is None else json.loads(row[0])
    return entries


def _pending_steps(runs_db: Path, run_id: str) -> list[int]:
    if not runs_db.exists():
        return []
    with sqlite3.connect(f"file:{runs_db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            rows = conn.execute(
                "SELECT idx FROM flujo_steps WHERE run_id = ? AND pending = 1 ORDER BY idx",
                (run_id,),
            ).fetchall()
        except sqlite3.OperationalError:
            return []
    return [int(r[0]) for r in rows]


def _kill_plan(seed: int, kills: int) -> list[Plan]:
    """Alternate kills on the ``SAVED`` marker and at random moments after a step started."""
    rng = random.Random(seed)
    return [
        ("marker" if k % 2 == 0 else "random", rng.randint(1, 2), rng.uniform(0.0, 0.03))
        for k in range(kills)
    ]


def _kill_until_done(
    mode: str, folder: Path, seed: int, kills: int
) -> tuple[dict[str, int], list[str]]:
    """Kill the run ``kills`` times, resuming in a new child each time, until it completes.

    Returns the counts (kills, in the save-checkpoint window, conflicts...) and the
    messages of the ``StateConflictError`` each conflicting resume printed.
    """
    run_id = f"refs-{mode}"
    runs_db = folder / "runs.db"
    store = runs_db if mode == "colocated" else folder / "journal.db"
    plans: list[Plan | None] = [*_kill_plan(seed, kills)]
    stats = {"kills": 0, "window": 0, "window_on_marker": 0, "pending_unlanded": 0, "conflicts": 0}
    conflicts: list[str] = []
    on_pending: str | None = None
    expect_conflict = False
    started = time.monotonic()
    for _ in range(4 * kills + 10):
        assert time.monotonic() - started < 60, f"{mode}: no completion: {stats}"
        plan = plans.pop(0) if plans else None
        killed, code, child = _child_run(mode, run_id, folder, plan, on_pending)
        on_pending = None
        if code == REFS_CONFLICT:
            assert expect_conflict or mode == "plain", (mode, child.out, child.err)
            stats["conflicts"] += 1
            message = next(line for line in child.out if line.startswith("StateConflictError"))
            conflicts.append(message)
            (index,) = _pending_steps(runs_db, run_id)
            assert f"'append{index}' (index {index})" in message, message
            landed = _provider_list(store)[-1:] == [index]
            on_pending = "accept" if landed else "rerun"
            if plan is not None:
                plans.insert(0, plan)  # the kill planned for this child is still owed
            expect_conflict = False
            continue
        assert not expect_conflict, f"{mode}: a kill in the window must make resume conflict"
        if not killed:
            assert code == 0, (mode, code, child.out[-5:], child.err[-20:])
            assert child.out[-1] == f"DONE completed {REFS_STEPS}", child.out[-5:]
            break
        stats["kills"] += 1
        pending = _pending_steps(runs_db, run_id)
        entries = _provider_list(store)
        assert len(pending) <= 1, pending
        if mode == "colocated":
            assert not pending, "one transaction: never a pending record"
            # Each step's record committed together with its save, or neither did.
            assert _steps_completed(runs_db, run_id) == len(entries), entries
            # On the marker the transaction with the save and its record has committed.
            saved = [int(line.split()[1]) for line in child.out if line.startswith("SAVED")]
            in_window = plan is not None and plan[0] == "marker" and entries[-1:] == saved[-1:]
        elif pending:
            in_window = entries[-1:] == pending
            stats["pending_unlanded"] += not in_window
            expect_conflict = mode == "plain"
        else:
            in_window = False
        if in_window:
            stats["window"] += 1
            stats["window_on_marker"] += plan is not None and plan[0] == "marker"
        # Nothing lost, nothing twice, whatever moment the kill hit.
        assert entries == list(range(len(entries))), (mode, entries)
    else:
        raise AssertionError(f"{mode}: the run never completed: {stats}")
    assert _provider_list(store) == list(range(REFS_STEPS))
    assert not _pending_steps(runs_db, run_id)
    print(f"{mode}: {stats}")
    return stats, conflicts


def test_sigkill_many_times_versioned_provider_in_own_file(tmp_path: Path) -> None:
    stats, conflicts = _kill_until_done("versioned", tmp_path, seed=1, kills=10)
    assert not conflicts  # versions and writer tags settle every interrupted commit
    assert stats["kills"] >= 8
    assert stats["window"] >= 1, f"no kill landed between a save and its checkpoint: {stats}"


def test_sigkill_many_times_provider_sharing_the_run_state_file(tmp_path: Path) -> None:
    stats, conflicts = _kill_until_done("colocated", tmp_path, seed=2, kills=10)
    assert not conflicts
    assert stats["kills"] >= 8
    assert stats["window"] >= 1, f"no kill landed after a commit on the marker: {stats}"


def test_sigkill_many_times_plain_provider_conflicts_then_accept(tmp_path: Path) -> None:
    stats, conflicts = _kill_until_done("plain", tmp_path, seed=3, kills=8)
    assert stats["kills"] >= 8
    assert stats["window"] >= 1, f"no kill landed between a save and its checkpoint: {stats}"
    # Every kill in the window (and every one after a pending record) made resume conflict.
    assert stats["conflicts"] == stats["window"] + stats["pending_unlanded"]
    assert all("cannot tell: journal:log" in message for message in conflicts), conflicts
