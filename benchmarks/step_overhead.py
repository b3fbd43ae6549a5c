"""Per-step overhead of the flujo runner against the plain-Python floor.

A 50-step pipeline of trivial async steps, each mutating the context
(``context.counter += 1``), run 200 times with ``await runner.run_async(...)``
inside one event loop, with ``Flujo(..., persist_state=False)``. The floor is
the same work without flujo, measured in the same process: a fresh pydantic
context and 50 awaited async calls that mutate it, 200 times.

Figures:
- per step = run time / 50 (includes the per-run fixed cost, spread over 50 steps);
  this is the figure the target applies to;
- marginal per step = (run time of 50 steps - run time of 1 step) / 49;
- per-run fixed cost = run time of 1 step - marginal per step.

Also measured, as information only: the same pipeline with the default durable
run state (``persist_state=True``: embedded SQLite, a checkpoint per step), with
``XDG_STATE_HOME`` pointed at a throwaway directory.

Run: ``.venv/bin/python benchmarks/step_overhead.py [--quick] [--profile]``.
The exit status is 0 whether or not the target is met: figures are reported, not
gated. It is 1 only when a run breaks (a failed step, or an error from flujo).
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import shutil
import tempfile
from collections.abc import Awaitable, Callable

from _harness import (
    Derived,
    Figures,
    derive,
    header,
    parse_args,
    row,
    time_interleaved,
    us,
    verdict,
)

from flujo import Flujo, Pipeline, PipelineContext, Step

STEPS = 50
TARGET_PER_STEP_S = 10e-6


class BenchContext(PipelineContext):
    counter: int = 0


async def bump(data: int, *, context: BenchContext) -> int:
    context.counter += 1
    return data


def build_pipeline(steps: int) -> Pipeline[int, int]:
    return Pipeline([Step.from_callable(bump, name=f"bump_{i}") for i in range(steps)])


# --- the floor: the same work without flujo ---------------------------------------


async def floor_bump(data: int, context: BenchContext) -> int:
    context.counter += 1
    return data


def floor_run(steps: int) -> Callable[[], Awaitable[object]]:
    async def run() -> BenchContext:
        context = BenchContext()
        data = 0
        for _ in range(steps):
            data = await floor_bump(data, context)
        return context

    return run


# --- flujo --------------------------------------------------------------------------


def flujo_run(runner: Flujo[int, int, BenchContext]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return await runner.run_async(0)

    return run


async def check(runner: Flujo[int, int, BenchContext], steps: int) -> None:
    """A benchmark of a broken run measures nothing: make sure every step ran."""
    result = await runner.run_async(0)
    context = result.final_pipeline_context
    if not result.success or context is None or context.counter != steps:
        raise SystemExit(f"the benchmark pipeline did not run correctly: {result!r}")


def split(one: Figures, many: Figures, steps: int) -> tuple[Derived, Derived]:
    """Marginal per-step cost and per-run fixed cost from a 1-step and an N-step run."""
    marginal = derive(lambda o, m: (m - o) / (steps - 1), one, many)
    fixed = derive(lambda o, m: o - (m - o) / (steps - 1), one, many)
    return marginal, fixed


async def in_memory(runs: int, repeats: int) -> dict[str, Figures]:
    runner_many = Flujo(build_pipeline(STEPS), context_model=BenchContext, persist_state=False)
    runner_one = Flujo(build_pipeline(1), context_model=BenchContext, persist_state=False)
    await check(runner_many, STEPS)
    await check(runner_one, 1)
    return await time_interleaved(
        {
            "floor_many": floor_run(STEPS),
            "flujo_many": flujo_run(runner_many),
            "floor_one": floor_run(1),
            "flujo_one": flujo_run(runner_one),
        },
        runs=runs,
        repeats=repeats,
    )


async def durable(runs: int, repeats: int) -> Figures:
    state_home = tempfile.mkdtemp(prefix="flujo-bench-")
    previous = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = state_home
    try:
        runner = Flujo(build_pipeline(STEPS), context_model=BenchContext, persist_state=True)
        try:
            await check(runner, STEPS)
            figures = await time_interleaved(
                {"sqlite": flujo_run(runner)}, runs=runs, repeats=repeats, warmup=1
            )
        finally:
            await runner.aclose()
    finally:
        if previous is None:
            del os.environ["XDG_STATE_HOME"]
        else:
            os.environ["XDG_STATE_HOME"] = previous
        shutil.rmtree(state_home, ignore_errors=True)
    return figures["sqlite"]


async def profile(runs: int) -> None:
    runner = Flujo(build_pipeline(STEPS), context_model=BenchContext, persist_state=False)
    await check(runner, STEPS)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        await runner.run_async(0)
    profiler.disable()
    print(f"\n== cProfile of {runs} runs of the {STEPS}-step pipeline (top 25 by own time)")
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(25)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], "also print a cProfile of the flujo hot path")
    runs, repeats = (50, 3) if args.quick else (200, 7)
    sqlite_runs, sqlite_repeats = (5, 2) if args.quick else (20, 5)
    header("step overhead: 50 trivial async steps mutating the context", args.quick)

    figures = asyncio.run(in_memory(runs, repeats))
    flujo_step = figures["flujo_many"].scaled(1 / STEPS)
    floor_step = figures["floor_many"].scaled(1 / STEPS)
    marginal, fixed = split(figures["flujo_one"], figures["flujo_many"], STEPS)
    floor_marginal, floor_fixed = split(figures["floor_one"], figures["floor_many"], STEPS)
    overhead = derive(lambda f, p: f - p, flujo_step, floor_step)

    print(f"\n{runs} runs x {repeats} repeats, persist_state=False, one event loop")
    print(row(f"flujo: run of {STEPS} steps", figures["flujo_many"]))
    print(row(f"floor: run of {STEPS} steps", figures["floor_many"]))
    print(row("flujo: per step (run / 50)", flujo_step))
    print(row("floor: per step (run / 50)", floor_step))
    print(row("flujo minus floor, per step", overhead))
    print(row("flujo: marginal per step ((T50 - T1) / 49)", marginal))
    print(row("floor: marginal per step", floor_marginal))
    print(row("flujo: per-run fixed cost", fixed))
    print(row("floor: per-run fixed cost", floor_fixed))

    print(
        f"\ninformation: persist_state=True (embedded SQLite), {sqlite_runs} runs x "
        f"{sqlite_repeats} repeats"
    )
    status = 0
    try:
        sqlite = asyncio.run(durable(sqlite_runs, sqlite_repeats))
    except Exception as exc:  # a broken durable path is reported, and fails the script
        print(f"  ERROR: the durable run failed: {type(exc).__name__}: {exc}")
        status = 1
    else:
        print(row(f"flujo + SQLite: run of {STEPS} steps", sqlite))
        print(row("flujo + SQLite: per step (run / 50)", sqlite.scaled(1 / STEPS)))

    print()
    verdict("flujo per step, persist_state=False (median)", flujo_step.median, TARGET_PER_STEP_S)
    print(
        f"      (min {us(flujo_step.min)}; floor {us(floor_step.median)} per step, so flujo = "
        f"{flujo_step.median / floor_step.median:.1f} x floor; on a busy machine both grow)"
    )

    if args.profile:
        asyncio.run(profile(runs))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
