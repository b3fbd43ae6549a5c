"""Every example in the docs runs: the Python blocks of README.md and docs/**/*.md, and examples/.

Rules for doc authors:

- A block fenced as ```python is a complete program. It is run on its own, in a
  fresh interpreter, and must exit with status 0; use ``assert`` to check results.
- A block that is not a complete program (a signature, an excerpt) uses another
  fence: ```python-fragment (still highlighted as Python by most renderers), or
  ```text, ```yaml, ```bash. Those are never run.
- A ```python block preceded by the line ``<!-- docs-test: skip -->`` is not run
  either; say why in the page. Prefer a runnable block.

Each block and each script in examples/ runs as a subprocess whose working
directory is an empty temporary folder (shipped profiles are found by name, as
from an installed package) and whose ``XDG_STATE_HOME`` is another temporary
folder. After the run the working folder must still be empty: examples never
write to the working directory. Subprocesses start together, a few at a time, to
keep the whole module fast.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
SKIP_MARKER = "<!-- docs-test: skip -->"
TIMEOUT_S = 120

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Snippet:
    """One runnable thing: a doc block or an example script."""

    id: str
    code: str | None  # the program text, or None for a script file
    path: Path
    line: int


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def python_blocks(path: Path) -> list[Snippet]:
    """Return the ```python blocks of a Markdown file that are not marked to skip."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Snippet] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1  # the closing fence
        language = info.split()[0] if info else ""
        previous = lines[start - 1].strip() if start > 0 else ""
        if language == "python" and previous != SKIP_MARKER:
            found.append(
                Snippet(
                    id=f"{_shown(path)}:{start + 1}",
                    code="\n".join(body) + "\n",
                    path=path,
                    line=start + 1,
                )
            )
    return found


def all_snippets() -> list[Snippet]:
    snippets = [block for doc in DOC_FILES for block in python_blocks(doc)]
    snippets += [Snippet(id=_shown(script), code=None, path=script, line=1) for script in EXAMPLES]
    return snippets


SNIPPETS = all_snippets()


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    leftovers: list[str]


def _run(snippet: Snippet) -> Outcome:
    with (
        tempfile.TemporaryDirectory(prefix="flujo-doc-cwd-") as cwd,
        tempfile.TemporaryDirectory(prefix="flujo-doc-state-") as state_home,
    ):
        workdir = Path(cwd)
        env = {**os.environ, "XDG_STATE_HOME": state_home, "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("FLUJO_STATE_URI", None)  # the documented defaults, whatever the caller set
        if snippet.code is None:
            command = [sys.executable, str(snippet.path)]
        else:
            command = [sys.executable, "-c", snippet.code]
        try:
            done = subprocess.run(
                command,
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return Outcome(-1, str(exc.stdout or ""), f"timed out after {TIMEOUT_S} s", [])
        leftovers = sorted(p.name for p in workdir.iterdir())
        return Outcome(done.returncode, done.stdout, done.stderr, leftovers)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[Outcome]]]:
    """Start every selected snippet up front (a few at a time); each test waits for its own."""
    selected = {
        item.callspec.params["snippet"].id
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and hasattr(item, "callspec")
        and "snippet" in item.callspec.params
    }
    workers = max(2, min(8, (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield {s.id: pool.submit(_run, s) for s in SNIPPETS if s.id in selected}


def test_docs_have_python_blocks() -> None:
    assert any(s.code is not None for s in SNIPPETS), "no ```python block found in the docs"
    names = {s.path.name for s in SNIPPETS}
    assert {"state_providers_demo.py", "quickstart.py"} <= names


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_example_runs(snippet: Snippet, outcomes: dict[str, Future[Outcome]]) -> None:
    outcome = outcomes[snippet.id].result()
    where = f"{_shown(snippet.path)}, line {snippet.line}"
    assert outcome.returncode == 0, (
        f"{where} exited with {outcome.returncode}\n"
        f"--- stdout\n{outcome.stdout}\n--- stderr\n{outcome.stderr}"
    )
    assert not outcome.leftovers, f"{where} wrote to the working directory: {outcome.leftovers}"


def test_block_parser_follows_the_rules(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "\n".join(
            [
                "```python",
                "print('run')",
                "```",
                "```python-fragment",
                "def signature(): ...",
                "```",
                SKIP_MARKER,
                "```python",
                "raise SystemExit(1)",
                "```",
                "````python",
                "print('```')",
                "````",
            ]
        ),
        encoding="utf-8",
    )
    blocks = [b.code for b in python_blocks(page)]
    assert blocks == ["print('run')\n", "print('```')\n"]
