"""Steps from a pipeline file's mappings: what a step uses, its policies, lists of steps.

``Builder.step`` reads one step mapping: it checks the keys, finds the one key saying
what the step is (``uses`` or a construct), reads the policies, and builds the DSL
node. Every problem is reported where it is written and the step comes back as
``None``; the builder goes on with the rest of the file, so one pass finds them all.
Constructs are read by ``constructs.py``; ``uses: imports...`` is answered by the
workspace (``workspace.py``), which knows the other files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import flujo.domain.dsl.files.constructs as constructs
from flujo.domain.dsl.context_model import callable_context_models
from flujo.domain.dsl.files.format import (
    CONSTRUCTS,
    DEFAULT_NAMES,
    KINDS,
    STEP_KEYS,
    closest,
    keys_by_name,
)
from flujo.domain.dsl.files.marks import MarkedList, MarkedMap, Position
from flujo.domain.dsl.files.resolve import Failure, Resolver, signature_problem
from flujo.domain.dsl.files.step_options import read_policies
from flujo.domain.dsl.files.uses import read_uses
from flujo.domain.dsl.files.values import Report, a_kind_of, check_keys, check_value, is_path
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError
from flujo.domain.models import PipelineContext

__all__ = ["Builder", "FileScope", "ImportSource", "Imported", "step_label"]

_STEP_KEYS = keys_by_name(STEP_KEYS)


@dataclass(frozen=True, slots=True)
class Imported:
    """One ``imports`` entry: the name it is used by and the file it names."""

    alias: str
    path: Path
    shown: str
    at: Position


@dataclass
class FileScope:
    """One pipeline file as read: its header, its steps, and where its findings go."""

    path: Path
    shown: str
    report: Report
    data: MarkedMap | None = None
    name: str | None = None
    description: str | None = None
    context_model: type[PipelineContext] | None = None
    imports: dict[str, Imported] = field(default_factory=dict)
    steps: MarkedList | None = None


class ImportSource(Protocol):
    """What answers ``uses: imports.ALIAS`` (the whole file) and ``imports.ALIAS.STEP``."""

    def imported(
        self, scope: FileScope, alias: str, part: str | None, at: Position, owner: str
    ) -> Step[Any, Any] | None:
        """Return the step the import names (built once), or ``None`` having reported why."""
        ...


def step_label(node: Any) -> str:
    """How findings name a step mapping: by its name, else by what it uses or is."""
    if isinstance(node, MarkedMap):
        name = node.get("name")
        if isinstance(name, str) and name.strip():
            return f"step {name!r}"
        if isinstance(node.get("uses"), str):
            return f"step {node['uses']}"
        for kind in CONSTRUCTS:
            if kind in node:
                return f"{kind} step"
    return "step"


class Builder:
    """Builds the steps of the files of one load, reporting into each file's ``Report``."""

    def __init__(self, resolver: Resolver, imports: ImportSource) -> None:
        self.resolver = resolver
        self.imports = imports

    # --- lists of steps ---------------------------------------------------------------

    def steps(
        self, scope: FileScope, items: Any, at: Position, owner: str
    ) -> Pipeline[Any, Any] | None:
        """Build a list of step mappings into a pipeline (``None`` if anything was wrong)."""
        if not isinstance(items, MarkedList) or not items:
            scope.report.at(at, f"{owner} must be a non-empty list of steps")
            return None
        built = [self.step(scope, item, items.item_at(i)) for i, item in enumerate(items)]
        return self.pipeline(scope, built, [items.item_at(i) for i in range(len(items))])

    def pipeline(
        self,
        scope: FileScope,
        built: Sequence[Step[Any, Any] | None],
        positions: Sequence[Position],
    ) -> Pipeline[Any, Any] | None:
        """Return the built steps as a pipeline, reporting names used twice."""
        first: dict[str, Position] = {}
        sound = all(step is not None for step in built)
        for step, at in zip(built, positions, strict=True):
            if step is None:
                continue
            if step.name in first:
                sound = False
                other = first[step.name]
                scope.report.at(
                    at,
                    f"another step is already named {step.name!r} (line {other.line}, column "
                    f"{other.column}); step names must be unique within a pipeline: give one a "
                    "name",
                )
            else:
                first[step.name] = at
        if not sound:
            return None
        return Pipeline([step for step in built if step is not None])

    def body(
        self, scope: FileScope, value: Any, at: Position, owner: str
    ) -> Pipeline[Any, Any] | None:
        """Build a body: one step mapping, or a list of them."""
        if isinstance(value, MarkedMap):
            step = self.step(scope, value, at)
            return None if step is None else Pipeline([step])
        if isinstance(value, MarkedList):
            return self.steps(scope, value, at, owner)
        scope.report.at(at, f"{owner} must be a step (a mapping) or a list of steps")
        return None

    def bodies(
        self, scope: FileScope, value: Any, at: Position, owner: str, what: str = "branch"
    ) -> dict[str, Pipeline[Any, Any]] | None:
        """Build ``{name: body}``; names must be strings (YAML reads ``yes:`` as true)."""
        if not isinstance(value, MarkedMap) or not value:
            scope.report.at(at, f"{owner} must be a non-empty mapping of {what} names to steps")
            return None
        made: dict[str, Pipeline[Any, Any]] = {}
        sound = True
        for key, body in value.items():
            if not isinstance(key, str):
                sound = False
                scope.report.at(
                    value.key_at(key),
                    f"{owner}: {what} name {key!r} is not a string; quote it ('{key}' is read "
                    "as a boolean or a number otherwise)",
                )
                continue
            built = self.body(scope, body, value.value_at(key), f"{owner}: {what} {key!r}")
            if built is None:
                sound = False
            else:
                made[key] = built
        return made if sound else None

    # --- one step ---------------------------------------------------------------------

    def step(self, scope: FileScope, node: Any, at: Position) -> Step[Any, Any] | None:
        """Build one step mapping (``None`` if anything in it was wrong, each reported)."""
        if not isinstance(node, MarkedMap):
            scope.report.at(at, f"a step must be a mapping with one of {', '.join(KINDS)}")
            return None
        label = step_label(node)
        sound = check_keys(node, STEP_KEYS, label, scope.report, step=True)
        kinds = [kind for kind in KINDS if kind in node]
        if len(kinds) != 1:
            told = "none" if not kinds else " and ".join(kinds)
            scope.report.at(
                node.position, f"{label}: a step has exactly one of {', '.join(KINDS)}; got {told}"
            )
            return None
        kind = kinds[0]
        name = node.get("name")
        if "name" in node and not check_value(
            _STEP_KEYS["name"], name, node.value_at("name"), label, scope.report
        ):
            sound, name = False, None
        options = read_policies(self, scope, node, label, kind)
        fallback = None
        if "fallback" in node:
            fallback = self.step(scope, node["fallback"], node.value_at("fallback"))
            sound = sound and fallback is not None
        if kind == "uses":
            made = read_uses(self, scope, node, name, label, options)
        else:
            made = constructs.build(
                self,
                scope,
                kind,
                node[kind],
                node.value_at(kind),
                name or DEFAULT_NAMES[kind],
                label,
                options,
            )
        if made is None or options is None or not sound:
            return None
        if fallback is not None:
            try:
                made.fallback(fallback)
            except ConfigurationError as exc:
                scope.report.at(node.value_at("fallback"), f"{label}: {exc}")
                return None
        return made

    # --- what constructs share --------------------------------------------------------

    def resolve(self, scope: FileScope, path: str, at: Position, label: str) -> Any:
        """Return what ``path`` names, or ``None`` having reported why it does not resolve."""
        found = self.resolver.resolve(path)
        if isinstance(found, Failure):
            scope.report.at(at, f"{label}: {found.message}")
            return None
        return found

    def callable_at(
        self,
        scope: FileScope,
        path: Any,
        at: Position,
        label: str,
        positional: int,
        keywords: Sequence[str] = ("context",),
    ) -> Callable[..., Any] | None:
        """Return the callable ``path`` names if it can take ``positional`` arguments."""
        if not is_path(path):
            return None  # the value's own check reports it
        found = self.resolve(scope, path, at, label)
        if found is None:
            return None
        if not callable(found):
            scope.report.at(at, f"{label}: {path} is {a_kind_of(found)}, not a callable")
            return None
        problem = signature_problem(found, positional, keywords)
        if problem is not None:
            args = "(input, context)" if positional == 2 else "(value)"
            scope.report.at(at, f"{label}: {path} cannot be called as {args}: {problem}")
            return None
        for model in callable_context_models(found):
            self._context_fits(scope, model, path, at, label)
        return found  # type: ignore[no-any-return]

    def check_context(
        self, scope: FileScope, step: Step[Any, Any], at: Position, label: str
    ) -> None:
        """Report a leaf step whose callable declares a context the file's model is not."""
        run: Callable[..., Any] | None = step._wrapped
        if run is None and step.agent is not None:
            run = step.agent.run
        if run is None:
            return
        for model in callable_context_models(run):
            self._context_fits(scope, model, f"{qualified(run)}", at, label)

    def _context_fits(
        self, scope: FileScope, model: type[PipelineContext], what: str, at: Position, label: str
    ) -> None:
        declared = scope.context_model
        if declared is None or issubclass(declared, model):
            return
        scope.report.at(
            at,
            f"{label}: {what} declares context: {_name(model)}, but this file's context model "
            f"{_name(declared)} is not one",
        )

    def field(self, scope: FileScope, name: str, at: Position, label: str) -> bool:
        """Report ``name`` if the file's context model has no such field."""
        model = scope.context_model
        if model is None or name in model.model_fields:
            return True
        fields = list(model.model_fields)
        scope.report.at(
            at,
            f"{label}: context model {_name(model)} has no field {name!r}{closest(name, fields)}",
        )
        return False


def qualified(target: Any) -> str:
    """``module.qualname`` of a callable, for messages."""
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{module}.{getattr(target, '__qualname__', type(target).__qualname__)}"


def _name(model: type[Any]) -> str:
    return f"{model.__module__}.{model.__qualname__}"
