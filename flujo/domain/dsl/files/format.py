"""The pipeline file format, version 1, as data: every section, key, kind of value and meaning.

The checker (``values.py``, ``building.py``) and the JSON Schema (``schema.py``) are both
made from these tables, so the keys a file may hold, their types and their
descriptions are written once. A file looks like::

    version: 1
    name: triage                       # the run name (default: the file's stem)
    context: tickets.models:Ticket     # the context model, a PipelineContext subclass
    imports:
      clarify: ./clarify.yaml          # relative to this file
    steps:
      - uses: tickets.steps:normalize  # a callable, an agent or a Step, by import path
        max_retries: 2
      - uses: imports.clarify          # another file, run as one step
      - name: route
        branch:
          condition: tickets.steps:kind
          branches:
            refund: {uses: tickets.steps:refund}
            other: [{uses: tickets.steps:log}, {uses: tickets.steps:answer}]
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CONSTRUCTS",
    "DEFAULT_NAMES",
    "FILE_KEYS",
    "FORMAT_VERSIONS",
    "IMPORT_ALIAS",
    "KINDS",
    "POLICY_KEYS",
    "PROCESSOR_KEYS",
    "STEP_KEYS",
    "USAGE_LIMIT_KEYS",
    "Key",
    "closest",
    "keys_by_name",
]

FORMAT_VERSIONS = (1,)
"""The ``version`` values this loader reads."""

IMPORT_ALIAS = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""What an ``imports`` name looks like (it is written in ``uses: imports.NAME``)."""


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a section: its name, the kind of value it takes, and what it means.

    ``kind`` is one of: ``name``, ``text``, ``format_version``, ``path`` (``module:attr``),
    ``paths``, ``uses``, ``positive_int``, ``count`` (int >= 0), ``seconds`` (number > 0
    or null), ``delay`` (number >= 0), ``factor`` (number >= 1), ``bool``, ``cache``,
    ``choice``, ``field``, ``fields``, ``field_or_path``, ``imports``, ``usage_limits``,
    ``processors``, ``step``, ``steps``, ``body``, ``bodies``, ``writers``, ``ends``,
    ``transitions``, ``tokens`` (int > 0 or null), ``cost`` (number > 0 or null).
    """

    name: str
    kind: str
    description: str
    required: bool = False
    choices: tuple[str, ...] = ()


FILE_KEYS = (
    Key("version", "format_version", "The format version of this file: 1.", required=True),
    Key("name", "name", "The pipeline's name: runs are stored under it (default: file stem)."),
    Key("description", "text", "What the pipeline does, for readers."),
    Key("context", "path", "module:Class of the context model, a flujo.PipelineContext subclass."),
    Key("imports", "imports", "Other pipeline files by name: {name: ./file.yaml}."),
    Key("steps", "steps", "The steps, run in order.", required=True),
)

POLICY_KEYS = (
    Key("max_retries", "count", "Extra attempts after a failed one (0: run once)."),
    Key("timeout_s", "seconds", "Seconds one attempt may take (null: no limit)."),
    Key("run_in_thread", "bool", "Run a sync callable in a worker thread."),
    Key("backoff_s", "delay", "Delay before the first retry, in seconds."),
    Key("backoff_factor", "factor", "Each later retry waits this many times longer."),
    Key("max_backoff_s", "delay", "The longest delay between retries, in seconds."),
    Key("jitter", "bool", "Wait a random fraction of each delay."),
    Key("cache", "cache", "Cache the step's results: true, false or strict."),
    Key("cache_ttl_s", "seconds", "How long a cached result lives (null: until evicted)."),
    Key("version", "text", "Stands in for the code digest in the cache key."),
    Key("cache_key_fields", "fields", "Context fields the step reads, part of the cache key."),
    Key("cache_key_fn", "path", "module:function (input, context) -> the cache key."),
    Key("validators", "paths", "module:function checks of the output: (output) -> bool."),
    Key("processors", "processors", "Processors of the input and output: {input: [...]}."),
    Key("usage_limits", "usage_limits", "Limits on this step's own cost and tokens."),
    Key("fallback", "step", "A step run on the same input when every attempt failed."),
)

PROCESSOR_KEYS = (
    Key("input", "paths", "module:function processors applied to the input, in order."),
    Key("output", "paths", "module:function processors applied to the output, in order."),
)

USAGE_LIMIT_KEYS = (
    Key("total_cost_usd_limit", "cost", "The most the step may cost, in US dollars."),
    Key("total_tokens_limit", "tokens", "The most tokens the step may use."),
)

_FAILURE = ("fail", "collect")

CONSTRUCTS: dict[str, tuple[Key, ...]] = {
    "branch": (
        Key("condition", "path", "module:function (input, context) -> a key.", required=True),
        Key("branches", "bodies", "The branches by key: each a step or a list.", required=True),
        Key("default", "body", "Runs when the key is none of the branches."),
    ),
    "loop": (
        Key("body", "body", "What runs again and again: a step or a list.", required=True),
        Key("exit_condition", "path", "module:function (output, context) -> bool.", required=True),
        Key("max_loops", "positive_int", "The most iterations.", required=True),
        Key("on_max_loops", "choice", "At max_loops: fail, or return.", choices=("fail", "return")),
    ),
    "parallel": (
        Key("branches", "bodies", "The branches by name, run at once.", required=True),
        Key("merge", "path", "module:function ({branch: output}) -> the output."),
        Key("on_branch_failure", "choice", "A failed branch: fail, or collect.", choices=_FAILURE),
        Key("reference_writers", "writers", "{reference field: the branch that may set() it}."),
    ),
    "map": (
        Key("body", "body", "What runs for each item: a step or a list.", required=True),
        Key("items_from", "field_or_path", "A context field, or module:function (input, ctx)."),
        Key("concurrency", "positive_int", "How many items run at once."),
    ),
    "human": (
        Key("message", "text", "What the person is asked.", required=True),
        Key("input_model", "path", "module:Class, a pydantic model the answer must fit."),
    ),
    "state_machine": (
        Key("states", "bodies", "The states by name: each a step or a list.", required=True),
        Key("start", "name", "The state the machine starts in.", required=True),
        Key("end", "ends", "The states the machine stops in.", required=True),
        Key("max_transitions", "positive_int", "The most moves between states.", required=True),
        Key("transitions", "transitions", "{state: next | [choices] | {output: next}}."),
        Key("next_state_from", "field", "The context field a state sets to the next state."),
    ),
    "router": (
        Key("choose", "path", "module:function (input, context) -> branch names.", required=True),
        Key("branches", "bodies", "The branches by name.", required=True),
        Key("merge", "path", "module:function ({branch: output}) -> the output."),
        Key("on_branch_failure", "choice", "A failed branch: fail, or collect.", choices=_FAILURE),
        Key("reference_writers", "writers", "{reference field: the branch that may set() it}."),
    ),
}
"""The control-flow kinds of step, each with the keys of its section."""

KINDS = ("uses", *CONSTRUCTS)
"""The keys that say what a step is; a step has exactly one of them."""

DEFAULT_NAMES = {
    "branch": "branch",
    "loop": "loop",
    "parallel": "parallel",
    "map": "map",
    "human": "human_input",
    "state_machine": "state_machine",
    "router": "router",
}
"""A construct's name when the file gives none (the Python constructors' defaults)."""

STEP_KEYS = (
    Key("name", "name", "The step's name, unique in its pipeline."),
    Key("uses", "uses", "module:attr of a callable, agent or Step; or imports.NAME[.STEP]."),
    *(Key(kind, kind, f"A {kind.replace('_', ' ')} step.") for kind in CONSTRUCTS),
    *POLICY_KEYS,
)


def keys_by_name(keys: Sequence[Key]) -> dict[str, Key]:
    """Return ``keys`` by name."""
    return {key.name: key for key in keys}


def closest(word: str, known: Sequence[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the known word closest to ``word``, or ``""``."""
    found = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""
