"""What happens around one attempt of a step: processors, validators and cache keys."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError, UncacheableInputError, ValidationFailedError
from flujo.domain.interfaces import Hasher, Serializer
from flujo.domain.policies import ValidationResult

__all__ = [
    "apply_processors",
    "cache_key",
    "run_validators",
]


def _takes_context(fn: Callable[..., Any]) -> bool:
    try:
        parameter = inspect.signature(fn).parameters.get("context")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (
        parameter.KEYWORD_ONLY,
        parameter.POSITIONAL_OR_KEYWORD,
    )


async def _call(fn: Callable[..., Any], value: Any, context: Any) -> Any:
    result = fn(value, context=context) if _takes_context(fn) else fn(value)
    if inspect.isawaitable(result):
        result = await result
    return result


async def apply_processors(
    processors: Sequence[Callable[..., Any]], value: Any, context: Any
) -> Any:
    """Pass ``value`` through each processor in turn."""
    for processor in processors:
        value = await _call(processor, value, context)
    return value


async def run_validators(
    step: Step[Any, Any], validators: Sequence[Callable[..., Any]], output: Any, context: Any
) -> None:
    """Raise ``ValidationFailedError`` with the feedback of the first failing validator."""
    for validator in validators:
        verdict = await _call(validator, output, context)
        if isinstance(verdict, ValidationResult):
            passed, feedback = verdict.passed, verdict.feedback
        elif isinstance(verdict, bool):
            passed, feedback = verdict, None
        else:
            raise ConfigurationError(
                f"validator {getattr(validator, '__qualname__', validator)!r} of step "
                f"{step.name!r} returned {type(verdict).__name__}; return a bool or a "
                "ValidationResult"
            )
        if not passed:
            name = getattr(validator, "__qualname__", repr(validator))
            raise ValidationFailedError(
                f"validator {name} rejected the output of step {step.name!r}"
                + (f": {feedback}" if feedback else "")
            )


def cache_key(
    step: Step[Any, Any],
    data: Any,
    context: BaseModel | None,
    *,
    serializer: Serializer,
    hasher: Hasher,
    pipeline_name: str = "",
) -> str:
    """Return the key of a step's result: pipeline, step name and identity, input, key fields.

    ``step.identity`` names what the step runs (its callable and code digest, or its
    explicit version), so two steps sharing a name never share entries; the material
    is dumped canonically (dict keys sorted), so equal inputs give one key.
    """
    config = step.config
    identity = [pipeline_name, step.name, step.identity]
    if config.cache_key_fn is not None:
        material: Any = [*identity, config.cache_key_fn(data, context)]
    else:
        fields = {}
        for name in config.cache_key_fields:
            if context is None or name not in type(context).model_fields:
                raise ConfigurationError(
                    f"step {step.name!r} declares cache_key_fields={list(config.cache_key_fields)}"
                    f" but the context has no field {name!r}"
                )
            fields[name] = getattr(context, name)
        material = [*identity, data, fields]
    try:
        blob = serializer.dumps_canonical(material)
    except (TypeError, ValueError) as exc:
        raise UncacheableInputError(
            f"step {step.name!r} is cached but its input ({type(data).__name__}) cannot be "
            f"serialized for a cache key: {exc}"
        ) from exc
    return hasher.digest(blob)
