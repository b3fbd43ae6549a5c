"""A durable run with a map of slow items, used by the crash test: ``run|resume RUN_ID DIR``.

Each item appends its index to ``DIR/effects.log`` when its work is done (its side
effect), then returns its square. The run prints its status and output as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from flujo import Flujo, Step
from tests.integration.children import resume_when_free, short_lease

ITEMS = 30
CONCURRENCY = 4
DELAY_S = 0.05


def make_runner(folder: Path) -> Flujo[Any, Any, Any]:
    journal = folder / "effects.log"

    async def work(item: int) -> int:
        await asyncio.sleep(DELAY_S)  # long enough for the parent to kill us mid-map
        with journal.open("a") as f:
            f.write(f"{item}\n")
        return item * item

    pipeline = Step.from_callable(lambda n: list(range(n)), name="items") >> Step.map_over(
        Step.from_callable(work, name="work"), concurrency=CONCURRENCY, name="squares"
    )
    return short_lease(Flujo(pipeline, pipeline_name="control-flow-crash-test"))


async def main(command: str, run_id: str, folder: Path) -> int:
    runner = make_runner(folder)
    if command == "run":
        result = await runner.run_async(ITEMS, run_id=run_id)
    else:
        result = await resume_when_free(runner, run_id)
    await runner.aclose()
    print(json.dumps({"status": result.status, "output": result.output}))
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))))
