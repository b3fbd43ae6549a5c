"""Starting the child processes that the crash tests kill and resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spawn(script: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Run ``script`` with ``args`` in a new Python process, output captured as text."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
