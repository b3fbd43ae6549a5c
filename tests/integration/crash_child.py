"""A 30-step durable run used by the crash test; run as a script: ``run|resume RUN_ID DIR``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from flujo import ContextReference, Flujo, Pipeline, PipelineContext, Step
from flujo.providers import SQLiteStateProvider
from tests.integration.children import resume_when_free, short_lease

STEPS = 30


class Journal(PipelineContext):
    log: ContextReference[list[int]] = ContextReference(provider_id="journal", key="log")


def make_step(index: int) -> Step[int, int]:
    async def append(data: int, *, context: Journal) -> int:
        entries = context.log.get() or []
        await asyncio.sleep(0.02)  # long enough for the parent to kill us mid-run
        context.log.set([*entries, index])
        return data + 1

    return Step.from_callable(append, name=f"append{index}")


def runner(folder: Path) -> Flujo[int, int, Journal]:
    provider = SQLiteStateProvider(folder / "journal.db")
    pipeline = Pipeline([make_step(i) for i in range(STEPS)])
    flujo = Flujo(
        pipeline,
        context_model=Journal,
        state_providers={"journal": provider},
        pipeline_name="crash-test",
    )
    return short_lease(flujo)


async def main(command: str, run_id: str, folder: Path) -> int:
    flujo = runner(folder)
    if command == "run":
        result = await flujo.run_async(0, run_id=run_id)
    else:
        result = await resume_when_free(flujo, run_id)
    await flujo.aclose()
    print(result.status, result.output)
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))))
