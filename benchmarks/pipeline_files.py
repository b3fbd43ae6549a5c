"""Time to check and load a pipeline file of 200 top-level steps (``flujo validate``'s work).

The file is generated into a temporary folder beside a module of ten step functions:
200 top-level steps — leaf steps with policies (retries, timeouts, validators,
processors), every tenth a construct (branch, loop, parallel, map, state machine,
router) with steps nested in it, and one step running an imported 20-step file. Two
figures, min and median over the repeats:

- in-process: ``check_pipeline_file(path)`` — read, check every key and value,
  resolve the import paths, build the steps — after a warm-up load, so the Python
  modules it names are imported already (what a second load in one process pays);
- cold: in a fresh interpreter, after ``import flujo``: the first load, the step
  module's import included (what ``flujo validate FILE`` pays beyond start-up).

Information only: no target. Run: ``.venv/bin/python benchmarks/pipeline_files.py [--quick]``.
Exit status 1 only if the file does not load.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import Figures, header, ms, parse_args, row

STEPS = 200

MODULE = "\n".join(
    [
        "from flujo import PipelineContext",
        "",
        "class Bench(PipelineContext):",
        "    next_state: str | None = None",
        "    items: list[int] = []",
        "",
        *[f"def step_{i}(data, *, context: Bench):\n    return data\n" for i in range(10)],
        "def check(output):\n    return True\n",
        "def same(value):\n    return value\n",
        "def pick(data, context):\n    return 'a'\n",
        "def done(data, context):\n    return True\n",
        "def merge(outputs):\n    return outputs\n",
        "def choose(data, context):\n    return ['a']\n",
    ]
)

CONSTRUCTS = [
    "branch: {{condition: bench_steps:pick, branches: {{a: {{uses: bench_steps:step_1,"
    " name: b{i}a}}, b: {{uses: bench_steps:step_2, name: b{i}b}}}}}}",
    "loop: {{body: {{uses: bench_steps:step_3, name: l{i}}}, exit_condition: bench_steps:done,"
    " max_loops: 3}}",
    "parallel: {{branches: {{a: {{uses: bench_steps:step_4, name: p{i}a}}, b: {{uses:"
    " bench_steps:step_5, name: p{i}b}}}}, merge: bench_steps:merge}}",
    "map: {{body: {{uses: bench_steps:step_6, name: m{i}}}, items_from: items, concurrency: 2}}",
    "state_machine: {{states: {{a: {{uses: bench_steps:step_7, name: sa{i}}}, b: {{uses:"
    " bench_steps:step_8, name: sb{i}}}}}, start: a, end: [done], max_transitions: 5,"
    " transitions: {{a: b, b: {{again: a, stop: done}}}}}}",
    "router: {{choose: bench_steps:choose, branches: {{a: {{uses: bench_steps:step_9,"
    " name: r{i}a}}, b: {{uses: bench_steps:step_0, name: r{i}b}}}}}}",
]


def _leaf(i: int) -> str:
    policies = [
        "",
        "\n    max_retries: 2\n    timeout_s: 5",
        "\n    validators: [bench_steps:check]",
        "\n    processors: {input: [bench_steps:same], output: [bench_steps:same]}",
        "\n    cache: true\n    cache_ttl_s: 60",
    ][i % 5]
    return f"  - uses: bench_steps:step_{i % 10}\n    name: s{i}{policies}"


def write_files(folder: Path) -> Path:
    (folder / "bench_steps.py").write_text(MODULE, encoding="utf-8")
    part = ["version: 1", "context: bench_steps:Bench", "steps:"]
    part += [f"  - uses: bench_steps:step_{i % 10}\n    name: part{i}" for i in range(20)]
    (folder / "part.yaml").write_text("\n".join(part) + "\n", encoding="utf-8")
    lines = ["version: 1", "context: bench_steps:Bench", "imports: {part: ./part.yaml}", "steps:"]
    for i in range(STEPS - 1):
        if i % 10 == 9:
            construct = CONSTRUCTS[(i // 10) % len(CONSTRUCTS)].format(i=i)
            lines.append(f"  - name: c{i}\n    {construct}")
        else:
            lines.append(_leaf(i))
    lines.append("  - uses: imports.part")
    path = folder / "big.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> int:
    args = parse_args(__doc__ or "", "(no profile for this benchmark)")
    header("pipeline files: check and load a 200-step file", args.quick)
    from flujo.domain.dsl.files import check_pipeline_file

    repeats, loads = (3, 3) if args.quick else (7, 10)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_files(Path(tmp))
        loaded, findings = check_pipeline_file(path)
        if loaded is None or len(loaded.pipeline) != STEPS:
            print("the generated file does not load:", *findings[:5], sep="\n  ")
            return 1
        size = path.stat().st_size
        print(f"  {STEPS} top-level steps, {size:,} bytes, importing a 20-step file")
        samples = []
        for _ in range(repeats):
            gc.collect()
            start = time.perf_counter()
            for _ in range(loads):
                check_pipeline_file(path)
            samples.append((time.perf_counter() - start) / loads)
        print(row("check + load, in-process (warm imports)", Figures(tuple(samples)), ms))
        cold = _cold(path, repeats)
        print(row("check + load, fresh interpreter (after import flujo)", cold, ms))
    return 0


def _cold(path: Path, repeats: int) -> Figures:
    code = (
        "import time, sys\nt0 = time.perf_counter()\nimport flujo\n"
        "from flujo.domain.dsl.files import check_pipeline_file\nt1 = time.perf_counter()\n"
        f"loaded, found = check_pipeline_file({str(path)!r})\nassert loaded is not None, found\n"
        "print(time.perf_counter() - t1)\n"
    )
    import flujo

    root = str(Path(flujo.__file__).resolve().parents[1])  # the flujo this process measures
    samples = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": root, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        samples.append(float(done.stdout.strip()))
    return Figures(tuple(samples))


if __name__ == "__main__":
    sys.exit(main())
