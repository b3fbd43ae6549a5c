"""Reading YAML with positions: libyaml's parser and PyYAML's own agree, and both stay safe."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from flujo.domain.dsl.files.marks import (
    MarkedList,
    MarkedLoader,
    MarkedMap,
    Position,
    PyMarkedLoader,
    read_marked,
)

LOADERS = sorted({MarkedLoader, PyMarkedLoader}, key=lambda cls: cls.__name__)

TEXT = """\
version: 1
base: &base {retries: 2}
steps:
  - uses: a:b
    <<: *base
  - {name: "x", uses: c:d}
"""


def _positions(value: Any) -> Any:
    if isinstance(value, MarkedMap):
        return (
            value.position,
            {k: (value.key_at(k), value.value_at(k), _positions(v)) for k, v in value.items()},
        )
    if isinstance(value, MarkedList):
        return (value.position, [(value.item_at(i), _positions(v)) for i, v in enumerate(value)])
    return value


@pytest.mark.parametrize("loader", LOADERS, ids=lambda cls: cls.__name__)
def test_data_and_positions_are_those_of_the_text(loader: type[yaml.SafeLoader]) -> None:
    marked = read_marked(TEXT, loader)
    assert marked.error is None and marked.duplicates == []
    data = marked.data
    assert data == yaml.safe_load(TEXT)  # plain dicts and lists to everything else
    steps = data["steps"]
    assert data.key_at("steps") == Position(3, 1) and steps.position == Position(4, 3)
    assert steps.item_at(1) == Position(6, 5)
    assert steps[0].value_at("uses") == Position(4, 11)
    assert steps[0]["retries"] == 2  # a merge key copies the anchor's keys
    assert steps[1].key_at("uses") == Position(6, 17)


def test_both_parsers_agree_on_every_position() -> None:
    found = [_positions(read_marked(TEXT, loader).data) for loader in LOADERS]
    assert all(one == found[0] for one in found)


@pytest.mark.parametrize("loader", LOADERS, ids=lambda cls: cls.__name__)
def test_a_key_given_twice_is_noted_and_the_last_one_kept(loader: type[yaml.SafeLoader]) -> None:
    marked = read_marked("a: 1\nb: 2\na: 3\n", loader)
    assert marked.data == {"a": 3, "b": 2}
    assert marked.duplicates == [("a", Position(3, 1))]


@pytest.mark.parametrize("loader", LOADERS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("a: [1, 2\n", None, "not valid YAML"),
        ("? [1, 2]\n: x\n", Position(1, 3), "a key must be a plain value"),
        ("a: !!python/name:os.system\n", Position(1, 4), "could not determine a constructor"),
        ("a: &x [*x]\n", None, "not valid YAML"),
    ],
)
def test_what_does_not_parse_is_a_position_and_a_reason(
    loader: type[yaml.SafeLoader], text: str, where: Position | None, words: str
) -> None:
    marked = read_marked(text, loader)
    assert marked.data is None and marked.error is not None
    position, message = marked.error
    assert message.startswith("not valid YAML") and words in message
    if where is not None:
        assert position == where
