"""Finding the ``ContextReference`` objects inside a context.

Which fields can hold a reference is decided once per model class from its type
annotations (a reference directly, or inside nested models, lists, tuples,
dicts, optionals and unions). Fields typed ``Any`` are not searched: a context
with a large free-form field costs nothing per step.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin
from weakref import WeakKeyDictionary

from pydantic import BaseModel

from flujo.domain.models import ContextReference

__all__ = ["Found", "find_references", "reference_fields"]

Found = tuple[str, ContextReference[Any]]
"""A reference and the path of the field holding it, e.g. ``context.docs[2].ref``."""

# A memo derived only from class definitions; weak keys let classes be collected.
_PLANS: WeakKeyDictionary[type[BaseModel], tuple[str, ...]] = WeakKeyDictionary()


def _may_hold_reference(annotation: Any, visiting: set[type[BaseModel]]) -> bool:
    origin = get_origin(annotation)
    if origin is None and isinstance(annotation, type):
        if issubclass(annotation, ContextReference):
            return True
        if issubclass(annotation, BaseModel) and annotation not in visiting:
            return bool(_plan(annotation, visiting))
        return False  # plain classes, and models already being planned (recursion)
    if origin is Annotated:
        return _may_hold_reference(get_args(annotation)[0], visiting)
    if origin is Literal:
        return False
    return any(_may_hold_reference(arg, visiting) for arg in get_args(annotation))


def _plan(model: type[BaseModel], visiting: set[type[BaseModel]]) -> tuple[str, ...]:
    visiting = visiting | {model}
    return tuple(
        name
        for name, field in model.model_fields.items()
        if _may_hold_reference(field.annotation, visiting)
    )


def reference_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """Return the names of ``model``'s fields whose type can hold a ``ContextReference``."""
    plan = _PLANS.get(model)
    if plan is None:
        # Only whole plans are memoised: one computed inside a recursion cycle may be partial.
        plan = _PLANS[model] = _plan(model, set())
    return plan


def _walk(value: Any, path: str | None, out: list[Found], seen: set[int]) -> None:
    if isinstance(value, ContextReference):
        if id(value) not in seen:
            seen.add(id(value))
            out.append((path or "", value))
    elif isinstance(value, BaseModel):
        for name in reference_fields(type(value)):
            _walk(getattr(value, name), None if path is None else f"{path}.{name}", out, seen)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, None if path is None else f"{path}[{index}]", out, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, None if path is None else f"{path}[{key!r}]", out, seen)


def find_references(context: BaseModel, *, with_paths: bool = False) -> list[Found]:
    """Return every reference reachable from ``context`` (each object once).

    Paths are built only when ``with_paths`` is true; otherwise they are ``""``.
    """
    out: list[Found] = []
    fields = reference_fields(type(context))
    if fields:
        seen: set[int] = set()
        for name in fields:
            _walk(getattr(context, name), f"context.{name}" if with_paths else None, out, seen)
    return out
