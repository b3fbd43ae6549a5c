"""Run one benchmark against flujo at another commit, the two taking turns.

``against.py REV BENCH [args...]`` checks REV out into a throwaway ``git
worktree``, then runs ``benchmarks/BENCH.py`` (this checkout's script, for
both) alternately with ``PYTHONPATH`` pointing at REV's tree and at this one,
``--rounds`` times, and prints the figure lines of each run side by side.
Taking turns means a change in the machine's load between rounds reaches both
sides alike; compare the mins first.

Run: ``.venv/bin/python benchmarks/against.py 5639f3e step_overhead --quick``.
Exit status 1 when a benchmark run breaks, 0 otherwise (figures, not gates).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Figure lines, and the header line naming the commit that was imported.
FIGURE = re.compile(r"\bmin\b.*\bmedian\b|^\s*flujo \S+ @ ")


def worktree(rev: str, into: Path) -> Path:
    """Check ``rev`` out into ``into`` (detached) and return the tree."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(into), rev],
        check=True,
        capture_output=True,
    )
    return into


def run(tree: Path, bench: str, args: list[str]) -> list[str]:
    """Run the benchmark with ``tree``'s flujo first on the path; return its figure lines."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    script = ROOT / "benchmarks" / f"{bench}.py"
    done = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{bench} at {tree} failed:\n{done.stdout}\n{done.stderr}")
    return [line.rstrip() for line in done.stdout.splitlines() if FIGURE.search(line)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the commit to measure against (e.g. 5639f3e)")
    parser.add_argument("bench", help="a script of benchmarks/ without .py (e.g. step_overhead)")
    parser.add_argument("--rounds", type=int, default=2, help="turns per side (default 2)")
    known, rest = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="flujo-against-") as scratch:
        before = worktree(known.rev, Path(scratch) / "tree")
        try:
            for turn in range(1, known.rounds + 1):
                for label, tree in ((known.rev, before), ("this checkout", ROOT)):
                    print(f"== round {turn}: {known.bench} with flujo at {label}")
                    for line in run(tree, known.bench, rest):
                        print(line)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                check=False,
                capture_output=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
