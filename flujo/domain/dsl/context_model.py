"""The context model a pipeline declares: what its callables annotate ``context`` with.

A step written ``def count(text: str, *, context: Words) -> int`` says it needs a
``Words`` context. :func:`declared_context_model` reads those annotations across a
pipeline — leaf steps, their fallbacks, the steps nested in branches, loops, parallels
and maps, and the conditions and item sources of those constructs — and returns the
one class all of them accept, so a runner built from the pipeline alone (the ``flujo``
command does this) can use it. Annotations that do not name a ``PipelineContext``
subclass, or cannot be resolved, declare nothing.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flujo.domain.dsl.control_flow import CompositeStep
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError
from flujo.domain.models import PipelineContext

__all__ = [
    "callable_context_models",
    "check_context_model",
    "context_declarations",
    "declared_context_model",
]

Declaration = tuple[str, type[PipelineContext]]
"""``(where, model)``: a step (or a construct's callable) and the context class it declares."""


def context_declarations(item: Pipeline[Any, Any] | Step[Any, Any]) -> list[Declaration]:
    """Return where each callable of ``item`` declares a typed ``context``, in pipeline order."""
    return list(_walk(Pipeline.of(item), ""))


def callable_context_models(fn: Callable[..., Any]) -> list[type[PipelineContext]]:
    """Return the context classes ``fn``'s ``context`` parameter names (none if untyped)."""
    return [model for _, model in _declared(fn, "")]


def declared_context_model(
    item: Pipeline[Any, Any] | Step[Any, Any],
) -> type[PipelineContext] | None:
    """Return the context class every declaration accepts (``None`` if nothing declares one).

    That is the most derived of the declared classes, when it derives from all the
    others; steps declaring unrelated classes are a ``ConfigurationError`` naming them.
    """
    found = context_declarations(item)
    models = list(dict.fromkeys(model for _, model in found))
    if not models:
        return None
    for model in models:
        if all(issubclass(model, other) for other in models):
            return model
    listed = "; ".join(f"{where} takes {_name(model)}" for where, model in found)
    raise ConfigurationError(
        f"the steps declare context models that no one class is: {listed}; "
        "give the context model explicitly"
    )


def check_context_model(
    item: Pipeline[Any, Any] | Step[Any, Any], model: type[PipelineContext]
) -> None:
    """Raise ``ConfigurationError`` if ``item`` declares a context class ``model`` is not."""
    for where, declared in context_declarations(item):
        if issubclass(model, declared):
            continue
        if _name(model) == _name(declared):
            raise ConfigurationError(
                f"context model {_name(model)} is another class than the {_name(declared)} "
                f"{where} declares: its module was loaded twice, under two spellings"
            )
        raise ConfigurationError(
            f"context model {_name(model)} is not a {_name(declared)}, which {where} declares"
        )


def _walk(pipeline: Pipeline[Any, Any], prefix: str) -> Iterator[Declaration]:
    for step in pipeline.steps:
        yield from _step(step, f"{prefix}step {step.name!r}")


def _step(step: Step[Any, Any], where: str) -> Iterator[Declaration]:
    target: Callable[..., Any] | None = step._wrapped
    if target is None and step.agent is not None:
        target = step.agent.run
    if target is not None:
        yield from _declared(target, where)
    if isinstance(step, CompositeStep):
        for slot in step.construct_slots():
            yield from _nested(getattr(step, slot), f"{where} ({slot})")
    if step.fallback_step is not None:
        yield from _step(step.fallback_step, f"{where} (fallback {step.fallback_step.name!r})")


def _nested(value: Any, where: str) -> Iterator[Declaration]:
    if isinstance(value, Pipeline):
        yield from _walk(value, f"{where} > ")
    elif isinstance(value, Mapping):
        for key, body in value.items():
            if isinstance(body, Pipeline):
                yield from _walk(body, f"{where}[{key!r}] > ")
    elif callable(value):
        yield from _declared(value, where)


def _declared(fn: Callable[..., Any], where: str) -> Iterator[Declaration]:
    try:
        parameter = inspect.signature(fn).parameters.get("context")
    except (TypeError, ValueError):  # builtins without a signature declare nothing
        return
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return
    for model in _context_classes(_resolve(parameter.annotation, fn)):
        yield where, model


def _resolve(annotation: Any, fn: Callable[..., Any]) -> Any:
    """Return ``annotation`` evaluated (``from __future__ import annotations`` makes text)."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, dict(_namespace(fn)))
    except Exception:  # a name imported only for type checkers: nothing can be told
        return None


def _namespace(fn: Callable[..., Any]) -> Mapping[str, Any]:
    target: Any = inspect.unwrap(fn)
    while isinstance(target, functools.partial):
        target = target.func
    target = getattr(target, "__func__", target)  # a bound method
    if not isinstance(target, types.FunctionType):  # an object with __call__
        target = getattr(type(target).__call__, "__func__", type(target).__call__)
    namespace: Mapping[str, Any] = getattr(target, "__globals__", {})
    return namespace


def _context_classes(annotation: Any) -> list[type[PipelineContext]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _context_classes(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:  # Ctx | None
        return [m for arg in typing.get_args(annotation) for m in _context_classes(arg)]
    if isinstance(annotation, type) and issubclass(annotation, PipelineContext):
        return [annotation]
    return []


def _name(model: type[Any]) -> str:
    return f"{model.__module__}.{model.__qualname__}"
