"""A run on PostgreSQL with its steps on Ray, killed with SIGKILL, resumed by another interpreter.

Process A drives the run and dies in its second step; process B (another
interpreter, the same cluster and databases, the runner importable as
``module:attr``) resumes it once A's lease expired: the first step does not run
again, nothing is lost, the step in flight runs at most once more.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.pg_schema import Schema, server_dsn

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests.ray.resumable:runner"


def _flujo(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flujo", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _ran(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_a_killed_run_is_resumed_by_another_interpreter(
    ray_address: str, tmp_path: Path
) -> None:
    schema = await Schema(await server_dsn()).create()
    ran = tmp_path / "ran"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "FLUJO_TEST_RESUME_DSN": schema.dsn,
        "FLUJO_TEST_RAY_ADDRESS": ray_address,
    }
    try:
        a = _flujo(["run", TARGET, "--input", json.dumps(str(ran)), "--run-id", "elsewhere"], env)
        deadline = time.monotonic() + 90
        while "slow-started" not in _ran(ran):
            assert a.poll() is None, a.communicate()[0]
            assert time.monotonic() < deadline, "process A never reached its second step"
            time.sleep(0.2)
        os.killpg(a.pid, signal.SIGKILL)  # the driver dies mid-step, its lease still held
        a.communicate(timeout=10)

        deadline = time.monotonic() + 30
        while True:  # until A's lease expired (2 s): before, B is refused with RunLeasedError
            b = _flujo(["runs", "resume", "elsewhere", TARGET], env)
            output = b.communicate(timeout=120)[0]
            if b.returncode == 0 or "RunLeasedError" not in output:
                break
            assert time.monotonic() < deadline, output
            time.sleep(0.5)

        assert b.returncode == 0, output
        executions = _ran(ran)
        assert executions.count("first") == 1, f"the completed step ran again: {executions}"
        assert executions.count("slow-started") == 2, "the step in flight ran once more"
        assert executions.count("last") == 1
        from flujo.providers import PostgresStateProvider

        log = PostgresStateProvider(schema.dsn, namespace="resume-elsewhere")
        try:
            assert await log.load("log") == ["first", "slow", "last"], "nothing lost, nothing twice"
        finally:
            await log.close()
    finally:
        await schema.drop()
