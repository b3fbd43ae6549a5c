"""A step attempt's changes: kept apart while it runs, committed or dropped at its end.

A ``Scope`` is what ``ContextReference.get()``/``set()`` reach while an attempt
runs (through ``flujo.domain.state_access.ACCESS``). ``set()`` values stay in
the scope; reads see the scope's own values, then its parents', then the run's
committed value. On commit they move to the parent scope (or, at the top, to the
run's state session, which saves them with the checkpoint); on rollback they are
gone, so a retry, a fallback or a resumed run starts from the state before.

An *isolating* scope also keeps plain context changes apart: the attempt runs on
a copy of the context (references shared, their values not copied) that is
written back only on commit, and a watched reference it reads is handed out as
a copy, so changes made in place by a failed attempt never reach anyone. A lean
scope (a step with no retry and no fallback) pays for neither: its failure ends
the run or the enclosing construct, which drops everything above it anyway.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from flujo.application.core.references import context_plan, find_references
from flujo.application.core.session import Key, StateSession
from flujo.domain.errors import ReferenceNotWritableError
from flujo.domain.models import ContextReference

__all__ = ["LeanAccess", "Scope", "copy_context", "write_back"]

_IMMUTABLE = (str, int, float, bool, bytes, type(None), tuple, frozenset)


def copy_context(context: Any) -> Any:
    """Deep-copy ``context`` keeping its reference objects (their values live in the session)."""
    if context is None:
        return None
    memo: dict[int, Any] = {id(ref): ref for _, ref in find_references(context)}
    return copy.deepcopy(context, memo)


def write_back(source: BaseModel, target: BaseModel) -> None:
    """Make ``target``'s fields those of ``source`` (the same model), without validation."""
    if source is target:
        return
    target.__dict__.update(source.__dict__)
    object.__setattr__(target, "__pydantic_fields_set__", set(source.model_fields_set))


class Scope:
    """The changes of one step attempt (or branch, map item, loop iteration)."""

    __slots__ = (
        "context",
        "copies",
        "isolate",
        "name",
        "parent",
        "read_only",
        "reads",
        "session",
        "target",
        "writes",
    )

    def __init__(
        self,
        session: StateSession,
        parent: Scope | None,
        name: str,
        context: Any,
        *,
        isolate: bool,
        read_only: dict[Key, str] | None = None,
    ) -> None:
        self.session = session
        self.parent = parent
        self.name = name
        self.target = context
        """The context this scope's plain changes land in when it commits."""
        self.isolate = isolate
        self.context = copy_context(context) if isolate else context
        """The context the attempt sees: a copy when isolating."""
        self.writes: dict[Key, Any] = {}
        """Values ``set()`` in this scope."""
        self.copies: dict[Key, Any] = {}
        """Private copies of watched values read in this (isolating) scope."""
        self.reads: set[Key] = set()
        self.read_only = read_only

    # -- what references see ---------------------------------------------------------------

    def visible(self, ident: Key) -> tuple[bool, Any]:
        """Return ``(found, value)`` of ``ident`` in this scope or its parents."""
        scope: Scope | None = self
        while scope is not None:
            if ident in scope.writes:
                return True, scope.writes[ident]
            if ident in scope.copies:
                return True, scope.copies[ident]
            scope = scope.parent
        return False, None

    def read(self, ref: ContextReference[Any]) -> Any:
        """Return ``ref``'s value as this attempt sees it.

        A watched value that comes from outside the nearest isolating scope (the
        run's value, or a parent's shared by siblings) is handed out as a private
        copy, so in-place changes stay with the attempt, branch or item that made them.
        """
        ident = (ref.provider_id, ref.key)
        own = self.writes
        if ident in own:
            return own[ident]
        if ident in self.copies:
            return self.copies[ident]
        shared = self.isolate  # True once the walk leaves an isolating scope
        isolated = self.isolate
        found, value = False, None
        scope = self.parent
        while scope is not None:
            if ident in scope.writes:
                found, value = True, scope.writes[ident]
                break
            if ident in scope.copies:
                found, value = True, scope.copies[ident]
                break
            shared = shared or scope.isolate
            isolated = isolated or scope.isolate
            scope = scope.parent
        entry = self.session.entry_of(ref)
        if not found:
            value = entry.value
            if not entry.read:
                self.session.first_read(entry)
            shared = isolated
        self.reads.add(ident)
        if shared and entry.watch and not isinstance(value, _IMMUTABLE):
            value = self.copies[ident] = copy.deepcopy(value)
        return value

    def note_new(self) -> None:
        """Record that a reference object was made while this attempt ran."""
        self.session.note_new()

    def write(self, ref: ContextReference[Any], value: Any) -> None:
        """Record a ``set()``: saved when the attempt commits, dropped if it fails."""
        ident = (ref.provider_id, ref.key)
        scope: Scope | None = self
        while scope is not None:  # a branch's restriction holds for the steps inside it
            if scope.read_only is not None and ident in scope.read_only:
                raise ReferenceNotWritableError(scope.read_only[ident])
            scope = scope.parent
        self.session.entry_for_write(ref).reader = None  # reads see this value now
        self.writes[ident] = value
        self.copies.pop(ident, None)

    # -- the end of the attempt --------------------------------------------------------------

    def commit(self) -> None:
        """Hand this scope's changes to its parent (or stage them in the session)."""
        if self.isolate and self.target is not None:
            write_back(self.context, self.target)
        if self.parent is not None:
            self.parent.absorb(self.writes, self.copies)
        elif self.writes or self.copies:
            self.session.stage(self.writes, self.copies)

    def absorb(self, writes: dict[Key, Any], copies: dict[Key, Any]) -> None:
        """Take a committed child's changes as this scope's own."""
        for ident, value in copies.items():
            if ident in self.writes:
                self.writes[ident] = value  # a copy of a value set here: still to be saved
            else:
                self.copies[ident] = value
        for ident, value in writes.items():
            self.writes[ident] = value
            self.copies.pop(ident, None)

    def rollback(self, reason: str) -> None:
        """Drop this scope's changes; note values a lean attempt may have changed in place."""
        if not self.isolate:
            for ident in self.reads:
                entry = self.session.entries.get(ident)
                if entry is not None and entry.tainted is None:
                    entry.tainted = reason
        self.writes.clear()
        self.copies.clear()

    def flush(self) -> None:
        """Commit what this scope holds so far and go on (a loop's or map's progress)."""
        if self.isolate and self.target is not None:
            # A snapshot, so what the attempt does next stays its own until it commits.
            write_back(copy_context(self.context), self.target)
        if self.parent is None:
            self.session.stage(self.writes, self.copies)
        else:
            self.parent.absorb(self.writes, self.copies)
        self.writes = {}
        self.copies = {}


class LeanAccess(Scope):
    """The scope of a run's lean top-level steps: one per run, reused by each attempt.

    A step with no retry and no fallback, at the top of a run, keeps nothing apart
    (see above), and most steps never call ``get()`` or ``set()``: rather than a
    new scope per attempt, this one stays open on the run's context for the whole
    step loop, and an attempt hands it back at its end only if it touched a
    reference. Hooks run outside it (``RunState.emit``): there a reference reads and
    writes its own value, as outside a run.
    """

    __slots__ = ("run_context", "touched")

    def __init__(self, session: StateSession, run_context: Any) -> None:
        # Scope's fields set here, not through Scope.__init__: one of these per run.
        self.session = session
        self.parent = self.read_only = None
        self.name = ""
        self.target = self.context = run_context
        self.isolate = self.touched = False
        self.writes, self.copies, self.reads = {}, {}, set()
        # session.needs_hydration, inline: one of these per run
        model: type[BaseModel] = type(run_context)
        unbound = (
            session.new_refs
            or id(run_context) not in session.hydrated
            or context_plan(model).kind != 2
        )
        self.run_context = None if unbound else run_context
        """The run's context when its references are all known and bound (found by type)."""

    def begin(self, name: str, context: Any) -> None:
        """Start a lean attempt of step ``name`` on ``context`` (its name is not kept)."""
        if self.target is not context:
            self.target = self.context = context

    def end(self) -> Scope | None:
        """End the attempt; return this scope if it touched a reference (commit or drop it)."""
        if not self.touched:
            return None
        self.touched = False
        return self

    def commit(self) -> None:
        """Stage the attempt's changes and start clean for the next one."""
        if self.writes:  # never a copy: a lean scope does not keep values apart
            self.session.stage(self.writes, self.copies)
            self.writes = {}
        if self.reads:
            self.reads = set()

    def rollback(self, reason: str) -> None:
        """Drop the attempt's changes and start clean for the next one."""
        super().rollback(reason)
        self.reads = set()

    def read(self, ref: ContextReference[Any]) -> Any:
        """Return ``ref``'s value as the running attempt sees it."""
        if self.target is None:
            return ref._held()
        # Scope.read with no parent and nothing kept apart: own set() values, else the run's.
        writes = self.writes
        if writes:
            ident = (ref.provider_id, ref.key)
            if ident in writes:
                return writes[ident]
        session = self.session
        entry = ref.__pydantic_private__["_entry"]  # type: ignore[index]
        if entry is None or entry.session is not session:
            entry = session.entry_of(ref)
        if not entry.read:
            session.first_read(entry)
        if entry.watch and session.watch_in_place:
            # Its in-place changes are saved: if this attempt fails, they cannot be.
            self.touched = True
            self.reads.add(entry.ident)
        else:
            # Nothing to note, and no set() of it here: until one, get() takes the value
            # without this call (ContextReference.get; write() and stage() end it).
            entry.reader = self
        return entry.value

    def write(self, ref: ContextReference[Any], value: Any) -> None:
        """Record a ``set()`` of the running attempt."""
        if self.target is None:
            ref._hold(value)
            return
        self.touched = True
        super().write(ref, value)
