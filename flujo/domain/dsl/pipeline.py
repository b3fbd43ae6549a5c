"""``Pipeline``: an ordered, non-empty sequence of uniquely named steps.

Its items are checked against ``Node``, the base of ``Step``, not ``Step`` itself:
``step.py`` imports this module for ``>>``, so this one must not import it back
(``Step`` is named here for the type checker only).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flujo.domain.dsl.node import Node
from flujo.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from flujo.domain.dsl import mermaid
    from flujo.domain.dsl.files import loading, writing
    from flujo.domain.dsl.step import Step

__all__ = ["Pipeline"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")
NextT = TypeVar("NextT")


class Pipeline(Generic[InT, OutT]):
    """Steps run in order, each one's output the next one's input.

    Names must be unique within a pipeline: durable runs record progress by step.
    """

    __slots__ = ("steps",)

    steps: tuple[Step[Any, Any], ...]

    def __init__(self, steps: Iterable[Step[Any, Any]]) -> None:
        items = tuple(steps)
        if not items:
            raise ConfigurationError("a pipeline needs at least one step")
        seen: dict[str, int] = {}
        for position, item in enumerate(items):
            if not isinstance(item, Node):
                raise ConfigurationError(
                    f"pipeline item {position} is {type(item).__name__}, not a Step"
                )
            if item.name in seen:
                raise ConfigurationError(
                    f"two steps are named {item.name!r} (positions {seen[item.name]} and "
                    f"{position}); step names must be unique within a pipeline"
                )
            seen[item.name] = position
        self.steps = items

    @classmethod
    def of(cls, item: Step[InT, OutT] | Pipeline[InT, OutT]) -> Pipeline[InT, OutT]:
        """Return ``item`` as a pipeline (a step becomes a one-step pipeline)."""
        if isinstance(item, Pipeline):
            return item
        if isinstance(item, Node):
            return cls([item])
        raise ConfigurationError(f"expected a Step or Pipeline, got {type(item).__name__}")

    def __rshift__(self, other: Step[OutT, NextT] | Pipeline[OutT, NextT]) -> Pipeline[InT, NextT]:
        if not isinstance(other, Node | Pipeline):
            return NotImplemented
        return Pipeline([*self.steps, *Pipeline.of(other).steps])

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step[Any, Any]]:
        return iter(self.steps)

    @property
    def step_names(self) -> Sequence[str]:
        """The names of the steps, in order."""
        return [s.name for s in self.steps]

    if TYPE_CHECKING:
        # Defined in mermaid.py (which imports this module) and bound onto Pipeline by
        # flujo/domain/dsl/__init__.py, like Step's control-flow constructors.
        to_mermaid = mermaid.to_mermaid
        # A pipeline file read (files/loading.py) and written (files/writing.py): bound the
        # same way, since both need every kind of step.
        from_yaml = staticmethod(loading.from_yaml)
        to_yaml = writing.to_yaml

    def __repr__(self) -> str:
        return f"Pipeline({' >> '.join(self.step_names)})"
