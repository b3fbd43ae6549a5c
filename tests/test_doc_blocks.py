"""The docs conventions of tests/doc_blocks.py: which fences run, and how output is compared."""

from __future__ import annotations

import pytest

from tests.doc_blocks import SKIP_MARKER, Command, Graph, SessionFile, matches, read_page


def test_block_parser_follows_the_rules() -> None:
    page = read_page(
        "\n".join(
            [
                "```python",
                "print('run')",
                "```",
                "",
                '```text title="Output"',
                "run",
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
                '```python title="mod.py"',
                "X = 1",
                "```",
                "```console",
                "$ python -c 'import mod; print(mod.X)'",
                "1",
                "$ echo a \\",
                "  b",
                "a b",
                "```",
                "<!-- docs-test: graph examples/x.py:pipeline -->",
                "```mermaid",
                "flowchart TD",
                "```",
                "```mermaid",
                "flowchart LR",
                "```",
            ]
        )
    )
    assert [(p.code, p.expected) for p in page.programs] == [
        ("print('run')\n", "run\n"),
        ("print('```')\n", None),
    ]
    assert page.session == [
        SessionFile("mod.py", "X = 1\n", 18),
        Command("python -c 'import mod; print(mod.X)'", "1\n", 22),
        Command("echo a \\\n  b", "a b\n", 24),
    ]
    assert page.graphs == [Graph("examples/x.py:pipeline", "flowchart TD\n", 29)]
    assert page.problems == []


def test_misplaced_output_blocks_and_unused_files_are_reported() -> None:
    page = read_page(
        "\n".join(
            [
                "```python",
                "print(1)",
                "```",
                "some prose in between",
                '```text title="Output"',
                "1",
                "```",
                '```python title="lonely.py"',
                "X = 1",
                "```",
            ]
        )
    )
    assert page.programs[0].expected is None
    assert len(page.problems) == 2
    assert "line 5: an Output block" in page.problems[0]
    assert "lonely.py" in page.problems[1]


def test_a_titled_yaml_block_is_a_session_file_and_an_untitled_one_is_prose() -> None:
    page = read_page(
        "\n".join(
            [
                "```yaml",
                "version: 1",
                "```",
                '```yaml title="flows/main.yaml"',
                "version: 1",
                "```",
                "```console",
                "$ cat flows/main.yaml",
                "version: 1",
                "```",
            ]
        )
    )
    assert page.programs == []
    assert page.session == [
        SessionFile("flows/main.yaml", "version: 1\n", 4),
        Command("cat flows/main.yaml", "version: 1\n", 8),
    ]
    assert page.problems == []
    lonely = read_page('```yaml title="unused.yaml"\nversion: 1\n```\n')
    assert ["unused.yaml" in problem for problem in lonely.problems] == [True]


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("a\nb\n", "a\nb\n", True),
        ("a\nb\n", "a\nc\n", False),
        ("a\n", "a\nb\n", False),
        ("completed run ...\n6\n", "completed run 0123abcd\n6\n", True),
        ("ok draft (... ms)\n", "ok draft (0.1 ms)\n", True),
        ("ok draft (... ms)\n", "ok draft 0.1 ms\n", False),
        ("first\n...\nlast\n", "first\nlast\n", True),
        ("first\n...\nlast\n", "first\nx\ny\nlast\n", True),
        ("first\n...\nlast\n", "first\nx\ny\n", False),
        ("\n  a   \n\n", "  a\n", True),
        ("  a\n", "a\n", False),  # leading spaces count
        ("a\n", "\x1b[32ma\x1b[0m\n", True),
        ("[1, 2]\n", "[1, 2]\n", True),  # brackets are text, never a pattern
        ("a.b\n", "axb\n", False),
    ],
)
def test_output_matching_and_its_wildcards(expected: str, actual: str, ok: bool) -> None:
    assert matches(expected, actual) is ok
