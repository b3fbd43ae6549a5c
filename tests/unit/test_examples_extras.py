"""An example needing an extra says how to install it when it is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "control_flow_demo.py"

# Runs the demo with pydantic_ai unimportable, as in an environment without the extra.
WITHOUT_PYDANTIC_AI = f"""
import runpy, sys
sys.modules["pydantic_ai"] = None
runpy.run_path({str(DEMO)!r}, run_name="__main__")
"""


def test_the_control_flow_demo_without_the_ai_extra_says_how_to_install_it(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYDANTIC_AI],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "needs pydantic-ai, which flujo's `ai` extra installs" in done.stderr
    assert "pip install -e '.[ai]'" in done.stderr and "pip install 'flujo[ai]'" in done.stderr
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []
