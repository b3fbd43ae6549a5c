"""YAML read safely, remembering where each mapping, key, value and list item starts.

``read_marked(text)`` parses with ``MarkedLoader``, a ``yaml.CSafeLoader`` subclass
(``PyMarkedLoader``, of ``yaml.SafeLoader``, where PyYAML has no libyaml): the safe
constructors only (no ``!!python/...`` tags, nothing is executed), and mappings and
lists built as ``MarkedMap`` / ``MarkedList`` — a ``dict`` and a ``list`` that also
hold the ``Position`` of themselves, of each key and of each value. A checker walking
the data can then say *where* a value it rejects was written. A key written twice in
one mapping is kept (the last one wins, as in YAML loaders generally) and reported in
``Marked.duplicates``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

__all__ = [
    "START",
    "Marked",
    "MarkedList",
    "MarkedLoader",
    "MarkedMap",
    "Position",
    "PyMarkedLoader",
    "position_of",
    "read_marked",
]


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in a file: 1-based line and column."""

    line: int
    column: int


START = Position(1, 1)
"""The start of a file: where findings about the file as a whole point."""


def _at(node: Node) -> Position:
    mark = node.start_mark
    return Position(mark.line + 1, mark.column + 1)


class MarkedMap(dict[Any, Any]):
    """A YAML mapping that knows where it, each of its keys and each of its values start."""

    __slots__ = ("key_positions", "position", "value_positions")

    def __init__(self, position: Position = START) -> None:
        super().__init__()
        self.position = position
        self.key_positions: dict[Any, Position] = {}
        self.value_positions: dict[Any, Position] = {}

    def key_at(self, key: Any) -> Position:
        """Where ``key`` is written (the mapping's own position if it is not there)."""
        return self.key_positions.get(key, self.position)

    def value_at(self, key: Any) -> Position:
        """Where the value of ``key`` starts (the mapping's own position if it is not there)."""
        return self.value_positions.get(key, self.position)


class MarkedList(list[Any]):
    """A YAML sequence that knows where it and each of its items start."""

    __slots__ = ("item_positions", "position")

    def __init__(self, position: Position = START) -> None:
        super().__init__()
        self.position = position
        self.item_positions: list[Position] = []

    def item_at(self, index: int) -> Position:
        """Where item ``index`` starts."""
        if 0 <= index < len(self.item_positions):
            return self.item_positions[index]
        return self.position


def position_of(value: Any, default: Position) -> Position:
    """Where ``value`` starts if it is a marked mapping or list, else ``default``."""
    return value.position if isinstance(value, MarkedMap | MarkedList) else default


class PyMarkedLoader(yaml.SafeLoader):
    """A safe YAML loader building ``MarkedMap`` / ``MarkedList``, noting repeated keys."""

    duplicates: list[tuple[Any, Position]]

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates = []


# libyaml's parser when PyYAML was built with it (several times faster), else PyYAML's
# own; both with the safe constructors only, and both keep every node's position.
_CSafeLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)

if _CSafeLoader is not None:

    class _CMarkedLoader(_CSafeLoader):  # type: ignore[valid-type, misc]
        """``PyMarkedLoader`` on libyaml's parser."""

        duplicates: list[tuple[Any, Position]]

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.duplicates = []

    MarkedLoader: type[yaml.SafeLoader] = _CMarkedLoader
else:  # pragma: no cover - PyYAML built without libyaml
    MarkedLoader = PyMarkedLoader


def _mapping(loader: Any, node: Node) -> MarkedMap:
    if not isinstance(node, MappingNode):  # pragma: no cover - the tag resolver sees to it
        raise ConstructorError(None, None, "expected a mapping", node.start_mark)
    loader.flatten_mapping(node)  # `<<: *anchor` merge keys
    made = MarkedMap(_at(node))
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise ConstructorError(
                "while reading a mapping",
                node.start_mark,
                "a key must be a plain value (a name), not a list or a mapping",
                key_node.start_mark,
            ) from None
        if key in made:
            loader.duplicates.append((key, _at(key_node)))
        made[key] = loader.construct_object(value_node, deep=True)
        made.key_positions[key] = _at(key_node)
        made.value_positions[key] = _at(value_node)
    return made


def _sequence(loader: Any, node: Node) -> MarkedList:
    if not isinstance(node, SequenceNode):  # pragma: no cover - the tag resolver sees to it
        raise ConstructorError(None, None, "expected a sequence", node.start_mark)
    made = MarkedList(_at(node))
    for item in node.value:
        made.append(loader.construct_object(item, deep=True))
        made.item_positions.append(_at(item))
    return made


_LOADERS: tuple[type[yaml.SafeLoader], ...] = (PyMarkedLoader, MarkedLoader)
for _loader in _LOADERS:
    _loader.add_constructor("tag:yaml.org,2002:map", _mapping)
    _loader.add_constructor("tag:yaml.org,2002:seq", _sequence)


@dataclass(frozen=True, slots=True)
class Marked:
    """What ``read_marked`` found: the data, or where and why it does not parse."""

    data: Any = None
    duplicates: list[tuple[Any, Position]] = field(default_factory=list)
    error: tuple[Position, str] | None = None


def read_marked(text: str, loader_class: type[yaml.SafeLoader] | None = None) -> Marked:
    """Parse ``text`` (one YAML document) safely; a syntax error comes back, never raised.

    ``loader_class`` is ``MarkedLoader`` unless given (``PyMarkedLoader``: PyYAML's parser).
    """
    loader: Any = (loader_class or MarkedLoader)(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = START if mark is None else Position(mark.line + 1, mark.column + 1)
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        return Marked(error=(where, f"not valid YAML: {problem or exc}"))
    except yaml.YAMLError as exc:  # a reader error (a bad byte) has no problem_mark
        return Marked(error=(START, f"not valid YAML: {exc}"))
    finally:
        loader.dispose()
    return Marked(data, loader.duplicates)
