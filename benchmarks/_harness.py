"""Shared helpers for flujo's benchmarks: timing, summaries, verdicts.

Every timing uses ``time.perf_counter``; a ``gc.collect()`` runs before each
timed repeat (the collector stays enabled while timing: the garbage a run
makes is part of its cost). Figures are reported as min and median over the
repeats; the min is the least disturbed by the rest of the machine, the
median shows what a typical repeat looks like.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figures:
    """One measured quantity: a sample (in seconds) per repeat."""

    samples: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def scaled(self, factor: float) -> Figures:
        return Figures(tuple(s * factor for s in self.samples))


@dataclass(frozen=True)
class Derived:
    """A figure computed from the mins, and from the medians, of measured figures."""

    min: float
    median: float


def derive(fn: Callable[..., float], *figures: Figures) -> Derived:
    """Apply ``fn`` to the mins and to the medians of ``figures``.

    Differences are taken min-to-min and median-to-median: the min of
    per-repeat differences would pick the luckiest pairing and read low.
    """
    return Derived(fn(*(f.min for f in figures)), fn(*(f.median for f in figures)))


def us(seconds: float) -> str:
    """Format seconds as microseconds."""
    return f"{seconds * 1e6:,.2f} µs"


def ms(seconds: float) -> str:
    """Format seconds as milliseconds."""
    return f"{seconds * 1e3:,.1f} ms"


async def time_interleaved(
    cases: Mapping[str, Callable[[], Awaitable[object]]],
    *,
    runs: int,
    repeats: int,
    warmup: int = 3,
) -> dict[str, Figures]:
    """Time each case ``runs`` times per repeat; return seconds per call, per repeat.

    The cases take turns inside each repeat, so slow drift of the machine
    (frequency scaling, a neighbour process) affects them alike.
    """
    for fn in cases.values():
        for _ in range(warmup):
            await fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            gc.collect()
            start = time.perf_counter()
            for _ in range(runs):
                await fn()
            samples[name].append((time.perf_counter() - start) / runs)
    return {name: Figures(tuple(values)) for name, values in samples.items()}


def row(
    label: str, figures: Figures | Derived, fmt: Callable[[float], str] = us, width: int = 46
) -> str:
    """One table line: label, min, median."""
    return f"  {label:<{width}} min {fmt(figures.min):>14}   median {fmt(figures.median):>14}"


def verdict(what: str, measured: float, target: float, fmt: Callable[[float], str] = us) -> bool:
    """Print a PASS/MISS line comparing ``measured`` with ``target`` (lower is better)."""
    ok = measured <= target
    word = "PASS" if ok else "MISS"
    print(f"{word}: {what} = {fmt(measured)} (target <= {fmt(target)})")
    return ok


def source_revision() -> str:
    """The git commit the imported flujo comes from, ``+dirty`` if flujo/ has local changes."""
    import flujo

    root = Path(flujo.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "flujo"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{root} (not a git checkout)"
    return f"{commit}{'+dirty' if changes else ''}"


def header(title: str, quick: bool) -> None:
    """Print what ran where, so a pasted figure carries its context."""
    import pydantic

    import flujo

    print(f"== {title}{' (quick mode)' if quick else ''}")
    print(
        f"   flujo {flujo.__version__} @ {source_revision()}, pydantic {pydantic.VERSION}, "
        f"Python {platform.python_version()} ({sys.implementation.name}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )


def parse_args(description: str, profile_help: str) -> argparse.Namespace:
    """The options every benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="fewer runs and repeats (CI smoke mode, < 20 s)"
    )
    parser.add_argument("--profile", action="store_true", help=profile_help)
    return parser.parse_args()
