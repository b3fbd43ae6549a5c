"""A step's policies in a pipeline file: retries, timeout, cache, validators, processors, limits.

The keys are ``StepConfig``'s fields (``format.POLICY_KEYS``), with ``processors:
{input: [...], output: [...]}`` for the two processor lists and ``usage_limits`` as a
mapping. Validators, processors and ``cache_key_fn`` are import paths, resolved and
checked to take what flujo passes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flujo.domain.dsl.files.format import (
    POLICY_KEYS,
    PROCESSOR_KEYS,
    USAGE_LIMIT_KEYS,
    keys_by_name,
)
from flujo.domain.dsl.files.marks import MarkedList, MarkedMap, Position
from flujo.domain.dsl.files.values import check_keys, check_value
from flujo.domain.errors import ConfigurationError
from flujo.domain.policies import StepConfig, UsageLimits

if TYPE_CHECKING:
    from flujo.domain.dsl.files.building import Builder, FileScope

__all__ = ["read_policies"]

_POLICIES = keys_by_name(POLICY_KEYS)


def read_policies(
    builder: Builder, scope: FileScope, node: MarkedMap, label: str, kind: str
) -> dict[str, Any] | None:
    """Return the step's policy keys as ``StepConfig`` options (``None``: one was wrong)."""
    given = [key for key in node if key in _POLICIES and key != "fallback"]
    if kind == "human":
        for key in [*given, *(["fallback"] if "fallback" in node else [])]:
            scope.report.at(node.key_at(key), f"{label}: a human step takes no {key!r}")
        return None if given or "fallback" in node else {}
    options: dict[str, Any] = {}
    sound = True
    for key in given:
        value, at = node[key], node.value_at(key)
        spec = _POLICIES[key]
        if spec.kind == "paths":
            fns = [
                builder.callable_at(scope, item, place, label, 1)
                for item, place in _items(value, at)
            ]
            if check_value(spec, value, at, label, scope.report) and None not in fns:
                options[key] = fns
            else:
                sound = False
        elif spec.kind == "path":
            fn = None
            if check_value(spec, value, at, label, scope.report):
                fn = builder.callable_at(scope, value, at, label, 2, keywords=())
            sound = sound and fn is not None
            options[key] = fn
        elif spec.kind == "processors":
            sound = _processors(builder, scope, value, at, label, options) and sound
        elif spec.kind == "usage_limits":
            sound = _usage_limits(builder, scope, value, at, label, options) and sound
        elif check_value(spec, value, at, label, scope.report):
            options[key] = value
            if key == "cache_key_fields":
                for field_name in value:
                    sound = builder.field(scope, field_name, at, label) and sound
        else:
            sound = False
    if not sound:
        return None
    try:
        StepConfig(**options)
    except ConfigurationError as exc:
        scope.report.at(node.position, f"{label}: {exc}")
        return None
    return options


def _processors(
    builder: Builder,
    scope: FileScope,
    value: Any,
    at: Position,
    label: str,
    options: dict[str, Any],
) -> bool:
    """Read ``processors: {input: [...], output: [...]}`` into ``options``."""
    if not isinstance(value, MarkedMap):
        scope.report.at(at, f"{label}: processors must be a mapping with input and output")
        return False
    sound = check_keys(value, PROCESSOR_KEYS, f"{label}: processors", scope.report)
    for key in PROCESSOR_KEYS:
        if key.name not in value:
            continue
        items, place = value[key.name], value.value_at(key.name)
        fns = [builder.callable_at(scope, item, p, label, 1) for item, p in _items(items, place)]
        if check_value(key, items, place, f"{label}: processors", scope.report) and None not in fns:
            options[f"{key.name}_processors"] = fns
        else:
            sound = False
    return sound


def _usage_limits(
    builder: Builder,
    scope: FileScope,
    value: Any,
    at: Position,
    label: str,
    options: dict[str, Any],
) -> bool:
    """Read ``usage_limits: {total_cost_usd_limit: ..., total_tokens_limit: ...}``."""
    if value is None:
        options["usage_limits"] = None
        return True
    if not isinstance(value, MarkedMap):
        scope.report.at(at, f"{label}: usage_limits must be a mapping (or null)")
        return False
    owner = f"{label}: usage_limits"
    sound = check_keys(value, USAGE_LIMIT_KEYS, owner, scope.report)
    for key in USAGE_LIMIT_KEYS:
        if key.name in value:
            sound = (
                check_value(key, value[key.name], value.value_at(key.name), owner, scope.report)
                and sound
            )
    if sound:
        options["usage_limits"] = UsageLimits(**{k: v for k, v in value.items()})
    return sound


def _items(value: Any, at: Position) -> list[tuple[Any, Position]]:
    if isinstance(value, MarkedList):
        return [(item, value.item_at(i)) for i, item in enumerate(value)]
    return []
