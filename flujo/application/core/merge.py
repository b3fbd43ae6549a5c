"""Merging the changes of concurrent children (parallel branches, map items) into a parent.

Each child ran on its own copy of the context. What it changed is computed as
operations on paths (``notes['a']``, ``items[2]``…): dict keys and model fields
are followed, anything else is replaced whole. Children are merged in a fixed
order (branch declaration order, item index order); two children writing one
path (or a path and one inside it) to different values is a
``MergeConflictError`` naming both. A field annotated with the ``append``
reducer takes every child's items added after the shared start, in order.
References are merged the same way: two children ``set()`` one key differently
is a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from flujo.application.core.scope import Scope
from flujo.application.core.session import Key
from flujo.domain.errors import (
    MergeConflictError,
    ParallelConflictError,
    ReferenceNotWritableError,
)
from flujo.domain.models import ContextReference
from flujo.domain.reducers import field_reducers

__all__ = ["Merger", "Op"]

Path = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Op:
    """One change: set, delete or append at ``path`` (the first part is a field name)."""

    path: Path
    kind: str
    value: Any = None


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:
        return False


def _diff(base: Any, new: Any, path: Path, out: list[Op]) -> None:
    if base is new or isinstance(new, ContextReference):
        return  # shared objects (references above all) did not change through this child
    if type(base) is dict and type(new) is dict:
        for key, value in new.items():
            if key in base:
                _diff(base[key], value, (*path, key), out)
            else:
                out.append(Op((*path, key), "set", value))
        out.extend(Op((*path, key), "del") for key in base if key not in new)
        return
    if isinstance(base, BaseModel) and type(base) is type(new):
        for name in type(base).model_fields:
            _diff(getattr(base, name), getattr(new, name), (*path, name), out)
        return
    if not _same(base, new):
        out.append(Op(path, "set", new))


def diff_context(base: BaseModel, new: BaseModel) -> list[Op]:
    """Return what ``new`` (a copy of ``base`` a child changed) changed, as operations."""
    reducers = field_reducers(type(base))
    out: list[Op] = []
    for name in type(base).model_fields:
        before, after = getattr(base, name), getattr(new, name)
        if (
            name in reducers
            and isinstance(before, list)
            and isinstance(after, list)
            and after[: len(before)] == before
        ):
            if len(after) > len(before):
                out.append(Op((name,), "append", after[len(before) :]))
            continue
        _diff(before, after, (name,), out)
    return out


def _apply(context: BaseModel, op: Op) -> None:
    name, *rest = op.path
    if not rest:
        if op.kind == "append":
            getattr(context, name).extend(op.value)
        else:
            context.__dict__[name] = op.value
        return
    holder: Any = getattr(context, name)
    for part in rest[:-1]:
        holder = holder[part] if isinstance(holder, dict) else getattr(holder, part)
    last = rest[-1]
    if isinstance(holder, dict):
        if op.kind == "del":
            holder.pop(last, None)
        else:
            holder[last] = op.value
    else:
        holder.__dict__[last] = op.value


def _text(path: Path) -> str:
    if len(path) == 1:
        return f"context field {path[0]!r}"
    return f"context path {path[0]}" + "".join(f"[{part!r}]" for part in path[1:])


@dataclass
class Merger:
    """Merges children, in the order they are given, into one parent scope and context."""

    owner: str
    kind: str = "map"
    """``"parallel"`` or ``"map"``: which error class and wording a conflict uses."""
    noun: str = "parallel"
    """What a parallel conflict calls the owner (``"router"`` for a router's branches)."""
    paths: dict[Path, tuple[str, Op]] = field(default_factory=dict)
    inner: dict[Path, str] = field(default_factory=dict)
    """Every proper prefix of a written path, with its writer (for nested conflicts)."""
    refs: dict[Key, tuple[str, Any]] = field(default_factory=dict)

    def _conflict(self, first: str, second: str, what: str) -> MergeConflictError:
        if self.kind == "parallel":
            return ParallelConflictError(
                f"{self.noun} {self.owner!r}: branches {first!r} and {second!r} both changed "
                f"{what}, to different values"
            )
        return MergeConflictError(
            f"map_over {self.owner!r}: items {first} and {second} both changed {what}, "
            "to different values"
        )

    def _check(self, writer: str, op: Op) -> None:
        if op.kind == "append":
            return  # appends of a reducer field combine; a set of the field still conflicts
        known = self.paths.get(op.path)
        same = known is not None and known[1].kind == op.kind and _same(known[1].value, op.value)
        if known is not None and known[0] != writer and not same:
            raise self._conflict(known[0], writer, _text(op.path))
        for cut in range(1, len(op.path)):
            above = self.paths.get(op.path[:cut])
            if above is not None and above[0] != writer and above[1].kind != "append":
                raise self._conflict(above[0], writer, _text(op.path[:cut]))
        below = self.inner.get(op.path)
        if below is not None and below != writer:
            raise self._conflict(below, writer, _text(op.path))

    def prepare(
        self, writer: str, child: Scope, base: BaseModel | None, parent: Scope | None
    ) -> Change:
        """Check ``child``'s changes against those prepared before; return them to apply."""
        ops = [] if base is None or child.context is None else diff_context(base, child.context)
        for op in ops:
            self._check(writer, op)
        refs = dict(child.writes)
        for ident, value in child.copies.items():
            found, before = (False, None) if parent is None else parent.visible(ident)
            if not found:
                before = child.session.entries[ident].value
            if not _same(before, value):
                if child.read_only is not None and ident in child.read_only:
                    # Changed in place where it may only be read: as set() would have said.
                    raise ReferenceNotWritableError(child.read_only[ident])
                refs[ident] = value  # changed in place on its copy
        for ident, value in refs.items():
            known = self.refs.get(ident)
            if known is not None and known[0] != writer and not _same(known[1], value):
                raise self._conflict(
                    known[0], writer, f"reference (provider {ident[0]!r}, key {ident[1]!r})"
                )
        for op in ops:
            self.paths[op.path] = (writer, op)
            for cut in range(1, len(op.path)):
                self.inner.setdefault(op.path[:cut], writer)
        for ident, value in refs.items():
            self.refs[ident] = (writer, value)
        return Change(child, ops, refs)

    @staticmethod
    def apply(change: Change, parent: Scope | None, target: BaseModel | None) -> None:
        """Apply prepared changes to the parent scope and context."""
        if target is not None:
            for op in change.ops:
                _apply(target, op)
        if parent is not None:
            parent.absorb(change.refs, {})
        elif change.refs:
            change.child.session.stage(change.refs, {})

    def merge(
        self,
        writer: str,
        child: Scope,
        base: BaseModel | None,
        parent: Scope | None,
        target: BaseModel | None,
    ) -> None:
        """Check ``child``'s changes against earlier children's, then apply them."""
        self.apply(self.prepare(writer, child, base, parent), parent, target)


@dataclass(frozen=True, slots=True)
class Change:
    """One child's checked changes, ready to apply."""

    child: Scope
    ops: list[Op]
    refs: dict[Key, Any]
