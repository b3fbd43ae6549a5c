"""Every example in the docs runs and prints what the page says: README.md, docs/**, examples/.

Rules for doc authors (the parsing lives in tests/doc_blocks.py):

- A ```python block is a complete program, run on its own in a fresh interpreter;
  it must exit with status 0 (use ``assert`` to check results).
- If the program prints anything, a ```text title="Output" block follows it
  directly (only blank lines between) and shows it: stdout and stderr together,
  as a terminal shows them. In that block a line that is only ``...`` stands for
  any number of lines, and ``...`` inside a line for any text on it (run ids,
  timings, paths). Trailing spaces and blank lines at either end do not count.
- A ```python title="NAME.py" block is a file, not a program: it is written into
  the page's session folder for the ```console blocks after it; so is a
  ```yaml title="NAME.yaml" block (a pipeline file, say). A ```yaml block
  without a title is not written anywhere.
- A ```console block is a shell session: each ``$ command`` line runs (through
  bash, a trailing ``\\`` continuing it), and the lines after it, up to the next
  ``$``, are what it prints, with the same wildcards. All the console blocks of a
  page run in order in one folder with one state home, as one user would type
  them. ``flujo`` there is this checkout's command.
- A ```mermaid block after ``<!-- docs-test: graph TARGET -->`` is what
  ``flujo graph TARGET`` prints, TARGET being relative to the repository root
  (``examples/quickstart.py:pipeline``, or a pipeline file
  ``examples/pipeline_files/triage.yaml``).
- Anything else (```python-fragment, ```bash, ```text, ```yaml ...) is not run, and
  ``<!-- docs-test: skip -->`` before a ```python block leaves it out; say why.

Everything runs as a user's first day would: the working directory is an empty
temporary folder, never the repository; ``HOME`` is another one, with
``XDG_STATE_HOME`` and ``FLUJO_STATE_URI`` unset, so the documented defaults
(``~/.local/state/flujo/runs.db``) are what is used; the terminal is 132 columns
wide, without colour. After a program the working folder must still be empty:
examples never write to the working directory. Runs start together, a few at a
time, to keep the module fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.doc_blocks import (
    Command,
    Graph,
    Program,
    SessionFile,
    matches,
    normalized,
    page_of,
    read_page,
)

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TIMEOUT_S = 120
COLUMNS = "132"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@dataclass(frozen=True)
class Snippet:
    """One thing to run: a program, a page's console session, a graph, or a script."""

    id: str
    path: Path
    line: int
    kind: str  # "program", "session", "graph" or "script"
    program: Program | None = None
    session: tuple[SessionFile | Command, ...] = ()
    graph: Graph | None = None


def all_snippets() -> list[Snippet]:
    snippets: list[Snippet] = []
    for doc in DOC_FILES:
        page = page_of(doc)
        where = _shown(doc)
        for program in page.programs:
            snippets.append(
                Snippet(f"{where}:{program.line}", doc, program.line, "program", program=program)
            )
        if page.session:
            first = page.session[0].line
            snippets.append(
                Snippet(f"{where}:console", doc, first, "session", session=tuple(page.session))
            )
        for graph in page.graphs:
            snippets.append(Snippet(f"{where}:{graph.line}", doc, graph.line, "graph", graph=graph))
    snippets += [Snippet(_shown(s), s, 1, "script") for s in EXAMPLES]
    return snippets


SNIPPETS = all_snippets()


@dataclass(frozen=True)
class Ran:
    """One process: its exit status and everything it printed."""

    what: str
    line: int
    returncode: int
    output: str


@dataclass(frozen=True)
class Outcome:
    runs: list[Ran]
    leftovers: list[str]


def _shim(folder: Path) -> Path:
    """A ``flujo`` command on PATH that runs this interpreter's flujo."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    command = bin_dir / "flujo"
    command.write_text(
        f"#!{sys.executable}\nfrom flujo.cli.app import main\nmain()\n", encoding="utf-8"
    )
    command.chmod(0o755)
    return bin_dir


def _environment(home: Path, bin_dir: Path) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("XDG_STATE_HOME", "FLUJO_STATE_URI", "FORCE_COLOR"):
        env.pop(name, None)  # the documented defaults, whatever the caller set
    env.update(
        PYTHONUNBUFFERED="1",  # stdout and stderr interleave as on a terminal
        COLUMNS=COLUMNS,
        NO_COLOR="1",
        TERM="dumb",
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def _call(command: list[str], cwd: Path, env: dict[str, str], what: str, line: int) -> Ran:
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return Ran(what, line, -1, f"{exc.stdout or ''}\ntimed out after {TIMEOUT_S} s")
    return Ran(what, line, done.returncode, done.stdout)


def _run(snippet: Snippet) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="flujo-doc-") as tmp:
        base = Path(tmp)
        workdir, home = base / "cwd", base / "home"
        workdir.mkdir()
        home.mkdir()
        env = _environment(home, _shim(base))
        runs: list[Ran] = []
        written: set[str] = set()
        if snippet.program is not None:
            code = snippet.program.code
            runs.append(_call([sys.executable, "-c", code], workdir, env, "program", snippet.line))
        elif snippet.graph is not None:
            module, _, attr = snippet.graph.target.partition(":")
            target = f"{ROOT / module}:{attr}" if attr else str(ROOT / module)
            runs.append(_call(["flujo", "graph", target], workdir, env, "graph", snippet.line))
        elif snippet.kind == "script":
            runs.append(_call([sys.executable, str(snippet.path)], workdir, env, "script", 1))
        for item in snippet.session:
            if isinstance(item, SessionFile):
                file = workdir / item.name  # a title may name a subfolder: flows/shout.py
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(item.text, encoding="utf-8")
                written.add(Path(item.name).parts[0])
            else:
                runs.append(_call(["bash", "-c", item.command], workdir, env, "$", item.line))
        leftovers = sorted(p.name for p in workdir.iterdir() if p.name not in written)
        return Outcome(runs, leftovers)


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


def _difference(expected: str, actual: str) -> str:
    shown = "\n".join(normalized(expected))
    got = "\n".join(normalized(actual))
    return f"--- the page shows\n{shown}\n--- it printed\n{got}"


def _check_program(snippet: Snippet, ran: Ran) -> None:
    assert snippet.program is not None
    where = f"{_shown(snippet.path)}, line {snippet.line}"
    assert ran.returncode == 0, f"{where} exited with {ran.returncode}\n{ran.output}"
    expected = snippet.program.expected
    if expected is None:
        assert not normalized(ran.output), (
            f'{where} prints, but no ```text title="Output" block follows it to show '
            f"what:\n{ran.output}"
        )
        return
    assert matches(expected, ran.output), (
        f"{where}: the output shown at line {snippet.program.expected_line} is not what it "
        f"prints\n{_difference(expected, ran.output)}"
    )


def _check_session(snippet: Snippet, runs: list[Ran]) -> None:
    commands = [item for item in snippet.session if isinstance(item, Command)]
    assert len(commands) == len(runs)
    for command, ran in zip(commands, runs, strict=True):
        where = f"{_shown(snippet.path)}, line {command.line}: $ {command.command}"
        assert ran.returncode >= 0, f"{where}\n{ran.output}"
        assert matches(command.expected, ran.output), (
            f"{where}\n(exit status {ran.returncode})\n{_difference(command.expected, ran.output)}"
        )


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_example_runs_and_prints_what_the_page_shows(
    snippet: Snippet, outcomes: dict[str, Future[Outcome]]
) -> None:
    outcome = outcomes[snippet.id].result()
    where = f"{_shown(snippet.path)}, line {snippet.line}"
    if snippet.kind == "program":
        _check_program(snippet, outcome.runs[0])
    elif snippet.kind == "session":
        _check_session(snippet, outcome.runs)
    elif snippet.kind == "graph":
        assert snippet.graph is not None
        ran = outcome.runs[0]
        assert ran.returncode == 0, f"{where}: flujo graph failed\n{ran.output}"
        assert normalized(snippet.graph.chart) == normalized(ran.output), (
            f"{where}: the chart is not what `flujo graph {snippet.graph.target}` draws today; "
            f"paste its output\n{_difference(snippet.graph.chart, ran.output)}"
        )
    else:
        ran = outcome.runs[0]
        assert ran.returncode == 0, f"{where} exited with {ran.returncode}\n{ran.output}"
    assert not outcome.leftovers, f"{where} wrote to the working directory: {outcome.leftovers}"


@pytest.mark.parametrize("doc", DOC_FILES, ids=_shown)
def test_every_output_block_and_session_file_has_its_place(doc: Path) -> None:
    assert page_of(doc).problems == []


def test_docs_have_every_kind_of_snippet() -> None:
    kinds = {s.kind for s in SNIPPETS}
    assert kinds == {"program", "session", "graph", "script"}, kinds
    names = {s.path.name for s in SNIPPETS}
    assert {"state_providers_demo.py", "quickstart.py", "cli.md"} <= names
    assert any(s.program and s.program.expected for s in SNIPPETS)


# --- the harness itself ---------------------------------------------------------------


def _snippet_of(page_text: str) -> list[Snippet]:
    page = read_page(page_text)
    made = [
        Snippet(f"t:{p.line}", ROOT / "t.md", p.line, "program", program=p) for p in page.programs
    ]
    if page.session:
        made.append(Snippet("t:console", ROOT / "t.md", 1, "session", session=tuple(page.session)))
    return made


def test_a_program_runs_away_from_the_repository_as_a_newcomer_would() -> None:
    root, home = str(ROOT), os.path.expanduser("~")
    code = (
        "import os, pathlib\n"
        f"print(pathlib.Path.cwd() != pathlib.Path({root!r}), sorted(os.listdir()))\n"
        "print(os.environ.get('XDG_STATE_HOME'), os.environ.get('FLUJO_STATE_URI'))\n"
        f"print(pathlib.Path.home() != pathlib.Path({home!r}))\n"
    )
    (snippet,) = _snippet_of(f"```python\n{code}```\n")
    outcome = _run(snippet)
    assert normalized(outcome.runs[0].output) == ["True []", "None None", "True"]


def test_a_wrong_output_block_or_an_unshown_print_fails_the_check() -> None:
    wrong, unshown = _snippet_of(
        "```python\nprint('spans', ['a', 'b'])\n```\n\n"
        "```text title=\"Output\"\nspans ['a']\n```\n"
        "```python\nprint('shown nowhere')\n```\n"
    )
    for snippet in (wrong, unshown):
        with pytest.raises(AssertionError):
            _check_program(snippet, _run(snippet).runs[0])


def test_a_console_session_shares_its_folder_and_checks_each_command() -> None:
    (good,) = _snippet_of(
        '```python title="pkg/mod.py"\nX = 41\n```\n'
        "```console\n"
        "$ python -c 'import sys; sys.path.insert(0, \"pkg\"); import mod; print(mod.X + 1)'\n"
        "42\n"
        "$ ls\n"
        "pkg\n"
        "$ flujo --help\n"
        "...\n"
        "...Usage: flujo [OPTIONS] COMMAND...\n"
        "...\n"
        "```\n"
    )
    outcome = _run(good)
    _check_session(good, outcome.runs)
    assert outcome.leftovers == []
    (bad,) = _snippet_of('```console\n$ echo "run 1"\nrun 2\n```\n')
    with pytest.raises(AssertionError, match="run 2"):
        _check_session(bad, _run(bad).runs)
