"""The executable parts of a Markdown page, and how what ran is compared with what it shows.

The conventions (documented for authors in tests/test_docs_examples.py):

- ```` ```python ```` is a program, run on its own;
- ```` ```text title="Output" ```` right after it (blank lines between at most) is
  what the program prints, stdout and stderr together;
- ```` ```python title="NAME.py" ```` (or ```` ```yaml title="NAME.yaml" ````) is a file of
  the page's shell session;
- ```` ```console ```` holds ``$ command`` lines, each followed by what it prints;
- ```` ```mermaid ```` after ``<!-- docs-test: graph TARGET -->`` is what
  ``flujo graph TARGET`` prints (TARGET relative to the repository root);
- ``<!-- docs-test: skip -->`` before a ```` ```python ```` block leaves it out.

In expected output, a line that is only ``...`` stands for any number of lines
(none included), and ``...`` inside a line for any text on that line. Lines are
compared without trailing whitespace, and blank lines at either end are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

SKIP_MARKER = "<!-- docs-test: skip -->"
GRAPH_MARKER = re.compile(r"^<!-- docs-test: graph (?P<target>\S+) -->$")
OUTPUT_TITLE = "Output"
WILDCARD = "..."

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
_ATTRIBUTE = re.compile(r'(?P<key>[\w-]+)="(?P<value>[^"]*)"')
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Fence:
    """One fenced block of a page."""

    language: str
    attributes: dict[str, str]
    body: str
    line: int  # 1-based line of the opening fence
    before: str  # the last non-blank line above the fence
    gap_only_blank: bool  # nothing but blank lines between the previous fence and this one


def fences(text: str) -> list[Fence]:
    """Return every fenced block of ``text``, in order."""
    lines = text.splitlines()
    found: list[Fence] = []
    index = 0
    last_close = -1
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
        above = [line.strip() for line in lines[last_close + 1 : start] if line.strip()]
        previous = [line.strip() for line in lines[:start] if line.strip()]
        found.append(
            Fence(
                language=info.split()[0] if info else "",
                attributes={m["key"]: m["value"] for m in _ATTRIBUTE.finditer(info)},
                body="\n".join(body) + "\n",
                line=start + 1,
                before=previous[-1] if previous else "",
                gap_only_blank=last_close >= 0 and not above,
            )
        )
        last_close = index
        index += 1  # the closing fence
    return found


@dataclass(frozen=True)
class Program:
    """A ```python block run on its own, with the output the page shows (if it shows one)."""

    code: str
    line: int
    expected: str | None
    expected_line: int | None


@dataclass(frozen=True)
class Command:
    """One ``$ command`` of a console block and the output the page shows for it."""

    command: str
    expected: str
    line: int


@dataclass(frozen=True)
class SessionFile:
    """A ```python (or ```yaml) title="NAME" block: written into the session folder."""

    name: str
    text: str
    line: int


@dataclass(frozen=True)
class Graph:
    """A ```mermaid block that must equal what ``flujo graph TARGET`` prints."""

    target: str
    chart: str
    line: int


@dataclass
class Page:
    """What one Markdown page holds for the docs test."""

    programs: list[Program] = field(default_factory=list)
    session: list[SessionFile | Command] = field(default_factory=list)
    graphs: list[Graph] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def is_output(fence: Fence) -> bool:
    """Whether ``fence`` is an output block (```text title="Output")."""
    return fence.language == "text" and fence.attributes.get("title") == OUTPUT_TITLE


def console_commands(fence: Fence) -> list[Command]:
    """Split a console block into its ``$ command`` lines and the output after each."""
    commands: list[Command] = []
    pending: list[str] = []
    for offset, line in enumerate(fence.body.splitlines(), start=1):
        if line.startswith("$ "):
            pending = [line[2:]]
            commands.append(Command(line[2:], "", fence.line + offset))
        elif pending and pending[-1].endswith("\\"):
            pending.append(line)
            last = commands[-1]
            commands[-1] = Command("\n".join(pending), "", last.line)
        elif commands:
            last = commands[-1]
            commands[-1] = Command(last.command, last.expected + line + "\n", last.line)
    return commands


def read_page(text: str) -> Page:
    """Sort a page's fences into programs, session steps and graphs; note misplaced ones."""
    page = Page()
    blocks = fences(text)
    used_outputs: set[int] = set()
    pending_files: list[SessionFile] = []
    for position, fence in enumerate(blocks):
        following = blocks[position + 1] if position + 1 < len(blocks) else None
        if fence.language == "yaml" and "title" in fence.attributes:
            pending_files.append(SessionFile(fence.attributes["title"], fence.body, fence.line))
            page.session.append(pending_files[-1])
        elif fence.language == "python" and fence.before != SKIP_MARKER:
            if "title" in fence.attributes:
                pending_files.append(SessionFile(fence.attributes["title"], fence.body, fence.line))
                page.session.append(pending_files[-1])
                continue
            output = following if following and is_output(following) else None
            if output is not None and output.gap_only_blank:
                used_outputs.add(output.line)
                page.programs.append(Program(fence.body, fence.line, output.body, output.line))
            else:
                page.programs.append(Program(fence.body, fence.line, None, None))
        elif fence.language == "console":
            commands = console_commands(fence)
            if not commands:
                page.problems.append(f"line {fence.line}: a console block without `$ ` commands")
            page.session.extend(commands)
            pending_files.clear()
        elif fence.language == "mermaid" and (marker := GRAPH_MARKER.match(fence.before)):
            page.graphs.append(Graph(marker["target"], fence.body, fence.line))
    for fence in blocks:
        if is_output(fence) and fence.line not in used_outputs:
            page.problems.append(
                f"line {fence.line}: an Output block that follows no ```python block directly"
            )
    for unused in pending_files:
        page.problems.append(
            f"line {unused.line}: file {unused.name} is used by no ```console block after it"
        )
    return page


def normalized(text: str) -> list[str]:
    """Return ``text`` as lines without colour codes, trailing blanks or blank ends."""
    lines = [line.rstrip() for line in _ANSI.sub("", text).replace("\r\n", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


@cache
def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split(WILDCARD)))


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is what ``expected`` shows, with ``...`` wildcards."""
    want, got = normalized(expected), normalized(actual)

    @cache
    def from_here(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(got)
        if want[i].strip() == WILDCARD:
            return from_here(i + 1, j) or (j < len(got) and from_here(i, j + 1))
        return (
            j < len(got) and _line_pattern(want[i]).fullmatch(got[j]) is not None
        ) and from_here(i + 1, j + 1)

    return from_here(0, 0)


def page_of(path: Path) -> Page:
    """Read the page at ``path``."""
    return read_page(path.read_text(encoding="utf-8"))
