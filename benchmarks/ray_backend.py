"""RayExecutionBackend beside raw Ray, measured in the same run on a local 2-CPU cluster.

A Ray head is started in this process (``ray.init``) on 127.0.0.1 with two CPUs,
no dashboard, its own token file, and stopped at the end.

Figures:
  (1) per step of a 20-step pipeline of trivial steps on Ray, against 20
      sequential raw ``ray.get(f.remote(x))`` calls (target: <= 1.3 x the raw
      round trip), with the default ``workers="actors"``; as information, the
      same with ``workers="tasks"``, and the first run of a new backend (its
      actor starting) per step;
  (2) a ``map_over`` of 200 items (40 in quick mode) that each sleep 50 ms, at
      concurrency 2, against the same number of raw Ray tasks (all submitted,
      two CPUs): throughput as a share of raw (target: >= 85%);
  (3) with ``FLUJO_TEST_PG_DSN`` set: a PostgreSQL checkpoint per step (a 20-step
      in-process pipeline on the PostgreSQL backend with a new run id per run,
      run time / 20: the run's header, lease and final status included) against
      one raw asyncpg INSERT round trip of a row of the same shape (target: <= 1.5x),
      60 repeats (30 in quick mode), the two sides taking turns to go first; as
      information, the same with a 100-step run, which spreads the run's own part
      (its header, final statement and set-up) over five times the steps.

Run: ``.venv/bin/python benchmarks/ray_backend.py [--quick]``.
Exit status 0 whether or not the targets are met; 1 only when a run breaks.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import Figures, header, ms, parse_args, row, us

STEPS = 20
LONG_STEPS = 100
SLEEP_S = 0.05
RATIO_TARGET = 1.3
THROUGHPUT_TARGET = 0.85
PG_RATIO_TARGET = 1.5
PG_REPEATS = {False: 60, True: 30}
"""Repeats of the PostgreSQL figure (full, quick): each takes ~5 ms, and the median
of 3 (the Ray figures' quick count) moved by 0.2x between runs on this machine."""


def inc(x: int) -> int:
    """A trivial step and a trivial raw task."""
    return x + 1


def nap(x: int) -> int:
    """Sleep 50 ms: one item of the map."""
    time.sleep(SLEEP_S)
    return x


def start_ray(temp_dir: Path) -> Any:
    """Start a 2-CPU head on loopback in this process; Ray reads its environment on import."""
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    os.environ.update(
        {
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
        }
    )
    import ray

    here = str(Path(__file__).resolve().parent)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=str(temp_dir),
        log_to_driver=False,
        object_store_memory=100_000_000,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([here, *sys.path[:1]])}},
    )
    return ray


async def pipeline_vs_raw(
    ray: Any, repeats: int, workers: str = "actors"
) -> tuple[Figures, Figures, float]:
    """Per step: the 20-step pipeline on Ray, 20 sequential raw round trips, the first run."""
    from flujo import Flujo, Pipeline, Step
    from flujo.backends import RayExecutionBackend

    raw_inc = ray.remote(num_cpus=1, max_retries=0)(inc)
    pipeline = Pipeline([Step.from_callable(inc, name=f"s{i}") for i in range(STEPS)])
    backend = RayExecutionBackend(workers=workers)  # type: ignore[arg-type]
    runner = Flujo(pipeline, backend=backend, persist_state=False)
    ray.get(raw_inc.remote(0))
    start = time.perf_counter()
    await runner.run_async(0)
    first = (time.perf_counter() - start) / STEPS
    for _ in range(2):
        await runner.run_async(0)
        ray.get(raw_inc.remote(0))
    flujo_times, raw_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = await runner.run_async(0)
        flujo_times.append((time.perf_counter() - start) / STEPS)
        if not result.success or result.output != STEPS:
            raise RuntimeError(f"the pipeline failed: {result.feedback}")
        start = time.perf_counter()
        x = 0
        for _ in range(STEPS):
            x = ray.get(raw_inc.remote(x))
        raw_times.append((time.perf_counter() - start) / STEPS)
    backend.close()
    return Figures(tuple(flujo_times)), Figures(tuple(raw_times)), first


async def map_vs_raw(ray: Any, items: int, repeats: int) -> tuple[Figures, Figures]:
    """Seconds for ``items`` 50 ms items: a map at concurrency 2, and raw tasks."""
    from flujo import Flujo, Step
    from flujo.backends import RayExecutionBackend

    raw_nap = ray.remote(num_cpus=1, max_retries=0)(nap)
    mapped = Step.map_over(
        Step.from_callable(nap, name="nap"),
        items_from=lambda data, ctx: list(range(items)),
        concurrency=2,
        name="naps",
    )
    backend = RayExecutionBackend()
    runner = Flujo(mapped, backend=backend, persist_state=False)
    ray.get([raw_nap.remote(i) for i in range(2)])
    await runner.run_async(0)  # the pool's actors start
    flujo_times, raw_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = await runner.run_async(0)
        flujo_times.append(time.perf_counter() - start)
        if not result.success:
            raise RuntimeError(f"the map failed: {result.feedback}")
        start = time.perf_counter()
        ray.get([raw_nap.remote(i) for i in range(items)])
        raw_times.append(time.perf_counter() - start)
    backend.close()
    return Figures(tuple(flujo_times)), Figures(tuple(raw_times))


async def postgres_vs_raw(dsn: str, repeats: int, steps: int = STEPS) -> tuple[Figures, Figures]:
    """Per step: a ``steps``-step run on the PostgreSQL backend, and one raw INSERT round trip.

    The raw INSERTs run on the very connection the backend's checkpoints use. The
    round trip depends on the server process behind a connection: measured here, five
    connections of one client, interleaved, took 60-67 µs on one and 100-127 µs on the
    others, so a baseline on a connection of its own compared two server processes,
    not flujo with a bare INSERT (ratios from 1.1x to 2.4x between runs).
    """
    from flujo import Flujo, Pipeline, Step
    from flujo.state import PostgresBackend

    backend = PostgresBackend(dsn)
    pipeline = Pipeline([Step.from_callable(inc, name=f"s{i}") for i in range(steps)])
    runner = Flujo(pipeline, state_backend=backend)
    # New run ids, as a user's runs have (no replace: that path also deletes a stored run);
    # deleted at the end, so a database kept between runs does not grow.
    prefix = f"bench-{os.getpid()}-{secrets.token_hex(4)}"
    run_ids = [f"{prefix}-warm", *(f"{prefix}-{repeat}" for repeat in range(repeats))]
    table = f"bench_raw_{os.getpid()}"  # a real table (a temporary one skips the WAL)
    body = b"x" * 200
    await runner.run_async(0, run_id=run_ids[0])
    # The connection the backend's statements on this loop use (its `Lane`, a private
    # name), read here only so both sides of the ratio talk to one server process.
    conn = (await backend._lanes.get()).connection
    await conn.execute(
        f"CREATE TABLE {table} (run_id text, idx int, result bytea, context bytea,"
        " PRIMARY KEY (run_id, idx))"
    )
    try:
        flujo_times, raw_times = [], []
        for repeat in range(repeats):
            # Turns alternate which side goes first, so neither always follows the other
            # (a garbage collection, the server's background writer, a cold cache).
            for side in (0, 1) if repeat % 2 == 0 else (1, 0):
                start = time.perf_counter()
                if side == 0:
                    result = await runner.run_async(0, run_id=run_ids[repeat + 1])
                    flujo_times.append((time.perf_counter() - start) / steps)
                    if not result.success:
                        raise RuntimeError(f"the durable run failed: {result.feedback}")
                    if (await backend._lanes.get()).connection is not conn:
                        raise RuntimeError("the backend changed connections: no fair ratio")
                    continue
                for i in range(steps):
                    await conn.execute(
                        f"INSERT INTO {table} VALUES ($1, $2, $3, $4)", f"r{repeat}", i, body, body
                    )
                raw_times.append((time.perf_counter() - start) / steps)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        for run_id in run_ids:
            await backend.delete_run(run_id)
        await runner.aclose()
    return Figures(tuple(flujo_times)), Figures(tuple(raw_times))


def share(label: str, measured: float, target: float) -> None:
    word = "PASS" if measured >= target else "MISS"
    print(f"{word}: {label} = {measured:.0%} (target >= {target:.0%})")


def ratio(label: str, measured: float, target: float) -> None:
    word = "PASS" if measured <= target else "MISS"
    print(f"{word}: {label} = {measured:.2f}x (target <= {target:.1f}x)")


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], "(no profile for this benchmark)")
    repeats = 3 if args.quick else 7
    items = 40 if args.quick else 200
    header("Ray backend beside raw Ray (local 2-CPU cluster on 127.0.0.1)", args.quick)
    temp_dir = Path(tempfile.mkdtemp(prefix="frb", dir="/tmp"))
    ray = start_ray(temp_dir)
    try:
        flujo_step, raw_step, first = asyncio.run(pipeline_vs_raw(ray, repeats))
        task_step, task_raw, _ = asyncio.run(pipeline_vs_raw(ray, repeats, "tasks"))
        flujo_map, raw_map = asyncio.run(map_vs_raw(ray, items, repeats))
    finally:
        ray.shutdown()
    print(f"\n{repeats} repeats; per step of {STEPS} trivial steps")
    print(row("flujo on Ray (actors): per step", flujo_step, ms))
    print(row("raw ray.get(f.remote(x)): per call", raw_step, ms))
    print(row("info: flujo on Ray (tasks): per step", task_step, ms))
    print(row("info: raw, beside the tasks runs", task_raw, ms))
    print(f"  info: first run of a new backend (its actor starts): {first * 1e3:.1f} ms per step")
    print(f"\n{items} items of {SLEEP_S * 1e3:.0f} ms at concurrency 2 (2 CPUs)")
    print(row("flujo map_over on Ray: whole map", flujo_map, ms))
    print(row("raw Ray tasks: all items", raw_map, ms))
    dsn = os.environ.get("FLUJO_TEST_PG_DSN")
    pg: tuple[Figures, Figures] | None = None
    if dsn:
        pg = asyncio.run(postgres_vs_raw(dsn, PG_REPEATS[args.quick]))
        print(f"\nPostgreSQL ({STEPS}-step run, in-process steps), per step")
        print(row("flujo checkpoint per step", pg[0], us))
        print(row("raw asyncpg INSERT round trip", pg[1], us))
        pairs = zip(pg[0].samples, pg[1].samples, strict=True)
        paired = statistics.median(f / r for f, r in pairs)
        print(f"  info: {len(pg[0].samples)} repeats; median of per-repeat ratios {paired:.2f}x")
        # The run's own statements and set-up, spread over five times the steps: what a
        # checkpoint costs once the per-run part is small (information, not the target).
        long = asyncio.run(postgres_vs_raw(dsn, PG_REPEATS[args.quick], LONG_STEPS))
        print(row(f"info: flujo per step of a {LONG_STEPS}-step run", long[0], us))
        print(row("info: raw INSERT, beside it", long[1], us))
        print(f"  info: {LONG_STEPS}-step ratio {long[0].median / long[1].median:.2f}x")
    else:
        print("\n(PostgreSQL figures: set FLUJO_TEST_PG_DSN to a database to measure them)")
    print()
    ratio(
        "flujo per step / raw round trip (medians)",
        flujo_step.median / raw_step.median,
        RATIO_TARGET,
    )
    share("map throughput / raw (medians)", raw_map.median / flujo_map.median, THROUGHPUT_TARGET)
    if pg is not None:
        ratio(
            "checkpoint per step / raw INSERT (medians)",
            pg[0].median / pg[1].median,
            PG_RATIO_TARGET,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
