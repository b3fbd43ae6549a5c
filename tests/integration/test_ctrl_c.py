"""Ctrl-C in ``runner.run()`` cancels the run: it is stored ``cancelled``, lease given back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from flujo.state import SQLiteBackend
from tests.integration.children import ROOT

CHILD = textwrap.dedent(
    """
    import asyncio
    import os
    import signal
    import sys

    from flujo import Flujo, Pipeline, step
    from flujo.state import SQLiteBackend


    @step
    def first(n: int) -> int:
        return n + 1


    @step
    async def interrupted(n: int) -> int:
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C during this step
        await asyncio.sleep(30)
        return n


    runner = Flujo(
        Pipeline([first, interrupted]),
        state_backend=SQLiteBackend(sys.argv[1]),
        pipeline_name="ctrl-c",
    )
    try:
        runner.run(1, run_id="ctrl-c")
    except KeyboardInterrupt:
        print("KeyboardInterrupt")
    """
)


def test_ctrl_c_in_the_sync_door_stores_the_run_cancelled(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(database)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.stdout.strip() == "KeyboardInterrupt", (child.stdout, child.stderr)

    async def stored() -> tuple[object, ...]:
        backend = SQLiteBackend(database)
        try:
            run = await backend.load_run("ctrl-c")
        finally:
            await backend.close()
        assert run is not None
        return run.status, run.step_index, run.owner, run.error

    assert asyncio.run(stored()) == (
        "cancelled",
        1,
        None,
        "CancelledError: the run's task was cancelled",
    )
