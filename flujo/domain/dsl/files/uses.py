"""What a leaf step uses: ``uses: module:attr`` (a callable, an agent or a Step) or an import.

A callable becomes ``Step.from_callable``; an object with a callable ``run`` (not a
function or class) an agent step; a ``Step`` (what ``@step`` makes) is used as it is,
copied under the file's name for it and with the file's policies on top of its own.
``uses: imports.NAME`` and ``imports.NAME.STEP`` are answered by the workspace.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from flujo.domain.dsl.files.marks import MarkedMap, Position
from flujo.domain.dsl.files.resolve import signature_problem
from flujo.domain.dsl.files.values import a_kind_of, is_path
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from flujo.domain.dsl.files.building import Builder, FileScope

__all__ = ["copy_step", "from_step", "read_uses"]


def copy_step(step: Step[Any, Any], name: str) -> Step[Any, Any]:
    """Return a copy of ``step`` named ``name`` (the original may be shared: a module's)."""
    copy: Step[Any, Any] = object.__new__(type(step))
    for klass in type(step).__mro__:
        for slot in vars(klass).get("__slots__", ()):
            object.__setattr__(copy, slot, getattr(step, slot))
    copy.name = name
    copy._identity = None
    return copy


def read_uses(
    builder: Builder,
    scope: FileScope,
    node: MarkedMap,
    name: str | None,
    label: str,
    options: dict[str, Any] | None,
) -> Step[Any, Any] | None:
    """Build the step ``uses`` names: an import, or a callable, agent or Step by path."""
    value, at = node["uses"], node.value_at("uses")
    if not _uses_value(value):
        scope.report.at(
            at, f"{label}: uses must be an import path module:attr or imports.NAME, got {value!r}"
        )
        return None
    if value.startswith("imports."):
        alias, _, part = value.removeprefix("imports.").partition(".")
        target = builder.imports.imported(scope, alias, part or None, at, label)
        if target is None:
            return None
        return from_step(builder, scope, target, name or target.name, options, at, label)
    found = builder.resolve(scope, value, at, label)
    if found is None:
        return None
    if isinstance(found, Step):
        builder.check_context(scope, found, at, label)
        return from_step(builder, scope, found, name or found.name, options, at, label)
    if isinstance(found, Pipeline):
        scope.report.at(
            at,
            f"{label}: {value} is a Pipeline; a step uses a callable, an agent or a Step "
            "(write the pipeline as a file and import it)",
        )
        return None
    return _leaf(builder, scope, found, value, name, options or {}, at, label)


def _leaf(
    builder: Builder,
    scope: FileScope,
    found: Any,
    path: str,
    name: str | None,
    options: dict[str, Any],
    at: Position,
    label: str,
) -> Step[Any, Any] | None:
    """Build a step of a callable or an agent that ``path`` names."""
    run = getattr(found, "run", None)
    is_agent = callable(run) and not isinstance(found, type) and not _is_function(found)
    target = run if is_agent else found
    if not callable(target):
        scope.report.at(
            at,
            f"{label}: {path} is {a_kind_of(found)}, neither a callable nor an agent "
            "(an object with a callable run)",
        )
        return None
    problem = signature_problem(target, 1, ("context", "resources"))
    if problem is not None:
        scope.report.at(at, f"{label}: {path} cannot take the step input: {problem}")
        return None
    step_name = name or path.rpartition(":")[2].rpartition(".")[2]
    try:
        if is_agent:
            made: Step[Any, Any] = Step(step_name, agent=found, **options)
        else:
            made = Step.from_callable(
                found, name=name or getattr(found, "__name__", step_name), **options
            )
    except ConfigurationError as exc:
        scope.report.at(at, f"{label}: {exc}")
        return None
    builder.check_context(scope, made, at, label)
    return made


def from_step(
    builder: Builder,
    scope: FileScope,
    found: Step[Any, Any],
    name: str,
    options: dict[str, Any] | None,
    at: Position,
    label: str,
) -> Step[Any, Any] | None:
    """Return ``found`` (a module's Step, another file's) renamed and with the policies."""
    made = copy_step(found, name)
    if options:
        try:
            made = made.with_config(**options)
        except (ConfigurationError, TypeError) as exc:
            scope.report.at(at, f"{label}: {exc}")
            return None
    return made


def _is_function(value: Any) -> bool:
    return inspect.isroutine(value)


def _uses_value(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if value.startswith("imports."):
        alias = value.removeprefix("imports.").partition(".")[0]
        return alias.isidentifier()
    return is_path(value)
