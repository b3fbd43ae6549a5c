"""Per-step cost of a ContextReference to 100,000 dicts that the steps only read.

A 10-step pipeline whose context holds ``ContextReference[list[dict]]`` to
100,000 small dicts kept by ``flujo.providers.InMemoryStateProvider``; each
step reads the data (``len`` and one item) and changes nothing. It is
compared with the same pipeline over a context without the reference, whose
steps read the same list from a module global. ``persist_state=False``.

How the per-step cost is measured: every step appends ``time.perf_counter()``
to a list as its first statement; (last stamp - first stamp) / 9 is the time
one step takes from inside one step to inside the next: the step body plus
all of flujo's per-step machinery (result, bookkeeping, hydrate and persist
checks, dispatch of the next step). It leaves out exactly the per-run fixed
costs (hydration: the load and the one-time content hash of the loaded data;
the end-of-run content-hash comparison), which are reported separately as
per-run fixed cost = run time - 10 x per-step cost. (Subtracting the run
times of a 1-step and a 10-step pipeline would also remove them, but the
difference of two ~40 ms figures is too noisy to resolve a few µs.)

Information only: a variant where one step ``set()``s a new value (the cost
of one save, which also re-hashes the data).

Target: per step with the reference <= 2 x per step without it + 10 µs.

Run: ``.venv/bin/python benchmarks/managed_state.py [--quick] [--profile]``.
Exit status 0 whether or not the target is met; 1 only when a run breaks.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import pstats
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _harness import Figures, derive, header, ms, parse_args, row, us, verdict

from flujo import ContextReference, Flujo, Pipeline, PipelineContext, Step
from flujo.providers import InMemoryStateProvider

ITEMS = 100_000
STEPS = 10
SAVE_AT = STEPS // 2
PROVIDER_ID = "mem"
KEY = "items"
TARGET_FACTOR, TARGET_SLACK_S = 2.0, 10e-6


def make_items(tag: str) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"{tag}-{i}", "value": i * 0.5} for i in range(ITEMS)]


ITEMS_A = make_items("a")
ITEMS_B = make_items("b")  # what the save variant swaps in (built once, not per step)
STAMPS: list[float] = []  # perf_counter() at the start of each step of the current run


class RefContext(PipelineContext):
    items: ContextReference[list[dict[str, Any]]] = ContextReference(
        provider_id=PROVIDER_ID, key=KEY
    )


class PlainContext(PipelineContext):
    pass


def touch(items: list[dict[str, Any]], data: int) -> Any:
    """Read the data without changing it: its length and one item."""
    return items[data % len(items)]["value"]


async def read_ref(data: int, *, context: RefContext) -> int:
    STAMPS.append(time.perf_counter())
    items = context.items.get()
    assert items is not None
    touch(items, data)
    return data + 1


async def read_plain(data: int, *, context: PlainContext) -> int:
    STAMPS.append(time.perf_counter())
    touch(ITEMS_A, data)
    return data + 1


async def replace_ref(data: int, *, context: RefContext) -> int:
    STAMPS.append(time.perf_counter())
    current = context.items.get()
    context.items.set(ITEMS_B if current is ITEMS_A else ITEMS_A)
    return data + 1


def build(body: Callable[..., Any], save: bool = False) -> Pipeline[int, int]:
    steps = [
        Step.from_callable(replace_ref if save and i == SAVE_AT else body, name=f"step_{i}")
        for i in range(STEPS)
    ]
    return Pipeline(steps)


@dataclass
class Case:
    runner: Flujo[int, int, Any]
    provider: InMemoryStateProvider[list[dict[str, Any]]] | None
    run_times: list[float]
    step_times: list[float]


async def one_run(case: Case) -> tuple[float, float]:
    """Run once; return (run time, time per step from the stamps)."""
    STAMPS.clear()
    start = time.perf_counter()
    result = await case.runner.run_async(0)
    elapsed = time.perf_counter() - start
    if not result.success or len(STAMPS) != STEPS:
        raise RuntimeError(f"the benchmark pipeline failed: {result.feedback or result.error}")
    return elapsed, (STAMPS[-1] - STAMPS[0]) / (STEPS - 1)


async def measure(cases: dict[str, Case], runs: int, repeats: int) -> None:
    for case in cases.values():
        await one_run(case)  # warm-up: schemas, first hydration
    for _ in range(repeats):
        for case in cases.values():  # cases take turns, so drift affects them alike
            gc.collect()
            run_total = step_total = 0.0
            for _ in range(runs):
                run_time, step_time = await one_run(case)
                run_total += run_time
                step_total += step_time
            case.run_times.append(run_total / runs)
            case.step_times.append(step_total / runs)


def make_cases() -> dict[str, Case]:
    read_only = InMemoryStateProvider({KEY: ITEMS_A})
    saving = InMemoryStateProvider({KEY: ITEMS_A})

    def case(runner: Flujo[int, int, Any], provider: Any = None) -> Case:
        return Case(runner, provider, [], [])

    return {
        "plain": case(Flujo(build(read_plain), context_model=PlainContext, persist_state=False)),
        "ref": case(
            Flujo(
                build(read_ref),
                context_model=RefContext,
                persist_state=False,
                state_providers={PROVIDER_ID: read_only},
            ),
            read_only,
        ),
        "save": case(
            Flujo(
                build(read_ref, save=True),
                context_model=RefContext,
                persist_state=False,
                state_providers={PROVIDER_ID: saving},
            ),
            saving,
        ),
    }


def content_hash_cost(case: Case, repeats: int) -> Figures:
    """One content hash of the data with the runner's own serializer and hasher."""
    serializer, hasher = case.runner.container.serializer(), case.runner.container.hasher()
    samples = []
    gc.collect()  # once: right after a collection the first large allocation is slower
    for _ in range(repeats):
        start = time.perf_counter()
        hasher.digest(serializer.dumps(ITEMS_A))
        samples.append(time.perf_counter() - start)
    return Figures(tuple(samples))


def provider_calls(case: Case, runs: int) -> str:
    """Loads and saves per run, counted by the provider over ``runs`` fresh runs."""
    assert case.provider is not None
    loads, saves = case.provider.loads, case.provider.saves
    for _ in range(runs):
        asyncio.run(one_run(case))
    return (
        f"{(case.provider.loads - loads) / runs:g} load(s), "
        f"{(case.provider.saves - saves) / runs:g} save(s) per run"
    )


def profile(case: Case, runs: int) -> None:
    async def go() -> None:
        for _ in range(runs):
            await one_run(case)

    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(go())
    profiler.disable()
    print(f"\n== cProfile of {runs} runs of the {STEPS}-step pipeline with the reference")
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(20)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], "also print a cProfile of the reference pipeline")
    runs, repeats = (5, 3) if args.quick else (20, 7)
    header(f"managed state: {STEPS} steps reading a reference to {ITEMS:,} dicts", args.quick)
    cases = make_cases()
    try:
        asyncio.run(measure(cases, runs, repeats))
        calls = {name: provider_calls(cases[name], 3) for name in ("ref", "save")}
    except Exception as exc:
        print(f"ERROR: a benchmark run failed: {type(exc).__name__}: {exc}")
        return 1

    fig = {
        name: (Figures(tuple(c.run_times)), Figures(tuple(c.step_times)))
        for name, c in cases.items()
    }
    fixed = {
        name: Figures(tuple(r - STEPS * s for r, s in zip(run.samples, step.samples, strict=True)))
        for name, (run, step) in fig.items()
    }
    print(f"\n{runs} runs x {repeats} repeats, persist_state=False, one event loop")
    print(row("no reference: per step", fig["plain"][1]))
    print(row("reference, read only: per step", fig["ref"][1]))
    print(row("no reference: run of 10 steps", fig["plain"][0], us))
    print(row("reference, read only: run of 10 steps", fig["ref"][0], ms))
    print(row("no reference: per-run fixed cost", fixed["plain"], us))
    print(row("reference, read only: per-run fixed cost", fixed["ref"], ms))
    print(
        row("one content hash of the data (orjson+blake3)", content_hash_cost(cases["ref"], 7), ms)
    )
    print(f"  provider calls, read only: {calls['ref']}")

    save_cost = derive(lambda s, r: s - r, fig["save"][0], fig["ref"][0])
    print(f"\ninformation: step {SAVE_AT} set()s a new value (same size) each run")
    print(row("reference + one set(): per step", fig["save"][1]))
    print(row("reference + one set(): run of 10 steps", fig["save"][0], ms))
    print(row("cost of the set() and its save (run delta)", save_cost, ms))
    print(f"  provider calls, one set(): {calls['save']}")

    plain_step, ref_step = fig["plain"][1].median, fig["ref"][1].median
    print()
    verdict(
        "per step with the reference (median)",
        ref_step,
        TARGET_FACTOR * plain_step + TARGET_SLACK_S,
    )
    print(f"      (target = 2 x {us(plain_step)} without the reference + 10 µs)")
    if args.profile:
        profile(cases["ref"], runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
