"""The example folder of pipeline files runs offline from a clone, as the README says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_COMMAND = re.compile(r"`(flujo run examples/pipeline_files/[^`]+)`")


def _readme_command() -> str:
    found = README_COMMAND.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(found) == 1, found
    return str(found[0])


def test_the_readme_command_runs_the_example_from_the_repository(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "flujo"
    shim.write_text(f"#!{sys.executable}\nfrom flujo.cli.app import main\nmain()\n")
    shim.chmod(0o755)
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    for name in ("XDG_STATE_HOME", "FLUJO_STATE_URI"):
        env.pop(name, None)  # the documented default: ~/.local/state/flujo/runs.db
    done = subprocess.run(
        ["bash", "-c", _readme_command()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines[:3]] == [
        "  ok normalize",
        "  ok classify",
        "  ok route",
    ]
    assert lines[-1] == (
        '"escalated: [complaint] My parcel arrived broken, unacceptable (ask: order number?)"'
    )
    assert (tmp_path / "home" / ".local" / "state" / "flujo" / "runs.db").is_file()
    examples_page = (ROOT / "docs" / "examples.md").read_text(encoding="utf-8")
    assert _readme_command() in examples_page.replace("\n", " ")
