"""``with_step``: a copy of a pipeline with one step swapped, wherever it is nested.

A step is addressed by its name, or, when a name is used in more than one nested
pipeline, by its path: the names from the top-level step down, with the branch key
for a branch or parallel and ``<default>`` for a branch's default, joined by ``/``
(``"route/premium/enrich"``, ``"retry/fetch"`` for a loop's or map's body).
``step_paths(pipeline)`` lists them. Fallback steps are not pipeline members and are
not searched: swap the step that has the fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flujo.domain.dsl.control_flow import BranchStep, LoopStep, MapStep, ParallelStep, as_pipeline
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError

__all__ = ["DEFAULT_BRANCH", "step_paths", "with_step"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")

DEFAULT_BRANCH = "<default>"
"""The path segment of a branch step's default pipeline."""

SEPARATOR = "/"

Path = tuple[str, ...]


def _nested(step: Step[Any, Any]) -> Iterator[tuple[Path, Pipeline[Any, Any]]]:
    """Yield the pipelines inside a control-flow step, with the segments leading into each."""
    if isinstance(step, BranchStep):
        yield from (((key,), body) for key, body in step.branches.items())
        if step.default is not None:
            yield (DEFAULT_BRANCH,), step.default
    elif isinstance(step, ParallelStep):
        yield from (((key,), body) for key, body in step.branches.items())
    elif isinstance(step, LoopStep | MapStep):
        yield (), step.body


def _walk(pipeline: Pipeline[Any, Any], above: Path = ()) -> Iterator[tuple[Path, Step[Any, Any]]]:
    for member in pipeline.steps:
        path = (*above, member.name)
        yield path, member
        for segments, body in _nested(member):
            yield from _walk(body, (*path, *segments))


def step_paths(pipeline: Pipeline[Any, Any] | Step[Any, Any]) -> list[str]:
    """Every step's path, nested ones included, in pipeline order (see the module doc)."""
    return [SEPARATOR.join(path) for path, _ in _walk(Pipeline.of(pipeline))]


def with_step(
    pipeline: Pipeline[InT, OutT] | Step[InT, OutT],
    name: str,
    replacement: Step[Any, Any] | Callable[..., Any],
) -> Pipeline[InT, OutT]:
    """Return a copy of ``pipeline`` where the step ``name`` (a name or a path) is ``replacement``.

    ``replacement`` is a ``Step`` (used with its own options) or a sync or async callable
    (made a step like ``Step.from_callable``); either way it runs under the replaced
    step's name, so results, checkpoints and resumes name it as before. The pipeline
    given is not changed. An unknown name raises ``ConfigurationError`` listing the
    paths there are; a name found in several nested pipelines, one listing its paths.
    """
    top = Pipeline.of(pipeline)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"with_step needs a step name or path, got {name!r}")
    path = _find(top, name)
    original = dict(_walk(top))[path]
    new = _renamed(_as_step(replacement, original.name), original.name)
    return _replaced(top, path, new)


def _find(top: Pipeline[Any, Any], name: str) -> Path:
    places = [path for path, _ in _walk(top)]
    wanted = tuple(name.split(SEPARATOR))
    if SEPARATOR in name:
        matches = [path for path in places if path == wanted]
    else:
        matches = [path for path in places if path[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(SEPARATOR.join(p) for p in matches)
        raise ConfigurationError(
            f"with_step: {len(matches)} steps are named {name!r} ({shown}); pass one of these paths"
        )
    hint = _fallback_hint(top, name)
    raise ConfigurationError(
        f"with_step: no step {name!r} in the pipeline{hint}; its steps are "
        + ", ".join(SEPARATOR.join(p) for p in places)
    )


def _fallback_hint(top: Pipeline[Any, Any], name: str) -> str:
    for path, member in _walk(top):
        fallback = member.fallback_step
        while fallback is not None:
            if fallback.name == name:
                owner = SEPARATOR.join(path)
                return f" (it is the fallback of {owner!r}: swap {owner!r} instead)"
            fallback = fallback.fallback_step
    return ""


def _as_step(replacement: Any, name: str) -> Step[Any, Any]:
    if isinstance(replacement, Step):
        return replacement
    if isinstance(replacement, Pipeline) or not callable(replacement):
        raise ConfigurationError(
            f"with_step: the replacement of {name!r} must be a Step or a callable, "
            f"got {type(replacement).__name__}"
        )
    made: Step[Any, Any] = Step.from_callable(replacement, name=name)
    return made


def _renamed(step: Step[Any, Any], name: str) -> Step[Any, Any]:
    if step.name == name:
        return step
    return _copy(step, name=name)


def _copy(step: Step[Any, Any], **changes: Any) -> Step[Any, Any]:
    """Return a shallow copy of ``step`` with ``changes``; ``step`` stays as it was."""
    made: Step[Any, Any] = object.__new__(type(step))
    for klass in type(step).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if hasattr(step, slot):
                object.__setattr__(made, slot, getattr(step, slot))
    for slot, value in changes.items():
        object.__setattr__(made, slot, value)
    object.__setattr__(made, "_identity", None)  # what it runs changed: made again on use
    return made


def _replaced(pipeline: Pipeline[Any, Any], path: Path, new: Step[Any, Any]) -> Pipeline[Any, Any]:
    head, rest = path[0], path[1:]
    steps = list(pipeline.steps)
    index = next(i for i, member in enumerate(steps) if member.name == head)
    steps[index] = new if not rest else _replaced_inside(steps[index], rest, new)
    return Pipeline(steps)


def _replaced_inside(step: Step[Any, Any], rest: Path, new: Step[Any, Any]) -> Step[Any, Any]:
    """Return a copy of control-flow ``step`` with ``new`` on ``rest`` inside it."""
    what = f"with_step inside {step.name!r}"
    if isinstance(step, LoopStep | MapStep):
        return _copy(step, body=as_pipeline(_replaced(step.body, rest, new), what))
    assert isinstance(step, BranchStep | ParallelStep)  # _walk descends into nothing else
    key, inner = rest[0], rest[1:]
    if key == DEFAULT_BRANCH and isinstance(step, BranchStep) and step.default is not None:
        return _copy(step, default=as_pipeline(_replaced(step.default, inner, new), what))
    branches = dict(step.branches)
    branches[key] = as_pipeline(_replaced(branches[key], inner, new), what)
    return _copy(step, branches=branches)
