"""``Node``: what a pipeline holds, a member with a name.

``Step`` derives from it and is its only kind. It sits below both ``pipeline.py`` and
``step.py`` so that ``Pipeline`` can check its items without importing ``step.py``,
which imports ``pipeline.py`` for ``>>`` (see the ``flujo.domain.dsl`` docstring).
"""

from __future__ import annotations

from flujo.domain.errors import ConfigurationError

__all__ = ["Node"]


class Node:
    """A named member of a pipeline: the base of ``Step``, not built on its own."""

    __slots__ = ("name",)

    name: str
    """Unique within a pipeline: durable runs record progress by step name."""

    def __init__(self, name: str) -> None:
        if type(self) is Node:
            # A pipeline checks its items against Node; a bare one would have nothing to run.
            raise ConfigurationError("Node is the base of Step, not a step: build a Step")
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a step needs a non-empty name, got {name!r}")
        self.name = name
