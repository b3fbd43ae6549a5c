"""A resumer that races another for the run of ``crash_child_refs`` (versioned provider).

Run as a script: ``RUN_ID DIR GO``. It prints ``READY`` once it can reach the run
state, and waits for the file ``GO`` to exist, so a parent can let two resumers
go at the same moment. Then it resumes the run; while another process holds
the run's lease it prints ``LEASED <owner> <lease_until>`` and tries again when
that lease expires. Once it drives the run it prints ``DRIVING <owner>`` (then the
``STEP``/``SAVED`` lines of ``crash_child_refs``) and, at the end, ``DONE <status>
<output>``. A run that another resumer completed meanwhile gives ``ALREADY``; a
lease this process lost while driving gives ``LOST <new owner>``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from flujo.domain.errors import ResumeError, RunLeasedError
from flujo.domain.events import HookEvent, RunStarted
from tests.integration.crash_child_refs import runner

LOST = 4
"""Exit code of a resumer whose lease another took over while it drove the run."""


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(run_id: str, folder: Path, go: Path) -> int:
    flujo, backend = runner("versioned", folder)
    owner: list[str] = []
    await backend.load_run(run_id)  # connected before the race, not during it
    _say("READY")
    while not go.exists():
        await asyncio.sleep(0.002)

    async def driving(event: HookEvent) -> None:
        if isinstance(event, RunStarted):
            stored = await backend.load_run(run_id)
            owner.append(stored.owner if stored is not None and stored.owner else "?")
            _say(f"DRIVING {owner[-1]}")

    flujo.add_hook(driving)
    try:
        for _ in range(1000):
            try:
                result = await flujo.resume_async(run_id)
            except RunLeasedError as exc:
                if owner:  # it drove the run, and another process took it over
                    _say(f"LOST {exc.owner}")
                    return LOST
                _say(f"LEASED {exc.owner} {exc.lease_until}")
                await asyncio.sleep(max((exc.lease_until or 0.0) - time.time(), 0.0) + 0.01)
                continue
            except ResumeError as exc:
                if "already completed" not in str(exc):
                    raise
                _say("ALREADY")
                return 0
            _say(f"DONE {result.status} {result.output}")
            return 0 if result.status == "completed" else 1
    finally:
        await flujo.aclose()
    raise AssertionError("the run stayed leased")


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))))
