"""Checking one section of a pipeline file: its keys, and each plain value against its kind.

Structured values (steps, bodies, imports, usage limits, processors, transitions) are
checked by the builder that reads them; everything else is checked here, against the
``Key.kind`` the format gives it. Each problem goes to the file's ``Report`` with the
position of the key or value at fault; nothing here raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flujo.domain.dsl.files.format import CONSTRUCTS, Key, closest
from flujo.domain.dsl.files.marks import MarkedList, MarkedMap, Position
from flujo.domain.errors import Finding

__all__ = ["EXPECTED", "PATH", "Report", "a_kind_of", "check_keys", "check_value", "is_path"]

PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
"""``package.module:attribute`` (the attribute may be dotted: ``module:Class.method``)."""


def a_kind_of(value: Any) -> str:
    """Return ``a str`` / ``an int``: the type of ``value`` with its article, for messages."""
    noun = type(value).__name__
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def is_path(value: Any) -> bool:
    """Whether ``value`` is written as an import path ``module:attr``."""
    return isinstance(value, str) and PATH.match(value) is not None


@dataclass
class Report:
    """Where one file's findings go: ``report.at(position, message)``."""

    file: str
    findings: list[Finding] = field(default_factory=list)

    def at(self, position: Position, message: str) -> None:
        """Record a finding at ``position`` of this file."""
        self.findings.append(Finding(self.file, position.line, position.column, message))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _identifier(value: Any) -> bool:
    return isinstance(value, str) and value.isidentifier()


def _strings(value: Any, each: Callable[[Any], bool]) -> bool:
    return isinstance(value, list) and all(each(item) for item in value)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "text": (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "path": (is_path, "an import path module:attr"),
    "paths": (lambda v: _strings(v, is_path), "a list of import paths module:attr"),
    "positive_int": (lambda v: _int(v) and v > 0, "an integer > 0"),
    "count": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "seconds": (lambda v: v is None or (_number(v) and v > 0), "a number > 0, or null"),
    "delay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "factor": (lambda v: _number(v) and v >= 1, "a number >= 1"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "cache": (lambda v: v is True or v is False or v == "strict", "true, false or strict"),
    "field": (_identifier, "the name of a context field"),
    "fields": (lambda v: _strings(v, _identifier), "a list of context field names"),
    "field_or_path": (
        lambda v: _identifier(v) or is_path(v),
        "a context field name, or an import path module:function",
    ),
    "writers": (
        lambda v: (
            isinstance(v, dict)
            and all(isinstance(k, str) and isinstance(b, str) for k, b in v.items())
        ),
        "a mapping from reference fields to branch names",
    ),
    "ends": (
        lambda v: _strings(v, lambda s: isinstance(s, str)) and bool(v),
        "a non-empty list of state names",
    ),
    "tokens": (lambda v: v is None or (_int(v) and v > 0), "an integer > 0, or null"),
    "cost": (lambda v: v is None or (_number(v) and v > 0), "a number > 0, or null"),
}

EXPECTED = {kind: expected for kind, (_, expected) in _CHECKS.items()}
"""What each plain kind of value must be, as the findings say it."""


def _shown(value: Any) -> str:
    if isinstance(value, MarkedMap):
        return "a mapping"
    if isinstance(value, MarkedList):
        return "a list"
    return repr(value)


def check_value(key: Key, value: Any, at: Position, owner: str, report: Report) -> bool:
    """Check a plain value against its key's kind; report it if it does not fit."""
    if key.kind == "choice":
        if value in key.choices:
            return True
        choices = " or ".join(repr(c) for c in key.choices)
        report.at(at, f"{owner}: {key.name} must be {choices}, got {_shown(value)}")
        return False
    test, expected = _CHECKS[key.kind]
    if test(value):
        return True
    report.at(at, f"{owner}: {key.name} must be {expected}, got {_shown(value)}")
    return False


def check_keys(
    mapping: MarkedMap, keys: Sequence[Key], owner: str, report: Report, *, step: bool = False
) -> bool:
    """Report keys ``mapping`` should not have and required keys it lacks; ``True`` if none.

    In a step's own mapping (``step=True``) a key of a construct's section is said to
    belong inside that section.
    """
    known = [key.name for key in keys]
    sound = True
    for name in mapping:
        if name in known:
            continue
        sound = False
        at = mapping.key_at(name)
        if not isinstance(name, str):
            report.at(at, f"{owner}: key {name!r} is not a name; quote it if it is one")
            continue
        home = [kind for kind, inner in CONSTRUCTS.items() if any(k.name == name for k in inner)]
        if home and step:
            kinds = " or ".join(f"{kind}:" for kind in home)
            report.at(at, f"{owner}: unknown key {name!r}; it belongs inside {kinds}")
        else:
            report.at(at, f"{owner}: unknown key {name!r}{closest(name, known)}")
    for key in keys:
        if key.required and key.name not in mapping:
            sound = False
            report.at(mapping.position, f"{owner}: missing key {key.name!r}")
    return sound
