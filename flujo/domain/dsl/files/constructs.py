"""Control-flow steps from a pipeline file: construct sections built into the DSL's nodes.

The sections are ``branch``, ``loop``, ``parallel``, ``map``, ``human``,
``state_machine`` and ``router``.

Each section's keys are the arguments of the Python constructor of the same name
(``format.CONSTRUCTS``). A section is checked whole — keys, values, callables, nested
steps — before its node is built; a ``ConfigurationError`` the node still raises is
reported at the section. A state machine's declaration problems
(``state_machine_problems``) are reported where each is written: at the end state that
cannot be reached, at the transition naming an unknown state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.domain.dsl.control_flow import BranchStep, LoopStep, MapStep, ParallelStep
from flujo.domain.dsl.files.format import CONSTRUCTS
from flujo.domain.dsl.files.marks import MarkedList, MarkedMap, Position
from flujo.domain.dsl.files.values import check_keys, check_value, is_path
from flujo.domain.dsl.router import RouterStep
from flujo.domain.dsl.state_machine import StateMachineStep, state_machine_problems
from flujo.domain.dsl.step import HumanStep, Step
from flujo.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from flujo.domain.dsl.files.building import Builder, FileScope

__all__ = ["build"]

_STRUCTURED = ("body", "bodies", "transitions")

Maker = Callable[[dict[str, Any]], Step[Any, Any]]
"""Builds the node from the step's policy options, once the section checked."""


class _Section:
    """One construct's section being read: its checked values, and whether all were sound."""

    def __init__(
        self, builder: Builder, scope: FileScope, kind: str, data: MarkedMap, owner: str
    ) -> None:
        self.builder = builder
        self.scope = scope
        self.data = data
        self.owner = owner
        self.sound = check_keys(data, CONSTRUCTS[kind], owner, scope.report)
        self.bad: set[str] = set()
        """The keys whose values did not fit their kind (reported already)."""
        for key in CONSTRUCTS[kind]:
            if key.name not in data or key.kind in _STRUCTURED:
                continue
            if not check_value(key, data[key.name], data.value_at(key.name), owner, scope.report):
                self.sound = False
                self.bad.add(key.name)

    def at(self, key: str) -> Position:
        return self.data.value_at(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def keep(self, value: Any) -> Any:
        """Note a value that failed to build (``None``); return it."""
        if value is None:
            self.sound = False
        return value

    def callable(self, key: str, positional: int, keywords: tuple[str, ...] = ()) -> Any:
        if key not in self.data or key in self.bad:
            return None
        found = self.builder.callable_at(
            self.scope, self.data[key], self.at(key), self.owner, positional, keywords
        )
        return self.keep(found)

    def body(self, key: str) -> Any:
        if key not in self.data:
            return None
        built = self.builder.body(self.scope, self.data[key], self.at(key), f"{self.owner} {key}")
        return self.keep(built)

    def bodies(self, key: str, what: str = "branch") -> Any:
        if key not in self.data:
            return None
        made = self.builder.bodies(self.scope, self.data[key], self.at(key), self.owner, what)
        return self.keep(made)

    def writers(self) -> dict[str, str] | None:
        """Check ``reference_writers`` names branches there are (``None`` when absent)."""
        given = self.get("reference_writers")
        if not isinstance(given, MarkedMap) or "reference_writers" in self.bad:
            return None
        names = list(self.get("branches") or {})
        for field, branch in given.items():
            if branch not in names:
                self.sound = False
                self.scope.report.at(
                    given.value_at(field),
                    f"{self.owner}: reference {field!r} is given to branch {branch!r}, which is "
                    f"not one of {names}",
                )
        return dict(given)


def build(
    builder: Builder,
    scope: FileScope,
    kind: str,
    data: Any,
    at: Position,
    name: str,
    label: str,
    options: dict[str, Any] | None,
) -> Step[Any, Any] | None:
    """Build the ``kind`` section ``data`` of a step into its node (``None``: see the findings)."""
    owner = f"{label}: {kind}"
    if not isinstance(data, MarkedMap):
        needed = ", ".join(key.name for key in CONSTRUCTS[kind] if key.required)
        scope.report.at(at, f"{owner} must be a mapping with {needed}")
        return None
    section = _Section(builder, scope, kind, data, owner)
    make = _READERS[kind](section, name)
    if not section.sound or options is None:
        return None
    try:
        return make(options)
    except ConfigurationError as exc:
        scope.report.at(at, f"{label}: {exc}")
        return None


def _branch(s: _Section, name: str) -> Maker:
    condition = s.callable("condition", 2)
    branches = s.bodies("branches")
    default = s.body("default")
    return lambda options: BranchStep(name, condition, branches, default, **options)


def _loop(s: _Section, name: str) -> Maker:
    body = s.body("body")
    until = s.callable("exit_condition", 2)
    max_loops, on_max = s.get("max_loops"), s.get("on_max_loops", "fail")
    return lambda options: LoopStep(name, body, until, max_loops, on_max, **options)


def _parallel(s: _Section, name: str) -> Maker:
    branches = s.bodies("branches")
    merge = s.callable("merge", 1, ())
    failure, writers = s.get("on_branch_failure", "fail"), s.writers()
    return lambda options: ParallelStep(name, branches, merge, failure, writers, **options)


def _router(s: _Section, name: str) -> Maker:
    choose = s.callable("choose", 2)
    branches = s.bodies("branches")
    merge = s.callable("merge", 1, ())
    failure, writers = s.get("on_branch_failure", "fail"), s.writers()
    return lambda options: RouterStep(name, choose, branches, merge, failure, writers, **options)


def _map(s: _Section, name: str) -> Maker:
    body = s.body("body")
    items: Any = s.get("items_from")
    if is_path(items):
        items = s.callable("items_from", 2)
    elif isinstance(items, str) and "items_from" not in s.bad:
        s.sound = s.builder.field(s.scope, items, s.at("items_from"), s.owner) and s.sound
    concurrency = s.get("concurrency", 1)
    return lambda options: MapStep(name, body, items, concurrency, **options)


def _human(s: _Section, name: str) -> Maker:
    model = None
    path = s.get("input_model")
    if is_path(path):
        model = s.keep(s.builder.resolve(s.scope, path, s.at("input_model"), s.owner))
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            s.sound = False
            s.scope.report.at(
                s.at("input_model"),
                f"{s.owner}: input_model {path} is not a pydantic BaseModel class",
            )
    message = s.get("message")
    return lambda options: HumanStep(name, message, model)


def _state_machine(s: _Section, name: str) -> Maker:
    states = s.bodies("states", what="state")
    transitions = s.get("transitions", {})
    if "transitions" in s.data and not isinstance(transitions, MarkedMap):
        s.sound = False
        s.scope.report.at(
            s.at("transitions"), f"{s.owner}: transitions must be a mapping of state names"
        )
        transitions = {}
    field = s.get("next_state_from")
    if isinstance(field, str) and "next_state_from" not in s.bad:
        s.sound = s.builder.field(s.scope, field, s.at("next_state_from"), s.owner) and s.sound
    given = s.get("states")
    if isinstance(given, MarkedMap) and given:
        problems = state_machine_problems(
            dict(given), s.get("start"), s.get("end"), transitions, field, s.get("max_transitions")
        )
        for problem in problems:
            if problem.where[0] in s.bad:
                continue  # the value's own check said what is wrong with it
            s.sound = False
            s.scope.report.at(_place(s, problem.where), f"{s.owner}: {problem.message}")
    start, end, moves = s.get("start"), s.get("end"), s.get("max_transitions")
    return lambda options: StateMachineStep(
        name, states, start, end, moves, dict(transitions), field, **options
    )


def _place(s: _Section, where: tuple[str | int, ...]) -> Position:
    """Return the position of ``where`` (a path into the section), as deep as it is written.

    A state is pointed at by its name in ``states``; anything else by its value.
    """
    node: Any = s.data
    at = s.data.position
    for depth, part in enumerate(where):
        if isinstance(node, MarkedMap) and part in node:
            name_of_state = where[0] == "states" and depth == 1
            at = node.key_at(part) if name_of_state else node.value_at(part)
            node = node[part]
        elif isinstance(node, MarkedList) and isinstance(part, int) and 0 <= part < len(node):
            at = node.item_at(part)
            node = node[part]
        else:
            break
    return at


_READERS: dict[str, Callable[[_Section, str], Maker]] = {
    "branch": _branch,
    "loop": _loop,
    "parallel": _parallel,
    "map": _map,
    "human": _human,
    "state_machine": _state_machine,
    "router": _router,
}
