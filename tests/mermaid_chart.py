"""Reading a flowchart that ``to_mermaid`` drew back into nodes, edges and frames.

The tests check structure (which node, which arrow, which frame), so the parser
accepts exactly the statement forms ``to_mermaid`` writes and fails on anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LABEL = r'"(?P<label>[^"\n]*)"'
_SHAPES = {
    "box": (r"\[", r"\]"),
    "human": (r"\[/", r"/\]"),
    "decision": (r"\{", r"\}"),
    "fork": (r"\{\{", r"\}\}"),
    "circle": (r"\(\(", r"\)\)"),
    "rounded": (r"\(\[", r"\]\)"),
}
_NODE = [
    (shape, re.compile(rf"^(?P<id>n\d+){opening}{_LABEL}{closing}$"))
    for shape, (opening, closing) in sorted(_SHAPES.items(), key=lambda kv: -len(kv[1][0]))
]
_EDGE = re.compile(
    r'^(?P<source>n\d+) (?P<arrow>-->|-\.->)(?:\|"(?P<label>[^"\n]*)"\|)? (?P<target>n\d+)$'
)
_FRAME = re.compile(rf"^subgraph (?P<id>g\d+)\[{_LABEL}\]$")
_ENTITY = re.compile(r"#(\d+);")


def unescape(label: str) -> str:
    """Return the text a quoted label shows (entity codes and ``<br>`` decoded)."""
    return _ENTITY.sub(lambda m: chr(int(m.group(1))), label.replace("<br>", "\n"))


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str | None
    dotted: bool


@dataclass
class Chart:
    direction: str
    shapes: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    frames: dict[str, str] = field(default_factory=dict)
    frame_of: dict[str, str | None] = field(default_factory=dict)

    def id_of(self, label: str) -> str:
        found = [node for node, text in self.labels.items() if text == label]
        assert len(found) == 1, f"{len(found)} nodes labelled {label!r}: {self.labels}"
        return found[0]

    def arrows(self) -> set[tuple[str, str, str | None]]:
        """Every edge as (source label, target label, edge label)."""
        return {(self.labels[e.source], self.labels[e.target], e.label) for e in self.edges}

    def dotted(self) -> set[tuple[str, str, str | None]]:
        return {
            (self.labels[e.source], self.labels[e.target], e.label) for e in self.edges if e.dotted
        }

    def frame_title(self, label: str) -> str | None:
        frame = self.frame_of[self.id_of(label)]
        return None if frame is None else self.frames[frame]


def parse(text: str) -> Chart:
    """Parse a ``to_mermaid`` chart; raise ``AssertionError`` on any line it did not write."""
    first, *rest = text.split("\n")
    header = re.fullmatch(r"flowchart (TD|LR|BT|RL)", first)
    assert header, first
    chart = Chart(direction=header.group(1))
    open_frames: list[str] = []
    for raw in rest:
        line = raw.strip()
        depth = len(open_frames) + (line != "end")  # a frame's `end` sits at its own depth
        assert raw == "    " * depth + line, f"indented wrong: {raw!r}"
        if frame := _FRAME.match(line):
            chart.frames[frame["id"]] = unescape(frame["label"])
            open_frames.append(frame["id"])
            continue
        if line == "end":
            assert open_frames, "end without subgraph"
            open_frames.pop()
            continue
        if edge := _EDGE.match(line):
            for end in (edge["source"], edge["target"]):
                assert end in chart.labels, f"edge to a node not drawn yet: {line}"
            label = None if edge["label"] is None else unescape(edge["label"])
            chart.edges.append(Edge(edge["source"], edge["target"], label, edge["arrow"] == "-.->"))
            continue
        for shape, pattern in _NODE:
            if node := pattern.match(line):
                assert node["id"] not in chart.labels, f"node drawn twice: {line}"
                chart.shapes[node["id"]] = shape
                chart.labels[node["id"]] = unescape(node["label"])
                chart.frame_of[node["id"]] = open_frames[-1] if open_frames else None
                break
        else:
            raise AssertionError(f"not a statement to_mermaid writes: {raw!r}")
    assert not open_frames, "subgraph left open"
    return chart
