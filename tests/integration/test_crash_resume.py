"""A run killed with SIGKILL mid-run resumes in a new process and loses no completed step."""

from __future__ import annotations

import contextlib
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

from tests.helpers import read_only
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
        with read_only(state_db) as conn:
            # A running run's progress is its successful step records.
            row = conn.execute(
                "SELECT COUNT(*) FROM flujo_steps WHERE run_id = ? AND success = 1", (run_id,)
            ).fetchone()
    except sqlite3.OperationalError:
        return 0  # tables not created yet
    return int(row[0])


def _journal(folder: Path) -> list[int]:
    with contextlib.closing(sqlite3.connect(folder / "journal.db")) as conn, conn:
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

    def __init__(
        self,
        mode: str,
        run_id: str,
        folder: Path,
        on_pending: str | None,
        *,
        script: Path = REFS_CHILD,
        timeout_s: float = CHILD_TIMEOUT_S,
    ) -> None:
        env = {**os.environ, "XDG_STATE_HOME": str(folder / "state"), "PYTHONPATH": str(ROOT)}
        args = [mode, run_id, str(folder)] + ([on_pending] if on_pending else [])
        if script != REFS_CHILD:
            args = [run_id, str(folder), mode]  # a racer: its mode is its GO file
            env["CRASH_STEP_S"] = str(RACE_STEP_S)
        self.proc = spawn(script, *args, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.deadline = time.monotonic() + timeout_s
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
    with read_only(db) as conn:
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
    with read_only(runs_db) as conn:
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


# -- two resumers race for the run after each kill ------------------------------------------

RACE_CHILD = Path(__file__).with_name("crash_child_race.py")
RACE_STEP_S = 0.03
"""A racer's steps are slower, so a driver lives until the next racer is ready."""


def _lease_until(runs_db: Path, run_id: str) -> float:
    with read_only(runs_db) as conn:
        row = conn.execute("SELECT lease_until FROM flujo_runs WHERE run_id = ?", (run_id,))
        (until,) = row.fetchone()
    return float(until)


class _Race:
    """The resumers of one run: the one driving it, the one waiting, and spares made ready.

    A spare starts, connects, prints ``READY`` and waits for its ``GO`` file; after
    each kill one is let go to race the waiting resumer, so two resumers contend for
    the run while the killed owner's lease still holds, and a new spare is started.
    """

    POOL = 4
    """Spares started ahead: starting Python and flujo takes longer than a driver lives."""

    def __init__(self, run_id: str, folder: Path) -> None:
        self.run_id, self.folder = run_id, folder
        self.racing: list[_Child] = []
        self.spares: list[_Child] = []
        self.ready: set[int] = set()
        self.started: list[_Child] = []
        self.go_files = 0

    def spare(self) -> None:
        go = self.folder / f"go-{len(self.started)}"
        child = _Child(str(go), self.run_id, self.folder, None, script=RACE_CHILD, timeout_s=120)
        child.go = go  # type: ignore[attr-defined]
        self.spares.append(child)
        self.started.append(child)

    def release(self, count: int) -> None:
        """Let ``count`` ready spares go; start new ones, so ``POOL`` are always on the way."""
        for _ in range(count):
            child = self.spares.pop(0)
            child.go.touch()  # type: ignore[attr-defined]
            self.racing.append(child)
        while len(self.spares) < self.POOL:
            self.spare()

    def spares_ready(self) -> bool:
        return id(self.spares[0]) in self.ready

    def lines(self) -> list[tuple[_Child, str]]:
        """What every resumer printed since the last call (waiting a little if none did)."""
        got: list[tuple[_Child, str]] = []
        for _ in range(50):
            for child in [*self.racing, *self.spares]:
                while True:
                    try:
                        line = child.lines.get_nowait()
                    except queue.Empty:
                        break
                    if line == "READY":
                        self.ready.add(id(child))
                    elif line is not None:
                        got.append((child, line))
            if got:
                return got
            time.sleep(0.002)
        return got

    def kill(self, child: _Child) -> None:
        child.kill()
        child.finish()
        assert child.proc.returncode == -signal.SIGKILL
        self.racing.remove(child)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while not all(id(child) in self.ready for child in self.spares):
            assert time.monotonic() < deadline, "the spare resumers never got ready"
            self.lines()

    def close(self) -> None:
        for child in self.started:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait(timeout=10)
            child.finish()


def test_sigkill_many_times_then_two_resumers_race_for_the_run(tmp_path: Path) -> None:
    """After each kill two resumers race for the run: exactly one drives it, the other is
    refused (``RunLeasedError``), and nobody drives before the killed owner's lease
    expired. The provider ends with every step's change exactly once."""
    run_id, runs_db = "refs-race", tmp_path / "runs.db"
    plans: list[Plan] = _kill_plan(seed=5, kills=8)
    race = _Race(run_id, tmp_path)
    stats = {"kills": 0, "refused": 0, "refused_by_the_dead": 0, "drivers": 0, "lost": 0}
    try:
        for _ in range(2 + race.POOL):
            race.spare()
        race.wait_ready()
        killed, _, _ = _child_run("versioned", run_id, tmp_path, plans.pop(0), None)
        assert killed, "the first run must be killed mid-run"
        stats["kills"] += 1
        dead, expires = _owner(runs_db, run_id), _lease_until(runs_db, run_id)
        race.release(2)  # the first two racers, let go together
        driver: _Child | None = None
        plan: Plan | None = None
        counts = {"STEP": 0, "SAVED": 0}
        refused_this_round, done = 0, False
        started = time.monotonic()
        while not done:
            assert time.monotonic() - started < 150, f"no completion: {stats}"
            for child, line in race.lines():
                word = line.split(" ", 1)[0]
                if word == "LEASED":
                    stats["refused"] += 1
                    refused_this_round += 1
                    stats["refused_by_the_dead"] += line.split(" ")[1] == dead
                elif word == "DRIVING":
                    # Exactly one drives, and only once the killed owner's lease expired.
                    assert driver is None, (line, driver.out[-3:] if driver else None)
                    assert time.time() >= expires, f"driven {expires - time.time():.3f} s early"
                    assert refused_this_round >= 1, "the two resumers did not contend"
                    driver, counts = child, {"STEP": 0, "SAVED": 0}
                    plan = plans.pop(0) if plans else None
                    stats["drivers"] += 1
                elif word in counts:
                    assert child is driver, f"a resumer that does not drive ran a step: {line}"
                    counts[word] += 1
                    if plan is None or not race.spares_ready():
                        continue  # the next racer must be ready before this one dies
                    kind, nth, delay = plan
                    if kind == "marker" and word == "SAVED" and counts[word] >= nth:
                        race.kill(driver)
                    elif kind == "random" and word == "STEP" and counts[word] >= nth:
                        time.sleep(delay)
                        race.kill(driver)
                    else:
                        continue
                    stats["kills"] += 1
                    dead, expires = _owner(runs_db, run_id), _lease_until(runs_db, run_id)
                    entries = _provider_list(tmp_path / "journal.db")
                    assert entries == list(range(len(entries))), entries  # nothing lost or twice
                    driver, refused_this_round = None, 0
                    race.release(1)  # a fresh racer against the one still waiting
                    break  # the killed driver's remaining lines are not read
                elif word == "LOST":
                    stats["lost"] += 1  # stalled past its lease: it stopped before a commit
                    assert child is driver, line
                    driver = None
                elif word == "DONE":
                    assert child is driver and line == f"DONE completed {REFS_STEPS}", line
                    done = True
        waiting = [child for child in race.racing if child is not driver]
        for child in race.racing:
            assert child.finish() == 0, (child.out[-5:], child.err[-10:])
        assert [child.out[-1] for child in waiting] == ["ALREADY"]
    finally:
        race.close()
    assert _provider_list(tmp_path / "journal.db") == list(range(REFS_STEPS))
    assert not _pending_steps(runs_db, run_id)
    assert stats["kills"] == 8 and stats["drivers"] == stats["kills"], stats
    assert stats["refused_by_the_dead"] >= 1, stats
    print(f"race: {stats}")


def _owner(runs_db: Path, run_id: str) -> str:
    with read_only(runs_db) as conn:
        row = conn.execute("SELECT owner FROM flujo_runs WHERE run_id = ?", (run_id,))
        (owner,) = row.fetchone()
    return str(owner)
