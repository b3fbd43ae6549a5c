"""How a ``ContextReference`` reaches the state of the step attempt that is running.

While flujo runs a step attempt, ``ACCESS`` holds that attempt's scope: ``get()``
and ``set()`` of every reference go through it, so the attempt's changes stay
its own until it commits. Outside a run (a context built by hand, or the final
context of a result) nothing is set and a reference reads its own last value.
A ``ContextVar`` rather than an attribute: concurrent branches and map items
are separate asyncio tasks, each seeing its own scope.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flujo.domain.models import ContextReference

__all__ = ["ACCESS", "RefAccess"]


class RefAccess(Protocol):
    """What a running attempt offers its references: read, write, and note new ones."""

    def read(self, ref: ContextReference[Any]) -> Any:
        """Return the value ``ref`` has in this attempt."""
        ...

    def write(self, ref: ContextReference[Any], value: Any) -> None:
        """Record ``value`` as ``ref``'s new value in this attempt."""
        ...

    def note_new(self) -> None:
        """Say that a reference object was created while this attempt ran."""
        ...


ACCESS: ContextVar[RefAccess | None] = ContextVar("flujo_ref_access", default=None)
"""The scope of the step attempt running in this task, if any."""
