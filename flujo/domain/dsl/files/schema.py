"""The JSON Schema of the pipeline file format, made from ``format.py``'s tables.

The package ships it as ``pipeline-file.schema.json`` beside this module (``flujo
schema`` prints it) so that editors complete and check pipeline files: with the YAML
language server, a first line ``# yaml-language-server: $schema=<path or URL>`` points
a file at it. A test keeps the shipped file equal to ``pipeline_schema()``.

The schema checks the shape — keys, types, which one key says what a step is. What
needs Python — import paths that resolve, signatures, context fields, names used
twice, state machines whose end states cannot be reached, import cycles — only
``flujo validate`` checks.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from flujo.domain.dsl.files.format import (
    CONSTRUCTS,
    FILE_KEYS,
    FORMAT_VERSIONS,
    IMPORT_ALIAS,
    KINDS,
    PROCESSOR_KEYS,
    STEP_KEYS,
    USAGE_LIMIT_KEYS,
    Key,
)
from flujo.domain.dsl.files.values import PATH

__all__ = ["SCHEMA_FILE", "pipeline_schema", "schema_text", "shipped_schema_text"]

SCHEMA_FILE = "pipeline-file.schema.json"
"""The name of the shipped schema, beside this module."""

_IMPORT_USE = r"^imports\.[A-Za-z_][A-Za-z0-9_]*(\..+)?$"
_FIELD = r"^[A-Za-z_][A-Za-z0-9_]*$"
_REF_STEP = {"$ref": "#/$defs/step"}
_REF_BODY = {"$ref": "#/$defs/body"}

_SIMPLE: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "minLength": 1},
    "text": {"type": "string", "minLength": 1},
    "format_version": {"enum": list(FORMAT_VERSIONS)},
    "path": {"type": "string", "pattern": PATH.pattern},
    "positive_int": {"type": "integer", "minimum": 1},
    "count": {"type": "integer", "minimum": 0},
    "seconds": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "delay": {"type": "number", "minimum": 0},
    "factor": {"type": "number", "minimum": 1},
    "bool": {"type": "boolean"},
    "cache": {"enum": [True, False, "strict"]},
    "field": {"type": "string", "pattern": _FIELD},
    "tokens": {"type": ["integer", "null"], "exclusiveMinimum": 0},
    "cost": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "step": _REF_STEP,
    "body": _REF_BODY,
}


def _fragment(key: Key) -> dict[str, Any]:  # noqa: C901 - one case per kind of value
    kind = key.kind
    if kind in _SIMPLE:
        made = dict(_SIMPLE[kind])
    elif kind == "choice":
        made = {"enum": list(key.choices)}
    elif kind == "paths":
        made = {"type": "array", "items": _SIMPLE["path"]}
    elif kind == "fields":
        made = {"type": "array", "items": _SIMPLE["field"]}
    elif kind == "field_or_path":
        made = {"anyOf": [_SIMPLE["field"], _SIMPLE["path"]]}
    elif kind == "uses":
        made = {"type": "string", "anyOf": [{"pattern": PATH.pattern}, {"pattern": _IMPORT_USE}]}
    elif kind == "steps":
        made = {"type": "array", "minItems": 1, "items": _REF_STEP}
    elif kind == "bodies":
        made = {"type": "object", "minProperties": 1, "additionalProperties": _REF_BODY}
    elif kind == "writers":
        made = {"type": "object", "additionalProperties": {"type": "string"}}
    elif kind == "ends":
        made = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
    elif kind == "imports":
        made = {
            "type": "object",
            "propertyNames": {"pattern": IMPORT_ALIAS},
            "additionalProperties": {"type": "string", "minLength": 1},
        }
    elif kind == "transitions":
        made = {"type": "object", "additionalProperties": {"$ref": "#/$defs/transition"}}
    elif kind == "usage_limits":
        made = {"type": ["object", "null"], **_section(USAGE_LIMIT_KEYS)}
    elif kind == "processors":
        made = {"type": "object", **_section(PROCESSOR_KEYS)}
    elif kind in CONSTRUCTS:
        made = {"type": "object", **_section(CONSTRUCTS[kind])}
    else:  # pragma: no cover - a kind added to format.py without a schema
        raise AssertionError(f"no JSON Schema for values of kind {kind!r}")
    made["description"] = key.description
    return made


def _section(keys: tuple[Key, ...]) -> dict[str, Any]:
    made: dict[str, Any] = {
        "properties": {key.name: _fragment(key) for key in keys},
        "additionalProperties": False,
    }
    required = [key.name for key in keys if key.required]
    if required:
        made["required"] = required
    return made


def pipeline_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of pipeline files, as data."""
    state = {"type": "string", "minLength": 1}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "flujo pipeline file",
        "description": "A flujo pipeline as data (version 1): flujo run / validate / graph FILE.",
        "type": "object",
        **_section(FILE_KEYS),
        "$defs": {
            "step": {
                "type": "object",
                "description": "One step: exactly one of " + ", ".join(KINDS) + ".",
                **_section(STEP_KEYS),
                "oneOf": [{"required": [kind]} for kind in KINDS],
            },
            "body": {
                "description": "A step, or a list of steps run in order.",
                "anyOf": [_REF_STEP, {"type": "array", "minItems": 1, "items": _REF_STEP}],
            },
            "transition": {
                "description": "The next state, the states a context field chooses among, "
                "or {output: next state}.",
                "anyOf": [
                    state,
                    {"type": "array", "minItems": 1, "items": state},
                    {"type": "object", "minProperties": 1, "additionalProperties": state},
                ],
            },
        },
    }


def schema_text() -> str:
    """Return ``pipeline_schema()`` as the JSON text the package ships."""
    return json.dumps(pipeline_schema(), indent=2) + "\n"


def shipped_schema_text() -> str:
    """Return the schema file shipped in the package (what ``flujo schema`` prints)."""
    return (files(__package__ or __name__) / SCHEMA_FILE).read_text(encoding="utf-8")
