"""Durable-run overhead: per-step cost with a SQLite checkpoint at every step, and bytes per step.

Run: python benchmarks/durable_runs.py [--quick]

Prints, measured in this process:
- µs per step of a 50-step pipeline with durable SQLite checkpoints, beside the same
  pipeline with persist_state=False (target: durable <= 150 µs per step);
- bytes written per checkpoint at step 10 and at step 1,000 of one 1,000-step run
  (target: constant, <= 1 KB for a small context), and the SQLite file's growth per step.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from flujo import Flujo, Pipeline, PipelineContext, Step
from flujo.domain.interfaces import RunRecord, StepRecord
from flujo.domain.models import RunStatus
from flujo.state import SQLiteBackend

TARGET_US_PER_STEP = 150.0
TARGET_BYTES_PER_STEP = 1024


class Ctx(PipelineContext):
    counter: int = 0
    label: str = "benchmark"


def make_pipeline(steps: int) -> Pipeline[int, int]:
    async def bump(data: int, *, context: Ctx) -> int:
        context.counter += 1
        return data + 1

    return Pipeline([Step.from_callable(bump, name=f"s{i}") for i in range(steps)])


class MeasuringBackend:
    """Wraps a SQLiteBackend and records the payload bytes of every checkpoint."""

    def __init__(self, inner: SQLiteBackend) -> None:
        self.inner = inner
        self.checkpoint_bytes: list[int] = []

    async def create_run(self, run: RunRecord, *, replace: bool = False) -> None:
        await self.inner.create_run(run, replace=replace)

    async def claim_run(
        self, run_id: str, *, owner: str, lease_until: float, now: float
    ) -> RunRecord:
        return await self.inner.claim_run(run_id, owner=owner, lease_until=lease_until, now=now)

    async def renew_lease(self, run_id: str, *, owner: str, lease_until: float) -> None:
        await self.inner.renew_lease(run_id, owner=owner, lease_until=lease_until)

    async def save_run(self, run: RunRecord, *, owner: str | None = None) -> None:
        await self.inner.save_run(run, owner=owner)

    async def checkpoint(self, step: StepRecord) -> None:
        # Every value the checkpoint writes: the one step row (integers and floats as 8 B).
        row = len(step.run_id) + len(step.name) + len(step.result) + len(step.context) + 3 * 8
        self.checkpoint_bytes.append(row)
        await self.inner.checkpoint(step)

    async def load_run(self, run_id: str) -> RunRecord | None:
        return await self.inner.load_run(run_id)

    async def load_steps(self, run_id: str) -> Sequence[StepRecord]:
        return await self.inner.load_steps(run_id)

    async def list_runs(self, *, status: RunStatus | None, limit: int) -> Sequence[RunRecord]:
        return await self.inner.list_runs(status=status, limit=limit)

    async def delete_run(self, run_id: str) -> None:
        await self.inner.delete_run(run_id)

    async def prune(self, *, older_than: float, statuses: Sequence[RunStatus]) -> int:
        return await self.inner.prune(older_than=older_than, statuses=statuses)

    async def close(self) -> None:
        await self.inner.close()


async def per_step_us(
    runner: Flujo[int, int, Ctx], runs: int, steps: int, repeats: int
) -> list[float]:
    for _ in range(3):
        await runner.run_async(0)
    figures = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        for _ in range(runs):
            await runner.run_async(0)
        figures.append((time.perf_counter() - start) / runs / steps * 1e6)
    return figures


async def overhead(folder: Path, runs: int, repeats: int) -> tuple[list[float], list[float]]:
    steps = 50
    pipeline = make_pipeline(steps)
    durable = Flujo(pipeline, context_model=Ctx, state_backend=SQLiteBackend(folder / "runs.db"))
    memory_only = Flujo(pipeline, context_model=Ctx, persist_state=False)
    try:
        with_state = await per_step_us(durable, runs, steps, repeats)
        without = await per_step_us(memory_only, runs, steps, repeats)
    finally:
        await durable.aclose()
    return with_state, without


async def bytes_per_step(folder: Path, steps: int) -> tuple[list[int], float]:
    db = folder / "long.db"
    backend = MeasuringBackend(SQLiteBackend(db))
    runner = Flujo(make_pipeline(steps), context_model=Ctx, state_backend=backend)
    await runner.run_async(0)
    size_before = db.stat().st_size + _wal_size(db)
    await runner.run_async(0)  # a second identical run: the file's growth is that run's bytes
    growth = db.stat().st_size + _wal_size(db) - size_before
    await runner.aclose()
    return backend.checkpoint_bytes[:steps], growth / steps


def _wal_size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs (CI)")
    args = parser.parse_args(argv)
    runs, repeats, long_steps = (20, 3, 1000) if args.quick else (100, 5, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with_state, without = asyncio.run(overhead(folder, runs, repeats))
        sizes, file_growth = asyncio.run(bytes_per_step(folder, long_steps))
    durable, plain = min(with_state), min(without)
    print(f"durable SQLite checkpoints, 50 steps x {runs} runs x {repeats} repeats")
    print(
        f"  durable:            {durable:8.1f} µs/step (median {statistics.median(with_state):.1f})"
    )
    print(f"  persist_state=False:{plain:8.1f} µs/step (median {statistics.median(without):.1f})")
    print(f"  checkpoint cost:    {durable - plain:8.1f} µs/step")
    verdict = "PASS" if durable <= TARGET_US_PER_STEP else "MISS"
    print(f"  {verdict}: target <= {TARGET_US_PER_STEP:.0f} µs/step")
    at_10, at_1000 = sizes[9], sizes[999]
    print(f"bytes per checkpoint in one {long_steps}-step run")
    print(f"  step 10: {at_10} B   step 1000: {at_1000} B   max: {max(sizes)} B")
    print(f"  SQLite file growth per step (a second run): {file_growth:.0f} B")
    # Step numbers gain digits and float fields vary in length; nothing else may grow.
    constant = abs(at_1000 - at_10) <= 32
    verdict = "PASS" if constant and max(sizes) <= TARGET_BYTES_PER_STEP else "MISS"
    print(f"  {verdict}: target constant and <= {TARGET_BYTES_PER_STEP} B per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
