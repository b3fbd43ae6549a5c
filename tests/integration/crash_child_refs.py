"""A 30-step durable run whose steps ``set()`` a reference; killed and resumed by the crash tests.

Run as a script: ``MODE RUN_ID DIR [ON_PENDING]``. It starts the run, or resumes it
when the run-state file already holds it. ``MODE`` picks the provider of the
reference:

- ``versioned``: a ``SQLiteStateProvider`` in its own file (``journal.db``);
- ``colocated``: ``SQLiteBackend.provider()``, sharing the run-state file;
- ``plain``: load/save only (no versions), in its own file.

Each step prints ``STEP i`` before it sets the reference. The provider prints
``SAVED i`` right after its write has committed and before flujo writes the
step's committed checkpoint, then sleeps, so a parent that kills on that line
lands between the save and the checkpoint (for ``colocated``, the one
transaction holding both has committed; flujo has not returned from it yet).
A resume that flujo cannot settle prints ``StateConflictError <message>`` and
exits with ``CONFLICT``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flujo import ContextReference, Flujo, Pipeline, PipelineContext, Step
from flujo.domain.errors import StateConflictError
from flujo.domain.interfaces import StepRecord, Write
from flujo.infra.state.sqlite import SQLiteBackend
from flujo.providers import SQLiteStateProvider
from tests.integration.children import resume_when_free, short_lease

STEPS = 30
KEY = "log"
NAMESPACE = "journal"
CONFLICT = 3
"""Exit code of a resume that raised ``StateConflictError``."""

STEP_S = float(os.environ.get("CRASH_STEP_S", "0.003"))
"""How long each step works before it sets the reference (the race test slows it down)."""
BEFORE_S = 0.002
WINDOW_S = 0.012
"""How long the provider waits after its write commits: the parent's kill lands in here."""


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _last(data: Any) -> object:
    return data[-1] if isinstance(data, list) and data else None


class SlowProvider(SQLiteStateProvider):
    """Versioned, in its own file; announces each landed save and then lingers."""

    async def save_versioned(self, writes: Sequence[Write[Any]]) -> list[int]:
        time.sleep(BEFORE_S)  # blocks the loop: nothing else of flujo runs meanwhile
        versions = await super().save_versioned(writes)
        _say(f"SAVED {_last(writes[0].data)}")
        time.sleep(WINDOW_S)
        return versions


class PlainProvider:
    """Only ``load``/``save`` (flujo cannot tell whether a save landed), in its own file."""

    def __init__(self, path: Path) -> None:
        self._inner = SQLiteStateProvider(path, namespace=NAMESPACE)

    async def load(self, key: str) -> Any | None:
        return await self._inner.load(key)

    async def save(self, key: str, data: Any) -> None:
        time.sleep(BEFORE_S)
        await self._inner.save(key, data)
        _say(f"SAVED {_last(data)}")
        time.sleep(WINDOW_S)

    async def close(self) -> None:
        await self._inner.close()


class SlowBackend(SQLiteBackend):
    """Announces each committed step-with-saves transaction and then lingers."""

    async def checkpoint_with(
        self, step: StepRecord, writes: Sequence[tuple[object, Write[Any]]]
    ) -> list[int]:
        time.sleep(BEFORE_S)
        versions = await super().checkpoint_with(step, writes)
        _say(f"SAVED {_last(writes[0][1].data)}")
        time.sleep(WINDOW_S)
        return versions


class Journal(PipelineContext):
    log: ContextReference[list[int]] = ContextReference(provider_id="journal", key=KEY)


def make_step(index: int) -> Step[int, int]:
    async def append(data: int, *, context: Journal) -> int:
        entries = context.log.get() or []
        await asyncio.sleep(STEP_S)
        _say(f"STEP {index}")
        context.log.set([*entries, index])
        return data + 1

    return Step.from_callable(append, name=f"append{index}")


def runner(mode: str, folder: Path) -> tuple[Flujo[int, int, Journal], SQLiteBackend]:
    backend = (
        SlowBackend(folder / "runs.db")
        if mode == "colocated"
        else SQLiteBackend(folder / "runs.db")
    )
    provider: Any
    if mode == "versioned":
        provider = SlowProvider(folder / "journal.db", namespace=NAMESPACE)
    elif mode == "colocated":
        provider = backend.provider(namespace=NAMESPACE)
    elif mode == "plain":
        provider = PlainProvider(folder / "journal.db")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    flujo: Flujo[int, int, Journal] = Flujo(
        Pipeline([make_step(i) for i in range(STEPS)]),
        context_model=Journal,
        state_backend=backend,
        state_providers={"journal": provider},
        pipeline_name=f"crash-refs-{mode}",
    )
    return short_lease(flujo), backend


async def main(mode: str, run_id: str, folder: Path, on_pending: str | None) -> int:
    flujo, backend = runner(mode, folder)
    try:
        if await backend.load_run(run_id) is None:
            result = await flujo.run_async(0, run_id=run_id)
        else:
            result = await resume_when_free(flujo, run_id, on_pending=on_pending)
    except StateConflictError as exc:
        _say(f"StateConflictError {exc}")
        return CONFLICT
    finally:
        await flujo.aclose()
    _say(f"DONE {result.status} {result.output}")
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    pending = sys.argv[4] if len(sys.argv) > 4 else None
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), pending)))
