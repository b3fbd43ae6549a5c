"""A pipeline written out as a pipeline file: ``pipeline.to_yaml()``.

Everything a step runs is written as the import path it can be found at, so only a
pipeline built from importable objects can be written: module-level functions, classes
and agents (``module:attr``, checked to name the very object), ``@step`` functions
(the path of the ``Step`` the decorator made). A lambda, a nested function or an
object defined in ``__main__`` is a ``ConfigurationError`` naming the step and what
cannot be written. Policies are written where they differ from what reading the file
back starts from (the defaults, or the config of the ``Step`` a path names), so
``Pipeline.from_yaml`` of the text gives an equal pipeline: the same steps, names,
configs, fallbacks and constructs, with the same ``identity``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from flujo.domain.dsl.control_flow import BranchStep, LoopStep, MapStep, ParallelStep
from flujo.domain.dsl.files.format import IMPORT_ALIAS
from flujo.domain.dsl.files.resolve import Failure, Resolver
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.router import RouterStep
from flujo.domain.dsl.state_machine import StateMachineStep
from flujo.domain.dsl.step import HumanStep, Step
from flujo.domain.dsl.sub_pipeline import SubPipelineStep
from flujo.domain.errors import ConfigurationError
from flujo.domain.models import PipelineContext
from flujo.domain.policies import StepConfig, UsageLimits

__all__ = ["to_data", "to_yaml"]

_PLAIN_FIELDS = (
    "max_retries",
    "timeout_s",
    "run_in_thread",
    "backoff_s",
    "backoff_factor",
    "max_backoff_s",
    "jitter",
    "cache",
    "cache_ttl_s",
    "version",
)


def to_yaml(
    pipeline: Pipeline[Any, Any] | Step[Any, Any],
    *,
    name: str | None = None,
    description: str | None = None,
    context_model: type[PipelineContext] | None = None,
    relative_to: str | os.PathLike[str] | None = None,
) -> str:
    """Return ``pipeline`` as the text of a pipeline file (``version: 1``).

    ``name``, ``description`` and ``context_model`` become the file's keys. Imported
    files (sub-pipelines) are written relative to the folder ``relative_to``, else as
    absolute paths.
    """
    data = to_data(
        pipeline,
        name=name,
        description=description,
        context_model=context_model,
        relative_to=relative_to,
    )
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` indenting list items under their key, as people write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def to_data(
    pipeline: Pipeline[Any, Any] | Step[Any, Any],
    *,
    name: str | None = None,
    description: str | None = None,
    context_model: type[PipelineContext] | None = None,
    relative_to: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Return what ``to_yaml`` writes, as plain data (mappings, lists, strings, numbers)."""
    writer = _Writer(None if relative_to is None else Path(relative_to))
    steps = [writer.step(step) for step in Pipeline.of(pipeline).steps]
    data: dict[str, Any] = {"version": 1}
    if name is not None:
        data["name"] = name
    if description is not None:
        data["description"] = description
    if context_model is not None:
        data["context"] = writer.path(context_model, "the context model")
    if writer.imports:
        data["imports"] = writer.imports
    data["steps"] = steps
    return data


class _Writer:
    """Writes steps, naming the files of sub-pipelines once each in ``imports``."""

    def __init__(self, relative_to: Path | None) -> None:
        self.relative_to = relative_to
        self.resolver = Resolver()
        self.imports: dict[str, str] = {}
        self.aliases: dict[str, str] = {}

    def path(self, target: Any, what: str) -> str:
        """Return the import path of ``target``, checked to name this very object."""
        module = getattr(target, "__module__", None)
        qualname = getattr(target, "__qualname__", None)
        if isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname:
            if module == "__main__":
                raise ConfigurationError(
                    f"{what} {qualname} is defined in __main__, which another process cannot "
                    "import: move it to a module"
                )
            path = f"{module}:{qualname}"
            if self._names(path, target):
                return path
        else:
            found = self._search(target)
            if found is not None:
                return found
        shown = getattr(target, "__qualname__", repr(target))
        raise ConfigurationError(
            f"{what} {shown} cannot be written as an import path module:attr: define it at "
            "the top level of an importable module"
        )

    def _names(self, path: str, target: Any) -> bool:
        found = self.resolver.resolve(path)
        if isinstance(found, Failure):
            return False
        return found is target or (isinstance(found, Step) and found._wrapped is target)

    def _search(self, target: Any) -> str | None:
        """Find a module attribute that is ``target`` (an agent is an instance, not a def)."""
        home = getattr(type(target), "__module__", "")
        names = [home, *sorted(n for n in sys.modules if n != home)]
        for module_name in names:
            module = sys.modules.get(module_name)
            if module is None or module_name == "__main__":
                continue
            for attribute, value in list(vars(module).items()):
                if value is target and not attribute.startswith("_"):
                    return f"{module_name}:{attribute}"
        return None

    def callable(
        self, fn: Callable[..., Any] | None, step: Step[Any, Any], what: str
    ) -> str | None:
        return None if fn is None else self.path(fn, f"step {step.name!r}: {what}")

    def step(self, step: Step[Any, Any]) -> dict[str, Any]:
        """Return one step as a mapping."""
        data: dict[str, Any] = {"name": step.name}
        base = StepConfig()
        base_fallback: Step[Any, Any] | None = None
        if isinstance(step, HumanStep):
            human: dict[str, Any] = {"message": step.message}
            if step.input_model is not None:
                human["input_model"] = self.path(
                    step.input_model, f"step {step.name!r}: input_model"
                )
            data["human"] = human
            return data
        if isinstance(step, SubPipelineStep):
            data["uses"] = f"imports.{self._alias(step)}"
        elif step.composite:
            kind, section = self.construct(step)
            data[kind] = section
        else:
            target = step._wrapped if step._wrapped is not None else step.agent
            data["uses"] = self.path(target, f"step {step.name!r}: its callable")
            named = self.resolver.resolve(data["uses"])
            if isinstance(named, Step):
                base, base_fallback = named.config, named.fallback_step
        data.update(self.policies(step, base))
        if step.fallback_step is not base_fallback:
            if step.fallback_step is None:
                raise ConfigurationError(
                    f"step {step.name!r} has no fallback, but the Step {data['uses']} names has "
                    "one, and a file cannot take it away"
                )
            data["fallback"] = self.step(step.fallback_step)
        return data

    def _alias(self, step: SubPipelineStep) -> str:
        if step.source is None:
            raise ConfigurationError(
                f"step {step.name!r} is a sub-pipeline built in Python, not read from a file: "
                "there is no file to import"
            )
        if step.source in self.aliases:
            return self.aliases[step.source]
        alias = step.name if re.match(IMPORT_ALIAS, step.name) else "imported"
        while alias in self.imports:
            alias = f"{alias}_{len(self.imports) + 1}"
        if self.relative_to is None:
            where = step.source
        else:
            folder = self.relative_to if self.relative_to.is_dir() else self.relative_to.parent
            where = os.path.relpath(step.source, folder)
            where = where if where.startswith("..") else f"./{where}"
        self.imports[alias] = where
        self.aliases[step.source] = alias
        return alias

    def policies(self, step: Step[Any, Any], base: StepConfig) -> dict[str, Any]:
        """Return the config fields of ``step`` that differ from ``base``, as file keys."""
        config = step.config
        data: dict[str, Any] = {}
        for field in _PLAIN_FIELDS:
            if getattr(config, field) != getattr(base, field):
                data[field] = getattr(config, field)
        if config.cache_key_fields != base.cache_key_fields:
            data["cache_key_fields"] = list(config.cache_key_fields)
        if config.cache_key_fn is not base.cache_key_fn:
            data["cache_key_fn"] = self.callable(config.cache_key_fn, step, "cache_key_fn")
        if config.validators != base.validators:
            data["validators"] = [
                self.path(v, f"step {step.name!r}: validator") for v in config.validators
            ]
        processors = {}
        for side in ("input", "output"):
            mine = getattr(config, f"{side}_processors")
            if mine != getattr(base, f"{side}_processors"):
                processors[side] = [self.path(p, f"step {step.name!r}: processor") for p in mine]
        if processors:
            data["processors"] = processors
        if config.usage_limits != base.usage_limits:
            data["usage_limits"] = _limits(config.usage_limits)
        return data

    def body(self, body: Pipeline[Any, Any]) -> Any:
        steps = [self.step(step) for step in body.steps]
        return steps[0] if len(steps) == 1 else steps

    def bodies(self, bodies: dict[str, Pipeline[Any, Any]]) -> dict[str, Any]:
        return {key: self.body(body) for key, body in bodies.items()}

    def construct(self, step: Step[Any, Any]) -> tuple[str, dict[str, Any]]:  # noqa: C901
        """Return the construct's kind and its section."""
        if isinstance(step, BranchStep):
            section: dict[str, Any] = {
                "condition": self.callable(step.condition, step, "condition"),
                "branches": self.bodies(step.branches),
            }
            if step.default is not None:
                section["default"] = self.body(step.default)
            return "branch", section
        if isinstance(step, LoopStep):
            section = {
                "body": self.body(step.body),
                "exit_condition": self.callable(step.exit_condition, step, "exit_condition"),
                "max_loops": step.max_loops,
            }
            if step.on_max_loops != "fail":
                section["on_max_loops"] = step.on_max_loops
            return "loop", section
        if isinstance(step, MapStep):
            section = {"body": self.body(step.body)}
            if isinstance(step.items_from, str):
                section["items_from"] = step.items_from
            elif step.items_from is not None:
                section["items_from"] = self.callable(step.items_from, step, "items_from")
            if step.concurrency != 1:
                section["concurrency"] = step.concurrency
            return "map", section
        if isinstance(step, StateMachineStep):
            section = {
                "states": self.bodies(step.states),
                "start": step.start,
                "end": list(step.end),
                "max_transitions": step.max_transitions,
            }
            if step.transitions:
                section["transitions"] = {
                    state: list(entry) if isinstance(entry, tuple) else entry
                    for state, entry in step.transitions.items()
                }
            if step.next_state_from is not None:
                section["next_state_from"] = step.next_state_from
            return "state_machine", section
        if isinstance(step, ParallelStep | RouterStep):
            kind = "router" if isinstance(step, RouterStep) else "parallel"
            section = {}
            if isinstance(step, RouterStep):
                section["choose"] = self.callable(step.choose, step, "choose")
            section["branches"] = self.bodies(step.branches)
            if step.merge is not None:
                section["merge"] = self.callable(step.merge, step, "merge")
            if step.on_branch_failure != "fail":
                section["on_branch_failure"] = step.on_branch_failure
            if step.reference_writers:
                section["reference_writers"] = dict(step.reference_writers)
            return kind, section
        raise ConfigurationError(
            f"step {step.name!r} is a {type(step).__name__}, which a pipeline file cannot hold"
        )


def _limits(limits: UsageLimits | None) -> dict[str, Any] | None:
    if limits is None:
        return None
    written = {
        "total_cost_usd_limit": limits.total_cost_usd_limit,
        "total_tokens_limit": limits.total_tokens_limit,
    }
    return {key: value for key, value in written.items() if value is not None}
