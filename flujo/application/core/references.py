"""Finding the ``ContextReference`` objects inside a context.

Which fields can hold a reference is decided once per model class from its type
annotations (a reference directly, or inside nested models, lists, tuples,
dicts, optionals and unions). A field typed with a model that holds no reference
is searched too, by the runtime type of its value: an instance of a subclass may
add one. Fields typed ``Any`` are not searched: a context with a large
free-form field costs nothing per step.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal, get_args, get_origin
from weakref import WeakKeyDictionary

from pydantic import BaseModel

from flujo.domain.models import ContextReference

__all__ = [
    "ContextPlan",
    "Found",
    "context_plan",
    "find_references",
    "model_fields_to_search",
    "reference_fields",
]

# The string keeps pydantic from building a parametrized model class at import time.
Found = tuple[str, "ContextReference[Any]"]
"""A reference and the path of the field holding it, e.g. ``context.docs[2].ref``."""

# Memos derived only from class definitions; weak keys let classes be collected.
_PLANS: WeakKeyDictionary[type[BaseModel], tuple[str, ...]] = WeakKeyDictionary()
_REACHES: WeakKeyDictionary[type[BaseModel], bool] = WeakKeyDictionary()
_SEARCHED: WeakKeyDictionary[type[BaseModel], tuple[str, ...]] = WeakKeyDictionary()
_MODELS: WeakKeyDictionary[type[BaseModel], tuple[str, ...]] = WeakKeyDictionary()


def _mentions(annotation: Any, models: set[type[BaseModel]]) -> bool:
    """Say whether ``annotation`` names ``ContextReference``; collect the models it names."""
    origin = get_origin(annotation)
    if origin is None and isinstance(annotation, type):
        if issubclass(annotation, ContextReference):
            return True
        if issubclass(annotation, BaseModel):
            models.add(annotation)
        return False
    if origin is Literal:
        return False
    args = get_args(annotation)[:1] if origin is Annotated else get_args(annotation)
    found = False
    for arg in args:
        found = _mentions(arg, models) or found
    return found


def _reaches_reference(model: type[BaseModel]) -> bool:
    """Whether a reference can sit anywhere below ``model`` (recursive types included)."""
    known = _REACHES.get(model)
    if known is not None:
        return known
    seen: set[type[BaseModel]] = set()
    pending = [model]
    reaches = False
    while pending and not reaches:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        named: set[type[BaseModel]] = set()
        for field in current.model_fields.values():
            if _mentions(field.annotation, named):
                reaches = True
                break
        pending.extend(named - seen)
    _REACHES[model] = reaches
    return reaches


def _may_hold_reference(annotation: Any) -> bool:
    models: set[type[BaseModel]] = set()
    return _mentions(annotation, models) or any(_reaches_reference(m) for m in models)


def reference_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """Return the names of ``model``'s fields whose type can hold a ``ContextReference``."""
    plan = _PLANS.get(model)
    if plan is None:
        plan = _PLANS[model] = tuple(
            name
            for name, field in model.model_fields.items()
            if _may_hold_reference(field.annotation)
        )
    return plan


def _names_models(annotation: Any) -> bool:
    models: set[type[BaseModel]] = set()
    _mentions(annotation, models)
    return bool(models)


def model_fields_to_search(model: type[BaseModel]) -> tuple[str, ...]:
    """Return the fields typed with models that hold no reference (a subclass value may)."""
    plan = _MODELS.get(model)
    if plan is None:
        static = set(reference_fields(model))
        plan = _MODELS[model] = tuple(
            name
            for name, field in model.model_fields.items()
            if name not in static and _names_models(field.annotation)
        )
    return plan


def _searched(model: type[BaseModel]) -> tuple[str, ...]:
    plan = _SEARCHED.get(model)
    if plan is None:
        plan = _SEARCHED[model] = reference_fields(model) + model_fields_to_search(model)
    return plan


def _walk(value: Any, path: str | None, out: list[Found], seen: set[int]) -> None:
    if isinstance(value, ContextReference):
        if id(value) not in seen:
            seen.add(id(value))
            out.append((path or "", value))
    elif isinstance(value, BaseModel):
        for name in _searched(type(value)):
            _walk(getattr(value, name), None if path is None else f"{path}.{name}", out, seen)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, None if path is None else f"{path}[{index}]", out, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, None if path is None else f"{path}[{key!r}]", out, seen)


class ContextPlan:
    """How to find the references of one context model, decided once per class."""

    __slots__ = ("direct", "fields", "kind", "only", "paths")

    def __init__(self, model: type[BaseModel]) -> None:
        static = reference_fields(model)
        self.fields: tuple[str, ...] = _searched(model)
        """The fields to search: those whose type can hold a reference, then model-typed ones."""
        self.kind = 2 if static else 1 if self.fields else 0
        """2: a field's type names a reference; 1: only a subclass value may hold one; 0: never."""
        self.direct = all(
            isinstance(annotation := model.model_fields[name].annotation, type)
            and issubclass(annotation, ContextReference)
            for name in self.fields
        )
        """Every searched field is typed exactly as a reference: read, no walk."""
        self.paths = tuple((name, f"context.{name}") for name in self.fields)
        """``(field, path)`` of each searched field, the path made once, not per run."""
        self.only = self.paths[0] if self.direct and len(self.paths) == 1 else None
        """``(field, path)`` of the one field when that field is all there is to search."""


@lru_cache(maxsize=512)
def context_plan(model: type[BaseModel]) -> ContextPlan:
    """Return the plan of ``model`` (derived from its fields alone, so kept per class).

    A bounded cache of C calls rather than a weak-keyed dict: every run asks a few
    times, and a weak key costs each lookup a reference object. It keeps up to 512
    model classes alive, which a process defining models on the fly may notice.
    """
    return ContextPlan(model)


def find_references(context: BaseModel, *, with_paths: bool = False) -> list[Found]:
    """Return every reference reachable from ``context`` (each object once).

    Paths are built only when ``with_paths`` is true; otherwise they are ``""``.
    """
    out: list[Found] = []
    plan = context_plan(type(context))
    if not plan.fields:
        return out
    if plan.direct:
        # The common context: references as fields of their own, read with no walk (such
        # a field holds a reference, maybe of a subclass, unless a step assigned None).
        values = context.__dict__
        for name, path in plan.paths:
            value = values[name]
            if isinstance(value, ContextReference):
                for _, known in out:
                    if known is value:
                        break  # two fields holding one object: found once
                else:
                    out.append((path if with_paths else "", value))
        return out
    seen: set[int] = set()
    for name in plan.fields:
        _walk(getattr(context, name), f"context.{name}" if with_paths else None, out, seen)
    return out
