"""Per-field reducers: how changes of concurrent children to one field combine.

Without a reducer, two parallel branches or map items that change the same
path of a context field to different values are a ``MergeConflictError``.
Annotate a field with a reducer to combine them instead::

    class Ctx(PipelineContext):
        notes: Annotated[list[str], append] = []

``append``: each child's items added after the common start are appended, in
the children's order (branch declaration order, item index order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

__all__ = ["Reducer", "append", "field_reducers"]


@dataclass(frozen=True, slots=True)
class Reducer:
    """A named way to combine children's values of one field."""

    name: str

    def __repr__(self) -> str:
        return self.name


append = Reducer("append")
"""Children's list items added after the value they started from are appended in order."""


def field_reducers(model: type[Any]) -> dict[str, Reducer]:
    """Return ``{field name: reducer}`` for the fields of ``model`` annotated with one."""
    found: dict[str, Reducer] = {}
    for name, field in getattr(model, "model_fields", {}).items():
        for meta in field.metadata:
            if isinstance(meta, Reducer):
                found[name] = meta
        annotation = field.annotation
        if get_origin(annotation) is Annotated:
            for meta in get_args(annotation)[1:]:
                if isinstance(meta, Reducer):
                    found[name] = meta
    return found
