"""The README's Quickstart: exactly two commands, and CI runs the test command as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)]


def test_quickstart_has_exactly_two_one_line_commands() -> None:
    commands = _quickstart_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)


def test_first_command_installs_and_runs_the_main_example() -> None:
    first = _quickstart_commands()[0]
    assert first.startswith("pip install -e . && python ")
    example = first.rsplit(" ", 1)[1]
    assert (ROOT / example).is_file()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    second = _quickstart_commands()[1]
    assert "pytest" in second
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert second in ci_lines
