"""Ctrl-C during ``flujo run`` or ``runs resume``: the run id, the command that resumes it, 130."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.cli_support import (
    TESTING_PROFILE,
    enter_project,
    invoke,
    json_after_completed,
    subprocess_env,
)

PIPES = textwrap.dedent(
    """
    import asyncio
    from pathlib import Path

    from flujo import PipelineContext, Step, step


    class Notes(PipelineContext):
        seen: list[int] = []


    @step
    async def first(x: int, *, context: Notes) -> int:
        context.seen = [*context.seen, x]
        return x + 1


    @step
    async def second(x: int, *, context: Notes) -> int:
        if Path("INTERRUPT").exists():
            raise KeyboardInterrupt  # what Ctrl-C raises in a step running on the loop
        if Path("FAIL").exists():
            raise RuntimeError("failing while FAIL exists")
        if Path("BLOCK").exists():
            Path("STARTED").touch()
            await asyncio.sleep(600)
        return x * 10


    pipeline = first >> second
    """
)
DEADLINE_S = 60.0
"""How long the signal test waits for the step to start (a guard, not a timing check)."""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from enter_project(tmp_path, monkeypatch, {"slow.py": PIPES})


def _interrupted(result_stderr: str) -> tuple[str, list[str]]:
    """Return the run id and the resume command an interrupted command printed."""
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert len(lines) == 2, result_stderr
    assert lines[0].startswith("interrupted run "), lines[0]
    run_id = lines[0].removeprefix("interrupted run ").split(";")[0]
    return run_id, shlex.split(lines[1])


def test_ctrl_c_in_run_exits_130_with_the_resume_command(project: Path) -> None:
    (project / "INTERRUPT").touch()
    result = invoke("run", "slow.py:pipeline", "--input", "1", "--run-id", "job-1")
    assert result.exit_code == 130, (result.stdout, result.stderr, result.exception)
    run_id, command = _interrupted(result.stderr)
    assert run_id == "job-1"
    assert command == ["flujo", "runs", "resume", "job-1", "slow.py:pipeline"]

    (project / "INTERRUPT").unlink()
    resumed = invoke(*command[1:])
    assert resumed.exit_code == 0, resumed.stderr
    assert json_after_completed(resumed.stdout) == 20


def test_ctrl_c_names_the_generated_run_id(project: Path) -> None:
    (project / "INTERRUPT").touch()
    result = invoke("run", "slow.py:pipeline", "--input", "1")
    run_id, command = _interrupted(result.stderr)
    assert len(run_id) == 32 and command[3] == run_id
    assert run_id in invoke("runs", "list").stdout  # the run it names is the one stored


def test_the_resume_command_repeats_profile_and_context(project: Path) -> None:
    (project / "INTERRUPT").touch()
    result = invoke(
        "run",
        "slow.py:pipeline",
        "--input",
        "1",
        "--run-id",
        "it's mine",
        "--profile",
        str(TESTING_PROFILE),
        "--context",
        "slow.py:Notes",
    )
    assert result.exit_code == 130
    _, command = _interrupted(result.stderr)
    assert command == [
        "flujo",
        "runs",
        "resume",
        "it's mine",
        "slow.py:pipeline",
        "--profile",
        str(TESTING_PROFILE),
        "--context",
        "slow.py:Notes",
    ]


def test_ctrl_c_in_runs_resume_exits_130_and_the_run_resumes_after(project: Path) -> None:
    (project / "FAIL").touch()
    failed = invoke("run", "slow.py:pipeline", "--input", "2", "--run-id", "job-2")
    assert failed.exit_code == 1
    (project / "FAIL").unlink()
    (project / "INTERRUPT").touch()

    stopped = invoke("runs", "resume", "job-2", "slow.py:pipeline")
    assert stopped.exit_code == 130, (stopped.stderr, stopped.exception)
    run_id, command = _interrupted(stopped.stderr)
    assert run_id == "job-2" and command == ["flujo", "runs", "resume", "job-2", "slow.py:pipeline"]

    (project / "INTERRUPT").unlink()
    resumed = invoke(*command[1:])
    assert resumed.exit_code == 0, resumed.stderr
    assert json_after_completed(resumed.stdout) == 30


def test_a_real_sigint_stops_the_command_and_its_hint_resumes_the_run(
    project: Path, isolated_state_home: Path
) -> None:
    (project / "BLOCK").touch()
    env = subprocess_env(isolated_state_home)
    process = subprocess.Popen(
        [sys.executable, "-m", "flujo", "run", "slow.py:pipeline", "--input", "4"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not (project / "STARTED").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the blocking step never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr
    run_id, command = _interrupted(stderr)
    assert command[:4] == ["flujo", "runs", "resume", run_id]

    (project / "BLOCK").unlink()
    resumed = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json_after_completed(resumed.stdout) == 50
    assert not resumed.stderr.strip()
