"""A pipeline drawn as a Mermaid flowchart: ``pipeline.to_mermaid()``.

What each kind of step looks like:

- a step is a box; ``a >> b`` is an arrow from ``a`` to ``b``;
- a human step is a slanted box with its message;
- ``branch_on`` is a diamond with one arrow per branch key (``default`` for the
  default branch), each branch ending where the next step begins;
- ``parallel`` is a hexagon forking into its branches, which meet in a ``join``
  circle (``merge`` when a merge function combines them);
- ``loop_until`` is a frame around its body (titled with ``max_loops``), closed by
  a ``done?`` diamond whose ``no`` arrow goes back to the body's first step;
- ``map_over`` is a frame around its body, titled with the concurrency;
- a fallback hangs off its step by a dotted ``on failure`` arrow, and goes on
  where the step would have;
- ``router`` is a hexagon like ``parallel``, its arrows to the branches dotted: it
  runs those it chooses;
- ``state_machine`` is a frame (titled with ``max_transitions``) holding one frame per
  state (``(start)``, ``(end)`` marked), an end state without steps as a rounded box,
  and an arrow for each transition: labelled with the output it is taken on, or dotted
  and labelled with the context field when that field chooses;
- a sub-pipeline (a pipeline file's ``uses: imports.NAME``) is a frame around its
  steps, titled with the file it came from.

Node ids are made here (``n0``, ``n1``, ... and ``g0``, ... for frames), never from
step names, and every label is quoted and escaped: quotes, brackets, ``#``, ``;``
and the like become Mermaid entity codes, a newline becomes ``<br>``. Whatever a
step is called, the chart parses.

``flujo.domain.dsl`` binds ``to_mermaid`` onto ``Pipeline`` (this module imports
``pipeline.py``, which cannot import it back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flujo.domain.dsl.control_flow import BranchStep, LoopStep, MapStep, ParallelStep
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.router import RouterStep
from flujo.domain.dsl.state_machine import StateMachineStep
from flujo.domain.dsl.step import HumanStep, Step
from flujo.domain.dsl.sub_pipeline import SubPipelineStep
from flujo.domain.errors import ConfigurationError

__all__ = ["DIRECTIONS", "mermaid_label", "to_mermaid"]

DIRECTIONS = ("TD", "LR", "BT", "RL")
"""The flowchart directions ``to_mermaid`` accepts: top-down, left-right, and reversed."""

_PLAIN = frozenset(" -_.,:/+*=@'!?()$~^")
_INDENT = "    "

Exit = tuple[str, str | None]
"""A node the next step's arrow starts from, with the arrow's label (or none)."""


def mermaid_label(text: str) -> str:
    """Return ``text`` as a quoted Mermaid label: safe whatever characters it holds."""
    parts = ['"']
    for char in text:
        if char == "\n":
            parts.append("<br>")
        elif char.isalnum() or char in _PLAIN:
            parts.append(char)
        else:
            parts.append(f"#{ord(char)};")  # Mermaid's entity code: '"' is #34;
    parts.append('"')
    return "".join(parts)


def to_mermaid(pipeline: Pipeline[Any, Any] | Step[Any, Any], direction: str = "TD") -> str:
    """Return the Mermaid flowchart of ``pipeline`` (or of one step), one statement a line.

    ``direction`` is one of ``DIRECTIONS``. Paste the text into a ```` ```mermaid ````
    block, or print it with ``flujo graph MODULE:PIPELINE``.
    """
    if direction not in DIRECTIONS:
        allowed = ", ".join(DIRECTIONS)
        raise ConfigurationError(f"direction must be one of {allowed}, got {direction!r}")
    if not isinstance(pipeline, Pipeline | Step):
        raise ConfigurationError(f"expected a Pipeline or a Step, got {type(pipeline).__name__}")
    drawing = _Drawing()
    drawing.sequence(Pipeline.of(pipeline), depth=1)
    return "\n".join([f"flowchart {direction}", *drawing.lines])


@dataclass
class _Drawing:
    """The lines drawn so far, and the counters that keep node and frame ids unique."""

    lines: list[str] = field(default_factory=list)
    nodes: int = 0
    frames: int = 0

    def node(self, open_: str, label: str, close: str, depth: int) -> str:
        node_id = f"n{self.nodes}"
        self.nodes += 1
        self.lines.append(f"{_INDENT * depth}{node_id}{open_}{mermaid_label(label)}{close}")
        return node_id

    def edge(
        self, source: str, target: str, label: str | None, depth: int, *, dotted: bool = False
    ) -> None:
        arrow = "-.->" if dotted else "-->"
        shown = "" if label is None else f"|{mermaid_label(label)}|"
        self.lines.append(f"{_INDENT * depth}{source} {arrow}{shown} {target}")

    def frame(self, title: str, depth: int) -> None:
        frame_id = f"g{self.frames}"
        self.frames += 1
        self.lines.append(f"{_INDENT * depth}subgraph {frame_id}[{mermaid_label(title)}]")

    def end_frame(self, depth: int) -> None:
        self.lines.append(f"{_INDENT * depth}end")

    def sequence(self, pipeline: Pipeline[Any, Any], depth: int) -> tuple[str, list[Exit]]:
        """Draw ``pipeline``'s steps in order; return its entry node and its exits."""
        entry: str | None = None
        exits: list[Exit] = []
        for item in pipeline.steps:
            first, last = self.step(item, depth)
            for source, label in exits:
                self.edge(source, first, label, depth)
            entry = first if entry is None else entry
            exits = last
        assert entry is not None  # a Pipeline is never empty
        return entry, exits

    def step(self, item: Step[Any, Any], depth: int) -> tuple[str, list[Exit]]:
        """Draw one step (with its fallback); return its entry node and its exits."""
        entry, exits = self.kind(item, depth)
        if item.fallback_step is not None:
            backup, backup_exits = self.step(item.fallback_step, depth)
            self.edge(entry, backup, "on failure", depth, dotted=True)
            exits = [*exits, *backup_exits]
        return entry, exits

    def kind(self, item: Step[Any, Any], depth: int) -> tuple[str, list[Exit]]:
        if isinstance(item, SubPipelineStep):  # before BranchStep, which it derives from
            return self.sub_pipeline(item, depth)
        if isinstance(item, StateMachineStep):
            return self.state_machine(item, depth)
        if isinstance(item, RouterStep):
            return self.parallel(item, depth, dotted=True)
        if isinstance(item, BranchStep):
            return self.branch(item, depth)
        if isinstance(item, ParallelStep):
            return self.parallel(item, depth)
        if isinstance(item, LoopStep):
            return self.loop(item, depth)
        if isinstance(item, MapStep):
            return self.map(item, depth)
        if isinstance(item, HumanStep):
            node = self.node("[/", f"{item.name}\n{item.message}", "/]", depth)
            return node, [(node, None)]
        node = self.node("[", item.name, "]", depth)
        return node, [(node, None)]

    def branch(self, item: BranchStep, depth: int) -> tuple[str, list[Exit]]:
        decision = self.node("{", item.name, "}", depth)
        arms = list(item.branches.items())
        if item.default is not None:
            arms.append(("default", item.default))
        exits: list[Exit] = []
        for key, body in arms:
            first, last = self.sequence(body, depth)
            self.edge(decision, first, key, depth)
            exits += last
        return decision, exits

    def parallel(
        self, item: ParallelStep | RouterStep, depth: int, *, dotted: bool = False
    ) -> tuple[str, list[Exit]]:
        fork = self.node("{{", item.name, "}}", depth)
        ends: list[Exit] = []
        for key, body in item.branches.items():
            first, last = self.sequence(body, depth)
            self.edge(fork, first, key, depth, dotted=dotted)
            ends += last
        join = self.node("((", "merge" if item.merge is not None else "join", "))", depth)
        for source, label in ends:
            self.edge(source, join, label, depth)
        return fork, [(join, None)]

    def loop(self, item: LoopStep, depth: int) -> tuple[str, list[Exit]]:
        times = "once" if item.max_loops == 1 else f"{item.max_loops} times"
        self.frame(f"{item.name}: until done, at most {times}", depth)
        first, last = self.sequence(item.body, depth + 1)
        check = self.node("{", "done?", "}", depth + 1)
        for source, label in last:
            self.edge(source, check, label, depth + 1)
        self.edge(check, first, "no", depth + 1)
        self.end_frame(depth)
        return first, [(check, "yes")]

    def map(self, item: MapStep, depth: int) -> tuple[str, list[Exit]]:
        pace = "one at a time" if item.concurrency == 1 else f"{item.concurrency} at a time"
        self.frame(f"{item.name}: for each item, {pace}", depth)
        first, last = self.sequence(item.body, depth + 1)
        self.end_frame(depth)
        return first, last

    def sub_pipeline(self, item: SubPipelineStep, depth: int) -> tuple[str, list[Exit]]:
        origin = "sub-pipeline" if item.source is None else item.source.rsplit("/", 1)[-1]
        self.frame(f"{item.name}: {origin}", depth)
        first, last = self.sequence(item.body, depth + 1)
        self.end_frame(depth)
        return first, last

    def state_machine(self, item: StateMachineStep, depth: int) -> tuple[str, list[Exit]]:
        times = "once" if item.max_transitions == 1 else f"{item.max_transitions} times"
        self.frame(f"{item.name}: state machine, moves at most {times}", depth)
        inner = depth + 1
        drawn: dict[str, tuple[str, list[Exit]]] = {}
        for state, body in item.states.items():
            marks = [
                word
                for word, yes in (("start", state == item.start), ("end", state in item.end))
                if yes
            ]
            self.frame(f"{state} ({', '.join(marks)})" if marks else state, inner)
            drawn[state] = self.sequence(body, inner + 1)
            self.end_frame(inner)
        for state in item.end:
            if state not in drawn:
                node = self.node("([", state, "])", inner)
                drawn[state] = (node, [(node, None)])
        for state in item.states:
            if state not in item.end:
                self.moves(item, state, drawn, inner)
        self.end_frame(depth)
        exits = [exit_ for state in item.end for exit_ in drawn[state][1]]
        return drawn[item.start][0], exits

    def moves(
        self,
        item: StateMachineStep,
        state: str,
        drawn: dict[str, tuple[str, list[Exit]]],
        depth: int,
    ) -> None:
        """Draw the arrows from ``state``'s last steps to the states it may move to."""
        entry = item.transitions.get(state)
        arrows: list[tuple[str, str | None, bool]]
        if isinstance(entry, dict):
            arrows = [(target, output, False) for output, target in entry.items()]
        elif isinstance(entry, str):
            arrows = [(entry, None, False)]
        else:
            arrows = [(target, item.next_state_from, True) for target in item.targets(state)]
        for target, label, dotted in arrows:
            for source, _ in drawn[state][1]:
                self.edge(source, drawn[target][0], label, depth, dotted=dotted)
