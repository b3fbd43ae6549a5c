"""The files of one load: the root pipeline file, the files it imports, and their parts.

A file's ``imports`` name other files, relative to the importing file's folder.
``uses: imports.NAME`` runs the whole file ``NAME`` names as one step (a
``SubPipelineStep``); ``uses: imports.NAME.STEP`` uses one of its top-level steps, as
it is written there. Two files may use each other's parts: what must not happen is a
step that needs itself — a part using, through any chain of imports, the part itself
or a whole file that holds it. Such a chain is an import cycle, reported at the
``uses`` that closes it, naming the files (and steps) around it.

Every file is read and its header checked once; every step is built once (a part
used from two places is one step) and every file is checked whole, even when only
one of its parts is used, so that ``flujo validate`` reports everything in one pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flujo.domain.dsl.files.building import Builder, FileScope, Imported
from flujo.domain.dsl.files.format import (
    DEFAULT_NAMES,
    FILE_KEYS,
    FORMAT_VERSIONS,
    IMPORT_ALIAS,
    keys_by_name,
)
from flujo.domain.dsl.files.marks import START, MarkedList, MarkedMap, Position, read_marked
from flujo.domain.dsl.files.resolve import Resolver, add_import_folder
from flujo.domain.dsl.files.values import Report, check_keys, check_value, is_path
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.dsl.sub_pipeline import SubPipelineStep
from flujo.domain.errors import ConfigurationError, Finding
from flujo.domain.models import PipelineContext

__all__ = ["Workspace"]

_FILE = keys_by_name(FILE_KEYS)

Key = tuple[Path, int | None]
"""What is being built: a file's top-level step by index, or the whole file (``None``)."""


@dataclass
class Workspace:
    """Reads pipeline files and builds their steps, each once, collecting every finding."""

    resolver: Resolver = field(default_factory=Resolver)
    files: dict[Path, FileScope] = field(default_factory=dict)
    wholes: dict[Path, Pipeline[Any, Any] | None] = field(default_factory=dict)
    parts: dict[tuple[Path, int], Step[Any, Any] | None] = field(default_factory=dict)
    building: list[Key] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.builder = Builder(self.resolver, self)

    def findings(self) -> list[Finding]:
        """Every finding so far: file by file in the order read, each sorted by position."""
        found: list[Finding] = []
        for scope in self.files.values():
            found += sorted(dict.fromkeys(scope.report.findings))
        return found

    # --- files ------------------------------------------------------------------------

    def open(self, path: Path, shown: str) -> FileScope:
        """Read the file at ``path`` and check its header, and those of the files it imports."""
        resolved = path.resolve()
        if resolved in self.files:
            return self.files[resolved]
        scope = FileScope(resolved, shown, Report(shown))
        self.files[resolved] = scope
        try:
            text = resolved.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            scope.report.at(START, f"cannot read the pipeline file: {_reason(exc)}")
            return scope
        marked = read_marked(text)
        if marked.error is not None:
            scope.report.at(*marked.error)
            return scope
        for key, at in marked.duplicates:
            scope.report.at(at, f"key {key!r} is given twice in one mapping; keep one")
        if not isinstance(marked.data, MarkedMap):
            scope.report.at(
                START, "a pipeline file is a mapping with version: 1 and a list of steps"
            )
            return scope
        self._header(scope, marked.data)
        return scope

    def _header(self, scope: FileScope, data: MarkedMap) -> None:
        report = scope.report
        version = data.get("version")
        if "version" in data and (isinstance(version, bool) or version not in FORMAT_VERSIONS):
            known = ", ".join(str(v) for v in FORMAT_VERSIONS)
            report.at(
                data.value_at("version"),
                f"version {version!r} is not a pipeline file version this flujo reads "
                f"(it reads version {known})",
            )
            return  # another version may mean other keys: nothing more can be told
        check_keys(data, FILE_KEYS, "pipeline file", report)
        scope.data = data
        add_import_folder(scope.path.parent)
        for key in ("name", "description"):
            if key in data and check_value(
                _FILE[key], data[key], data.value_at(key), "pipeline file", report
            ):
                setattr(scope, key, data[key])
        if "context" in data:
            scope.context_model = self._context(scope, data)
        if "imports" in data:
            self._imports(scope, data["imports"], data.value_at("imports"))
        steps = data.get("steps")
        if "steps" in data and not (isinstance(steps, MarkedList) and steps):
            report.at(data.value_at("steps"), "steps must be a non-empty list of steps")
        elif isinstance(steps, MarkedList):
            scope.steps = steps

    def _context(self, scope: FileScope, data: MarkedMap) -> type[PipelineContext] | None:
        at = data.value_at("context")
        if not check_value(_FILE["context"], data["context"], at, "pipeline file", scope.report):
            return None
        found = self.builder.resolve(scope, data["context"], at, "context")
        if found is None:
            return None
        if not (isinstance(found, type) and issubclass(found, PipelineContext)):
            shown = found.__name__ if isinstance(found, type) else type(found).__name__
            scope.report.at(
                at, f"context: {data['context']} is {shown}, not a flujo.PipelineContext subclass"
            )
            return None
        return found

    def _imports(self, scope: FileScope, imports: Any, at: Position) -> None:
        if not isinstance(imports, MarkedMap):
            scope.report.at(at, "imports must be a mapping of names to pipeline files")
            return
        for alias, target in imports.items():
            where = imports.value_at(alias)
            if not isinstance(alias, str) or not _alias(alias):
                scope.report.at(
                    imports.key_at(alias),
                    f"import name {alias!r} must be a word of letters, digits and _ "
                    "(it is written in uses: imports.NAME)",
                )
                continue
            if not isinstance(target, str) or not target.strip():
                scope.report.at(where, f"imports: {alias} must be the path of a pipeline file")
                continue
            path = scope.path.parent / target
            shown = os.path.normpath(os.path.join(os.path.dirname(scope.shown), target))
            if not path.is_file():
                scope.report.at(where, f"imports: {alias}: no pipeline file at {shown}")
                continue
            scope.imports[alias] = Imported(alias, path.resolve(), shown, where)
            self.open(path, shown)

    # --- steps ------------------------------------------------------------------------

    def pipeline(self, scope: FileScope) -> Pipeline[Any, Any] | None:
        """Build every top-level step of ``scope``'s file into its pipeline (once)."""
        if scope.path in self.wholes:
            return self.wholes[scope.path]
        if scope.steps is None:
            self.wholes[scope.path] = None
            return None
        self.building.append((scope.path, None))
        try:
            built = [self.part(scope, index) for index in range(len(scope.steps))]
            positions = [scope.steps.item_at(i) for i in range(len(scope.steps))]
            made = self.builder.pipeline(scope, built, positions)
        finally:
            self.building.pop()
        self.wholes[scope.path] = made
        return made

    def part(self, scope: FileScope, index: int) -> Step[Any, Any] | None:
        """Build top-level step ``index`` of ``scope``'s file (once)."""
        key = (scope.path, index)
        if key not in self.parts:
            assert scope.steps is not None
            self.building.append(key)
            try:
                self.parts[key] = self.builder.step(
                    scope, scope.steps[index], scope.steps.item_at(index)
                )
            finally:
                self.building.pop()
        return self.parts[key]

    def imported(
        self, scope: FileScope, alias: str, part: str | None, at: Position, owner: str
    ) -> Step[Any, Any] | None:
        """Return the step ``uses: imports.ALIAS[.PART]`` names, or ``None`` having said why."""
        entry = scope.imports.get(alias)
        if entry is None:
            if scope.data is not None and alias in (scope.data.get("imports") or {}):
                return None  # the import itself was reported
            known = sorted(scope.imports)
            scope.report.at(
                at, f"{owner}: no import named {alias!r}; this file imports {known or 'nothing'}"
            )
            return None
        target = self.files[entry.path]
        if target.steps is None:
            return None  # its own findings say why
        if part is None:
            return self._whole(scope, target, entry, at, owner)
        index = self._index(target, part)
        if index is None:
            names = [n for n in self._names(target) if n is not None]
            scope.report.at(
                at, f"{owner}: {entry.shown} has no top-level step named {part!r}; it has {names}"
            )
            return None
        if self._cycle(scope, (target.path, index), at, owner):
            return None
        return self.part(target, index)

    def _whole(
        self, scope: FileScope, target: FileScope, entry: Imported, at: Position, owner: str
    ) -> Step[Any, Any] | None:
        if self._cycle(scope, (target.path, None), at, owner):
            return None
        body = self.pipeline(target)
        if body is None:
            return None
        try:
            return SubPipelineStep(entry.alias, body, source=str(target.path))
        except ConfigurationError as exc:
            scope.report.at(at, f"{owner}: {exc}")
            return None

    def _cycle(self, scope: FileScope, wanted: Key, at: Position, owner: str) -> bool:
        """Report ``wanted`` if building it needs what is being built: an import cycle.

        A whole file is needed by anything of it being built; a part only by itself.
        """
        path, index = wanted
        hit = next(
            (
                position
                for position, (held, held_index) in enumerate(self.building)
                if held == path and (index is None or held_index == index)
            ),
            None,
        )
        if hit is None:
            return False
        held = self.building[hit:]
        # A whole file followed by one of its steps reads better as that step alone.
        kept = [
            key
            for position, key in enumerate(held)
            if not (key[1] is None and position + 1 < len(held) and held[position + 1][0] == key[0])
        ]
        chain = [self._shown_key(key) for key in [*kept, wanted]]
        scope.report.at(at, f"{owner}: import cycle: {' -> '.join(chain)}")
        return True

    def _shown_key(self, key: Key) -> str:
        scope = self.files[key[0]]
        if key[1] is None:
            return scope.shown
        name = self._name(scope, key[1])
        return f"{scope.shown} step {name!r}" if name else f"{scope.shown} step {key[1] + 1}"

    def _names(self, scope: FileScope) -> Iterator[str | None]:
        for index in range(len(scope.steps or [])):
            yield self._name(scope, index)

    def _index(self, scope: FileScope, name: str) -> int | None:
        for index, found in enumerate(self._names(scope)):
            if found == name:
                return index
        return None

    def _name(self, scope: FileScope, index: int) -> str | None:
        """Return the name top-level step ``index`` will have, found without building it."""
        node = (scope.steps or [])[index]
        if not isinstance(node, MarkedMap):
            return None
        name = node.get("name")
        if isinstance(name, str) and name.strip():
            return name
        uses = node.get("uses")
        if isinstance(uses, str) and uses.startswith("imports."):
            alias, _, part = uses.removeprefix("imports.").partition(".")
            return part or alias
        if isinstance(uses, str) and is_path(uses):
            found = self.resolver.resolve(uses)
            if isinstance(found, Step):
                return found.name
            return str(getattr(found, "__name__", uses.rpartition(":")[2].rpartition(".")[2]))
        kinds = [kind for kind in DEFAULT_NAMES if kind in node]
        return DEFAULT_NAMES[kinds[0]] if len(kinds) == 1 else None


def _alias(name: str) -> bool:
    return re.match(IMPORT_ALIAS, name) is not None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)
