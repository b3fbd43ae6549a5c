"""Import time of flujo, and time to a first completed run, in fresh interpreters.

Each case runs in a fresh ``python -c ...`` subprocess, several times, taking
turns. Two figures per case:
- wall: perf_counter around the whole subprocess, as a user would time
  ``python -c "import flujo"`` (interpreter start-up and exit included);
- in-process: perf_counter inside the child around the import (or the
  import + construct + run), which leaves start-up out.
``python -c "pass"`` shows what start-up alone costs. ``import pydantic`` is
the requested baseline, but pydantic imports lazily: ``from pydantic import
BaseModel`` is what any pydantic-based library pays, and with ``import
asyncio`` added it is the floor of an async, pydantic-based library. One
unmeasured child per case runs first, so byte-code caches are warm.

Target: ``python -c "import flujo"`` <= 200 ms (median wall time).
Information: time to a first completed run of a 1-step pipeline (import +
construct + ``runner.run``), with ``persist_state=False`` and with the default
durable state (embedded SQLite, under a fresh ``XDG_STATE_HOME``).

Run: ``.venv/bin/python benchmarks/import_time.py [--quick] [--profile]``;
``--profile`` adds the slowest modules of ``python -X importtime -c "import flujo"``.
Exit status 0 whether or not the target is met; 1 only when a child fails.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _harness import Figures, header, ms, parse_args, row, verdict

TARGET_IMPORT_S = 0.200

TIMED = "import time as _t\n_t0 = _t.perf_counter()\n{body}\nprint(_t.perf_counter() - _t0)\n"

FIRST_RUN = """
from flujo import Flujo, Step

async def hello(data: int) -> int:
    return data + 1

runner = Flujo(Step.from_callable(hello, name="hello"){options})
result = runner.run(1)
assert result.success and result.output == 2, result
"""

CASES = {
    'python -c "pass"': "pass",
    "import pydantic": "import pydantic",
    "from pydantic import BaseModel": "from pydantic import BaseModel",
    "BaseModel + import asyncio": "from pydantic import BaseModel\nimport asyncio",
    "import flujo": "import flujo",
    "first run, persist_state=False": FIRST_RUN.format(options=", persist_state=False"),
    "first run, default (SQLite state)": FIRST_RUN.format(options=""),
}


def run_child(body: str) -> tuple[float, float]:
    """Run ``body`` in a fresh interpreter; return (wall time, in-process time)."""
    state_home = tempfile.mkdtemp(prefix="flujo-bench-")  # a first run on a fresh machine
    env = {**os.environ, "XDG_STATE_HOME": state_home}
    try:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", TIMED.format(body=body)],
            capture_output=True,
            text=True,
            env=env,
        )
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(state_home, ignore_errors=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(last)
    return wall, float(done.stdout.strip().splitlines()[-1])


def import_profile(top: int = 20) -> None:
    """Print the slowest modules of ``python -X importtime -c "import flujo"``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import flujo"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line[12:].split("|"))
        rows.append((int(self_us), int(cumulative_us), name))
    print(f'\n== python -X importtime -c "import flujo": top {top} by cumulative time')
    print(f"  {'cumulative':>12} {'self':>10}  module")
    for self_us, cumulative_us, name in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"  {cumulative_us / 1000:>9.1f} ms {self_us / 1000:>7.1f} ms  {name.strip()}")
    print(f"\n  top {top} by self time")
    for self_us, _, name in sorted(rows, key=lambda r: -r[0])[:top]:
        print(f"  {self_us / 1000:>9.1f} ms  {name.strip()}")
    total = sum(r[0] for r in rows)
    flujo_self = sum(r[0] for r in rows if r[2].strip().startswith("flujo"))
    print(f"\n  {len(rows)} modules, {total / 1000:.1f} ms in all; flujo's own modules (self)")
    print(f"  {flujo_self / 1000:.1f} ms (importtime adds its own overhead to every figure)")


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], 'also print "python -X importtime" of flujo')
    rounds = 3 if args.quick else 7
    header("import time and time to first run, fresh interpreters", args.quick)
    wall: dict[str, list[float]] = {name: [] for name in CASES}
    inside: dict[str, list[float]] = {name: [] for name in CASES}
    failed: dict[str, str] = {}
    for name, body in CASES.items():  # unmeasured: compiles and caches byte code
        try:
            run_child(body)
        except RuntimeError as exc:
            failed[name] = str(exc)
    for _ in range(rounds):
        for name, body in CASES.items():
            if name in failed:
                continue
            try:
                w, i = run_child(body)
            except RuntimeError as exc:
                failed[name] = str(exc)
                continue
            wall[name].append(w)
            inside[name].append(i)

    print(f"\n{rounds} fresh interpreters per case")
    for name in CASES:
        if name in failed:
            print(f"  {name}: ERROR: {failed[name]}")
            continue
        print(row(f"{name}: wall", Figures(tuple(wall[name])), ms, 50))
        print(row(f"{name}: in-process", Figures(tuple(inside[name])), ms, 50))
    print()
    status = 1 if failed else 0
    if "import flujo" in failed:
        print("MISS: import flujo failed")
        return status
    startup = statistics.median(wall['python -c "pass"'])
    flujo_wall = statistics.median(wall["import flujo"])
    verdict('python -c "import flujo", wall (median)', flujo_wall, TARGET_IMPORT_S, ms)
    # The same target for what `import flujo` itself costs, interpreter start-up left out.
    flujo_inside = statistics.median(inside["import flujo"])
    verdict("import flujo, in-process (median)", flujo_inside, TARGET_IMPORT_S, ms)
    print(
        f"      (in-process {ms(statistics.median(inside['import flujo']))}; interpreter "
        f"start-up {ms(startup)}; import pydantic {ms(statistics.median(wall['import pydantic']))}"
        " wall)"
    )
    if args.profile:
        import_profile()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
