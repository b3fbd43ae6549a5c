"""``flujo runs prune``: a dry run lists, a real one asks first, ``--yes`` skips the question."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.cli_support import (
    assert_fits,
    enter_project,
    error_lines,
    invoke,
    run_id_of,
    subprocess_env,
)

PIPES = textwrap.dedent(
    """
    from flujo import Step


    def double(x):
        return x * 2


    def explode(x):
        raise ValueError("no [luck] today")


    done = Step.from_callable(double, name="double")
    failing = Step.from_callable(explode, name="explode")
    waiting = Step.from_callable(double, name="double") >> Step.human_in_the_loop("Go?")
    """
)
READ_DEADLINE_S = 60.0
"""How long a pty test waits for the command's output before giving up (not a timing check)."""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from enter_project(tmp_path, monkeypatch, {"pipes.py": PIPES})


def _runs() -> dict[str, str]:
    return {
        status: run_id_of(invoke("run", f"pipes.py:{target}", "--input", "2"))
        for status, target in [("completed", "done"), ("failed", "failing"), ("paused", "waiting")]
    }


def _listed() -> str:
    return invoke("runs", "list", columns=200).stdout


def test_a_dry_run_lists_what_it_would_delete_and_deletes_nothing(project: Path) -> None:
    ids = _runs()
    result = invoke("runs", "prune", "--older-than", "0s", "--dry-run", columns=80)
    assert result.exit_code == 0, result.stderr
    assert_fits(result.stdout, 80)
    assert ids["completed"] in result.stdout and ids["failed"] in result.stdout
    assert ids["paused"] not in result.stdout
    assert "no [luck] today" in result.stdout  # why the failed one failed
    assert "would delete 2 runs (dry run: nothing deleted)" in result.stdout
    assert all(run_id in _listed() for run_id in ids.values())


def test_a_dry_run_with_include_paused_lists_the_paused_run_too(project: Path) -> None:
    ids = _runs()
    result = invoke("runs", "prune", "--older-than", "0", "--include-paused", "--dry-run")
    assert ids["paused"] in result.stdout and "would delete 3 runs" in result.stdout


def test_a_dry_run_wins_over_yes(project: Path) -> None:
    ids = _runs()
    result = invoke("runs", "prune", "--older-than", "0", "--dry-run", "--yes")
    assert "would delete 2 runs" in result.stdout
    assert ids["completed"] in _listed()


def test_without_yes_and_no_terminal_to_ask_it_refuses_and_deletes_nothing(project: Path) -> None:
    ids = _runs()
    result = invoke("runs", "prune", "--older-than", "0s")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "would delete 2 runs" in line and "stdin is not a terminal" in line
    assert "--yes" in line
    assert all(run_id in _listed() for run_id in ids.values())


def test_with_nothing_old_enough_it_neither_asks_nor_deletes(project: Path) -> None:
    ids = _runs()
    result = invoke("runs", "prune", "--older-than", "7d")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "deleted 0 runs"
    assert ids["completed"] in _listed()


def test_yes_deletes_what_the_dry_run_listed(project: Path) -> None:
    ids = _runs()
    dry = invoke("runs", "prune", "--older-than", "0", "--dry-run").stdout
    result = invoke("runs", "prune", "--older-than", "0", "-y")
    assert result.exit_code == 0, result.stderr
    assert "deleted 2 runs" in result.stdout
    listed = _listed()
    for status in ("completed", "failed"):
        assert ids[status] in dry and ids[status] not in listed
    assert ids["paused"] in listed


def _on_a_terminal(project: Path, state_home: Path, answer: bytes) -> tuple[int, str]:
    """Run ``python -m flujo runs prune --older-than 0`` on a pty and answer its question."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "flujo", "runs", "prune", "--older-than", "0"],
        cwd=project,
        env=subprocess_env(state_home),
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    answered = False
    deadline = time.monotonic() + READ_DEADLINE_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"[y/N]" in seen:
                os.write(leader, answer)
                answered = True
        return process.wait(timeout=READ_DEADLINE_S), seen.decode(errors="replace")
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()


def test_on_a_terminal_it_asks_and_yes_deletes(project: Path, isolated_state_home: Path) -> None:
    ids = _runs()
    code, shown = _on_a_terminal(project, isolated_state_home, b"y\n")
    assert code == 0, shown
    assert ids["completed"] in shown and "Delete these 2 runs? [y/N]" in shown
    assert "deleted 2 runs" in shown
    assert ids["completed"] not in _listed() and ids["paused"] in _listed()


def test_on_a_terminal_no_deletes_nothing(project: Path, isolated_state_home: Path) -> None:
    ids = _runs()
    code, shown = _on_a_terminal(project, isolated_state_home, b"n\n")
    assert code == 1, shown
    assert "nothing deleted" in shown
    assert all(run_id in _listed() for run_id in ids.values())
