"""What must travel to a worker, checked when a runner is built: ``check_travels``.

A backend that ships steps (``ships_steps = True``: the Ray backend) pickles each
leaf step for its tasks. A step holding a lock, a socket, an open file or a
client would fail there, at run time, on a worker; this finds it while the
runner is built and names the step and the object: "step 'fetch' cannot be
shipped: closure variable 'lock' is a _thread.lock". It pickles with Ray's
cloudpickle when it is installed (what the backend uses), else with ``pickle``.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError

__all__ = ["check_travels", "leaf_steps"]

_DEPTH = 3
"""How deep into attributes and containers the culprit is looked for."""


def _dumps() -> Callable[[Any], bytes]:
    try:
        from ray import cloudpickle
    except ImportError:
        return pickle.dumps
    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    return dumps


def leaf_steps(steps: Iterable[Step[Any, Any]]) -> Iterator[Step[Any, Any]]:
    """Yield every leaf step of ``steps``: nested ones and fallbacks included, each once."""
    seen: set[int] = set()
    pending = list(steps)
    while pending:
        step = pending.pop(0)
        if id(step) in seen:
            continue
        seen.add(id(step))
        if step.fallback_step is not None:
            pending.append(step.fallback_step)
        if not step.composite:
            yield step
            continue
        for value in _slot_values(step):
            pending.extend(_steps_in(value))


def _slot_values(step: Step[Any, Any]) -> Iterator[Any]:
    for cls in type(step).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(step, slot):
                yield getattr(step, slot)


def _steps_in(value: Any) -> list[Step[Any, Any]]:
    if isinstance(value, Step):
        return [value]
    if isinstance(value, Pipeline):
        return list(value.steps)
    if isinstance(value, dict):
        return [s for item in value.values() for s in _steps_in(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _steps_in(item)]
    return []


def check_travels(steps: Iterable[Step[Any, Any]]) -> None:
    """Raise ``ConfigurationError`` naming the first leaf step that cannot be pickled, and why."""
    dumps = _dumps()
    for step in leaf_steps(steps):
        try:
            dumps(step)
        except Exception as exc:
            where = _culprit(step, dumps) or f"{type(exc).__name__}: {exc}"
            raise ConfigurationError(
                f"step {step.name!r} cannot be shipped to a worker: {where}. Steps on a "
                "remote backend must pickle: create clients, locks and files inside the "
                "step (or once per worker) instead of capturing them"
            ) from exc


def _culprit(step: Step[Any, Any], dumps: Callable[[Any], bytes]) -> str | None:
    """Name what in ``step`` does not pickle: a closure variable, an argument, an attribute."""
    target: Any = step._wrapped if step._wrapped is not None else step.agent
    for label, value in _parts(target):
        found = _find(label, value, dumps, _DEPTH)
        if found is not None:
            return found
    return None


def _parts(target: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(target, functools.partial):
        yield from ((f"argument {i}", arg) for i, arg in enumerate(target.args))
        yield from ((f"argument {k!r}", arg) for k, arg in target.keywords.items())
        target = target.func
    bound = getattr(target, "__self__", None)
    if bound is not None:
        yield "the object of its bound method", bound
        target = getattr(target, "__func__", target)
    code = getattr(target, "__code__", None)
    if code is not None:
        cells = getattr(target, "__closure__", None) or ()
        for name, cell in zip(code.co_freevars, cells, strict=False):
            try:
                yield f"closure variable {name!r}", cell.cell_contents
            except ValueError:  # an empty cell
                continue
        module_globals = getattr(target, "__globals__", {})
        for name in code.co_names:
            if name in module_globals:
                yield f"global {name!r}", module_globals[name]
    elif target is not None:
        yield "the agent", target


def _find(label: str, value: Any, dumps: Callable[[Any], bytes], depth: int) -> str | None:
    try:
        dumps(value)
    except Exception:
        pass
    else:
        return None
    if depth > 0:
        for inner_label, inner in _members(value):
            found = _find(f"{label}{inner_label}", inner, dumps, depth - 1)
            if found is not None:
                return found
    kind = type(value)
    return f"{label} is a {kind.__module__}.{kind.__qualname__}"


def _members(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        yield from ((f"[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        yield from ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            yield from ((f".{k}", v) for k, v in attributes.items())
