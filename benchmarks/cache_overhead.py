"""What the step-result cache costs per step: a miss, a hit, against a bare step and one hash.

A 20-step pipeline of trivial sync identity steps (``def ident(x): return x``),
run with ``await runner.run_async(...)`` inside one event loop,
``Flujo(..., persist_state=False)``, the container's default in-memory LRU cache
(1,024 entries), telemetry off (``enable_tracing=False``) in every case alike.
Each case is measured for two inputs: a small dict (~60 bytes of JSON) and a
~10 KB dict (a list of 100 records):

- **bare**: the steps uncached (the fast path): flujo's bare per-step overhead;
- **miss**: the steps with ``cache=True``, and a new input every run (one field
  counts up), so every step makes its key, misses, runs and stores its output;
- **hit**: the steps with ``cache=True`` and the same input every run, so every
  step is answered from the cache;
- **hash**: outside flujo, one key's worth of work: the canonical orjson
  serialization (keys sorted) of ``[pipeline, name, identity, input, {}]`` (the key
  material) and its blake3 digest, with the container's own serializer and hasher;
  and, as the strictest reading, the blake3 digest alone of the input's
  already-serialized bytes.

Per step = run time / 20 (the per-run fixed cost, the same in every case, is
spread over the steps). Each run builds its input dict (a shallow dict around a
shared payload) in every case alike.

Target (issue 5): a cache hit costs less than the bare step overhead plus one hash
of the input — ``hit <= bare + hash``, checked on the medians, for each input
size. "One hash of the input" is the key computation (serialize + blake3); a
second verdict line uses blake3 of pre-serialized bytes alone.

Run: ``.venv/bin/python benchmarks/cache_overhead.py [--quick] [--profile]``.
The exit status is 0 whether or not the target is met: figures are reported, not
gated. It is 1 only when a run breaks (a failed step, a hit that is not a hit).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import itertools
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import Derived, Figures, derive, header, parse_args, row, time_interleaved, verdict

from flujo import Flujo, Pipeline, Step
from flujo.containers import FlujoContainer

STEPS = 20


def ident(x: Any) -> Any:
    return x


def build(cached: bool) -> Pipeline[Any, Any]:
    return Pipeline([Step.from_callable(ident, name=f"s{i}", cache=cached) for i in range(STEPS)])


SMALL: dict[str, Any] = {"user": "ada", "query": "status of my order", "lang": "en"}
LARGE: list[dict[str, Any]] = [
    {"id": i, "sku": f"SKU-{i:06d}", "title": f"item number {i}", "price": i * 1.25, "qty": i % 7}
    for i in range(100)
]
INPUTS = {"small": SMALL, "10 KB": LARGE}


def make_input(payload: Any, n: int) -> dict[str, Any]:
    return {"n": n, "payload": payload}


def runner(cached: bool, *, shared: bool = False) -> Flujo[Any, Any, Any]:
    container = FlujoContainer()
    # shared: cache.copy_values=false, hits hand out the stored object instead of a copy
    container.config.from_dict({"cache": {"copy_values": not shared}})
    return Flujo(build(cached), persist_state=False, enable_tracing=False, container=container)


def case(flujo: Flujo[Any, Any, Any], payload: Any, vary: bool) -> Callable[[], Awaitable[object]]:
    counter = itertools.count(1)

    async def run() -> object:
        return await flujo.run_async(make_input(payload, next(counter) if vary else 0))

    return run


async def check(bare: Flujo[Any, Any, Any], cached: Flujo[Any, Any, Any], payload: Any) -> None:
    """A benchmark of a broken run measures nothing: check what each case really does."""
    plain = await bare.run_async(make_input(payload, -1))
    miss = await cached.run_async(make_input(payload, -2))
    hit = await cached.run_async(make_input(payload, -2))
    problems = []
    if not (plain.success and miss.success and hit.success):
        problems.append("a run failed")
    if len(hit.step_history) != STEPS or not all(r.cache_hit for r in hit.step_history):
        problems.append("the repeated run was not answered from the cache")
    if any(r.cache_hit for r in miss.step_history):
        problems.append("a new input was answered from the cache")
    if hit.output != miss.output or miss.output != make_input(payload, -2):
        problems.append("the cached pipeline did not return its input")
    if problems:
        raise SystemExit(f"the benchmark pipeline did not run correctly: {'; '.join(problems)}")


def time_sync(fn: Callable[[], object], *, runs: int, repeats: int) -> Figures:
    """Seconds per call of a sync function, per repeat."""
    for _ in range(10):
        fn()
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        for _ in range(runs):
            fn()
        samples.append((time.perf_counter() - start) / runs)
    return Figures(tuple(samples))


def hash_cases(payload: Any, runs: int, repeats: int) -> tuple[Figures, Figures, int]:
    """(serialize + blake3 of the key material, blake3 of the bytes alone, size in bytes)."""
    container = runner(False).container
    serializer, hasher = container.serializer(), container.hasher()
    data = make_input(payload, 0)
    blob = serializer.dumps(data)
    identity = build(True).steps[0].identity

    def key() -> str:
        return hasher.digest(serializer.dumps_canonical(["", "s0", identity, data, {}]))

    def digest_only() -> str:
        return hasher.digest(blob)

    return (
        time_sync(key, runs=runs, repeats=repeats),
        time_sync(digest_only, runs=runs, repeats=repeats),
        len(blob),
    )


async def measure(payload: Any, runs: int, repeats: int) -> dict[str, Figures]:
    bare, cached_miss, cached_hit = runner(False), runner(True), runner(True)
    shared_hit = runner(True, shared=True)
    await check(bare, cached_miss, payload)
    await check(bare, cached_hit, payload)
    await check(bare, shared_hit, payload)
    figures = await time_interleaved(
        {
            "bare": case(bare, payload, vary=True),
            "miss": case(cached_miss, payload, vary=True),
            "hit": case(cached_hit, payload, vary=False),
            "shared hit": case(shared_hit, payload, vary=False),
        },
        runs=runs,
        repeats=repeats,
    )
    return {name: f.scaled(1 / STEPS) for name, f in figures.items()}


async def profile(payload: Any, runs: int) -> None:
    flujo = runner(True)
    run = case(flujo, payload, vary=False)
    await run()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        await run()
    profiler.disable()
    print(f"\n== cProfile of {runs} all-hit runs of {STEPS} steps (top 20 by own time)")
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(20)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], "also print a cProfile of the cache-hit path")
    runs, repeats = (40, 3) if args.quick else (200, 7)
    hash_runs = 2_000 if args.quick else 20_000
    header(f"cache overhead: {STEPS} trivial sync steps, in-memory cache", args.quick)
    print(f"\n{runs} runs x {repeats} repeats per case, persist_state=False, one event loop")

    results: list[bool] = []
    for label, payload in INPUTS.items():
        steps = asyncio.run(measure(payload, runs, repeats))
        key, digest, size = hash_cases(payload, hash_runs, repeats)
        bare, miss, hit, shared = steps["bare"], steps["miss"], steps["hit"], steps["shared hit"]
        target = derive(lambda b, h: b + h, bare, key)
        strict = derive(lambda b, h: b + h, bare, digest)
        print(f"\ninput: {label} ({size:,} bytes of JSON)")
        print(row("bare step, per step (run / 20)", bare))
        print(row("cached step, miss (key + run + store)", miss))
        print(row("cached step, hit (a copy, the default)", hit))
        print(row("cached step, hit (copy_values=false)", shared))
        print(row("hit minus bare", derive(lambda h, b: h - b, hit, bare)))
        print(row("miss minus bare", derive(lambda m, b: m - b, miss, bare)))
        print(row("one key: orjson + blake3 of the input", key))
        print(row("blake3 of the serialized input alone", digest))
        print(row("target: bare + one key", target))
        print(row("strict: bare + blake3 alone", strict))
        results.append(_verdicts(label, hit, target, strict))
        verdict(
            f"{label}: hit with copy_values=false vs bare + one key", shared.median, target.median
        )

    if args.profile:
        asyncio.run(profile(LARGE, runs))
    print(
        "\nnote: a hit must make its key (serialize + hash the input), so it beats "
        "'bare + one key' only by skipping the step's own attempt machinery."
    )
    return 0


def _verdicts(label: str, hit: Figures, target: Derived, strict: Derived) -> bool:
    print()
    ok = verdict(f"{label}: hit per step (median) vs bare + one key", hit.median, target.median)
    verdict(f"{label}: hit per step (median) vs bare + blake3 alone", hit.median, strict.median)
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
