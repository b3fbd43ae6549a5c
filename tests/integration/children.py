"""Starting the child processes that the crash tests kill and resume."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flujo.domain.errors import RunLeasedError

ROOT = Path(__file__).resolve().parents[2]


def spawn(script: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Run ``script`` with ``args`` in a new Python process, output captured as text."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


LEASE = {"state": {"lease_s": 0.5, "heartbeat_s": 0.1}}
"""Short lease settings of the children: a killed child's run is free again half a second later."""


def short_lease(runner: Any) -> Any:
    """Give ``runner``'s container the children's short lease settings; return the runner."""
    runner.container.config.from_dict(LEASE)
    return runner


async def resume_when_free(runner: Any, run_id: str, **options: Any) -> Any:
    """``resume_async``; while a killed child still leases the run, wait for the lease to expire."""
    for _ in range(200):
        try:
            return await runner.resume_async(run_id, **options)
        except RunLeasedError as exc:
            await asyncio.sleep(max((exc.lease_until or 0.0) - time.time(), 0.0) + 0.01)
    raise AssertionError(f"run {run_id!r} stayed leased")
