"""Reading what the command line names: ``MODULE:ATTR`` targets, pipeline files, JSON input."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from flujo.application.runner import Flujo
from flujo.containers import FlujoContainer
from flujo.domain.dsl.context_model import check_context_model, declared_context_model
from flujo.domain.dsl.files import PipelineFile, load_pipeline_file
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError
from flujo.domain.models import PipelineContext

__all__ = [
    "is_pipeline_file",
    "load_container",
    "load_context_model",
    "load_pipeline",
    "load_runner",
    "parse_duration",
    "parse_input",
    "pipeline_name",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_input(text: str | None) -> Any:
    """Return ``text`` parsed as JSON, or the text itself when it is not JSON."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_duration(text: str) -> float:
    """Return seconds for ``90``, ``45s``, ``30m``, ``12h``, ``7d`` or ``2w``."""
    match = _DURATION.match(text)
    if match is None:
        raise ConfigurationError(
            f"cannot read duration {text!r}: use a number with s, m, h, d or w (e.g. 7d)"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def load_container(profile: str | None) -> Any:
    """Return a container for ``profile``, a shipped name or a path (defaults when ``None``)."""
    return FlujoContainer() if profile is None else FlujoContainer.from_profile(profile)


def _import_target(target: str, loaded: dict[Path, ModuleType], what: str = "target") -> Any:
    """Return what ``target`` names; a file already in ``loaded`` is not executed again."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"{what} {target!r} must look like MODULE:ATTR or path.py:ATTR")
    try:
        if module_name.endswith(".py"):
            module = _load_file(module_name, loaded)
        else:
            # Like `python -m`, modules of the current directory are importable.
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except ConfigurationError:
        raise
    except Exception as exc:  # the user's module may fail in any way while it loads
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise ConfigurationError(f"cannot import {module_name!r}: {detail}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None


def _load_file(name: str, loaded: dict[Path, ModuleType]) -> ModuleType:
    path = Path(name).resolve()
    if path in loaded:  # the target's file again (--context pipe.py:Ctx): the same classes
        return loaded[path]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ConfigurationError(f"no Python file at {name}")
    # Like `python path.py`, the file's own folder is importable (its helper modules).
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loaded[path] = module
    return module


def pipeline_name(target: str) -> str:
    """Return the run name of a target (``./review.py:flow`` and ``review:flow`` agree)."""
    module, _, attr = target.partition(":")
    if module.endswith(".py"):
        module = Path(module).stem
    return f"{module}:{attr}"


def load_context_model(
    spec: str, loaded: dict[Path, ModuleType] | None = None
) -> type[PipelineContext]:
    """Return the ``PipelineContext`` subclass ``MODULE:CLASS`` (or ``file.py:CLASS``) names."""
    model = _import_target(spec, {} if loaded is None else loaded, what="--context")
    if not (isinstance(model, type) and issubclass(model, PipelineContext)):
        found = model.__name__ if isinstance(model, type) else type(model).__name__
        raise ConfigurationError(
            f"--context {spec} is {found}; expected a subclass of flujo.PipelineContext"
        )
    return model


def _context_model(
    item: Pipeline[Any, Any] | Step[Any, Any], context: str | None, loaded: dict[Path, ModuleType]
) -> type[PipelineContext] | None:
    if context is not None:
        model = load_context_model(context, loaded)
        check_context_model(item, model)
        return model
    try:
        return declared_context_model(item)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} with --context MODULE:CLASS") from None


def is_pipeline_file(target: str) -> bool:
    """Whether ``target`` names a pipeline file (``.yaml`` / ``.yml``) rather than MODULE:ATTR."""
    return target.lower().endswith((".yaml", ".yml")) and ":" not in target


def _file_runner(target: str, profile: str | None, context: str | None) -> Flujo[Any, Any, Any]:
    loaded: PipelineFile = load_pipeline_file(target)
    model = loaded.context_model
    if context is not None:
        given = load_context_model(context)
        if model is not None and not issubclass(given, model):
            raise ConfigurationError(
                f"--context {context} is not a {model.__module__}.{model.__qualname__}, the "
                f"context model {target} declares"
            )
        check_context_model(loaded.pipeline, given)
        model = given
    return Flujo(
        loaded.pipeline,
        context_model=model,
        container=load_container(profile),
        pipeline_name=loaded.name,
    )


def load_runner(
    target: str, profile: str | None, context: str | None = None
) -> Flujo[Any, Any, Any]:
    """Return the runner ``target`` names: a ``Flujo``, or a pipeline or step to wrap in one.

    A wrapped pipeline runs over the context class ``context`` names (``MODULE:CLASS``),
    else over the one its steps declare, else over ``PipelineContext``. A pipeline file
    runs over its own ``context`` (``context`` may name a subclass of it), under its
    ``name``.
    """
    if is_pipeline_file(target):
        return _file_runner(target, profile, context)
    loaded: dict[Path, ModuleType] = {}
    obj = _import_target(target, loaded)
    if isinstance(obj, Flujo):
        for flag, given in (("--profile", profile), ("--context", context)):
            if given is not None:
                raise ConfigurationError(
                    f"{target} is a Flujo runner with its own container and context model; "
                    f"{flag} applies only to a pipeline or step"
                )
        return obj
    if isinstance(obj, Pipeline | Step):
        return Flujo(
            obj,
            context_model=_context_model(obj, context, loaded),
            container=load_container(profile),
            pipeline_name=pipeline_name(target),
        )
    raise ConfigurationError(
        f"{target} is a {type(obj).__name__}; expected a Flujo runner, a Pipeline or a Step"
    )


def load_pipeline(target: str) -> Pipeline[Any, Any]:
    """Return the pipeline ``target`` names: a runner's, a pipeline, a step, or a file's."""
    if is_pipeline_file(target):
        return load_pipeline_file(target).pipeline
    obj = _import_target(target, {})
    if isinstance(obj, Flujo):
        return Pipeline.of(obj.pipeline)
    if isinstance(obj, Pipeline | Step):
        return Pipeline.of(obj)
    raise ConfigurationError(
        f"{target} is a {type(obj).__name__}; expected a Flujo runner, a Pipeline or a Step"
    )
