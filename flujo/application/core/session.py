"""The state session of one run: an identity map of referenced values, loaded and saved.

One ``Entry`` per ``(provider_id, key)``: every ``ContextReference`` to that key
shares it, it is loaded once per run and saved at most once per commit. The
session holds what the run's committed steps made of each value; step attempts
keep their own changes in scopes (``flujo.application.core.scope``) until they
commit into it. Values committed but not yet saved are *staged*; the run loop
saves them with the step's checkpoint (``flujo.application.core.commit``).

The content hash that catches changes made in place without ``set()`` is taken
when a step first reads a value (never at hydration, so an untouched reference
costs nothing whatever its size) and compared once, when the run ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from flujo.application.core.entry import Entry, Key
from flujo.application.core.hydration import Hydrator, MissingProviderPolicy
from flujo.application.core.references import context_plan, find_references
from flujo.application.core.saving import save_entries
from flujo.domain.errors import ReferenceNotHydratedError
from flujo.domain.interfaces import Hasher, Serializer, StateProvider, Telemetry
from flujo.domain.models import ContextReference

__all__ = ["Entry", "Key", "MissingProviderPolicy", "StateSession"]


class StateSession(Hydrator):
    """The referenced values of one run (or of one executor driven by hand).

    Finding and loading them is ``Hydrator``'s part (``flujo.application.core.hydration``).
    """

    def __init__(
        self,
        providers: Mapping[str, StateProvider[Any]],
        *,
        serializer: Serializer,
        hasher: Hasher,
        telemetry: Telemetry,
        on_missing_provider: MissingProviderPolicy = "error",
        load_timeout_s: float | None = 30.0,
        save_timeout_s: float | None = 30.0,
        watch_in_place: bool = True,
    ) -> None:
        super().__init__(
            providers,
            telemetry=telemetry,
            on_missing_provider=on_missing_provider,
            load_timeout_s=load_timeout_s,
        )
        self.serializer = serializer
        self._hasher = hasher
        self.save_timeout_s = save_timeout_s
        self.watch_in_place = watch_in_place
        self.staged: dict[Key, Entry] = {}
        """Entries whose committed value the provider does not hold yet."""
        self.deferred = False
        """True while a run loop owns the session: it saves staged values with checkpoints."""
        self.plain_model: type[BaseModel] | None = None
        """The last context model seen that can never hold a reference (no search needed)."""
        self.held = False
        """A bound reference was ``set()`` outside a step: the end of the run looks for it."""

    # -- finding -----------------------------------------------------------------------------

    def manages(self, context: BaseModel | None) -> bool:
        """Whether ``context`` holds references (by its model's annotations, else its values)."""
        if context is None:
            return False
        model = type(context)
        kind = context_plan(model).kind
        if kind != 1:
            if kind == 0:
                self.plain_model = model
            return kind == 2
        # A subclass value may hold one: looked at each time, as a step may assign one.
        return bool(find_references(context))

    def needs_hydration(self, context: BaseModel) -> bool:
        """Whether ``context`` may hold references not bound yet (new ones, or never looked)."""
        if self.new_refs or id(context) not in self.hydrated:
            return True
        return context_plan(type(context)).kind != 2  # found by value: any step may add one

    def note_new(self) -> None:
        """Record that a reference was made during a step: the next step looks for it."""
        self.new_refs = True

    def note_held(self) -> None:
        """Record that a reference bound here was ``set()`` outside a step attempt."""
        self.held = True

    def _bind(self, ref: ContextReference[Any], entry: Entry) -> None:
        private: Any = ref.__pydantic_private__
        private["_entry"] = entry
        private["_value"] = entry.value
        private["_dirty"] = False
        entry.refs.append(ref)
        if not ref.watch:
            entry.watch = False

    def entry_of(self, ref: ContextReference[Any]) -> Entry:
        """Return the entry ``ref`` points to, binding it when its key is known."""
        entry = ref.__pydantic_private__["_entry"]  # type: ignore[index]
        if entry is not None and entry.session is self:
            return entry  # type: ignore[no-any-return]
        entry = self.entries.get((ref.provider_id, ref.key))
        if entry is None:
            raise ReferenceNotHydratedError(
                f"ContextReference(provider_id={ref.provider_id!r}, key={ref.key!r}) was "
                "created during this step and is not loaded yet; flujo loads it before the "
                "next step (or set() it first)"
            )
        self._bind(ref, entry)
        return entry

    def entry_for_write(self, ref: ContextReference[Any]) -> Entry:
        """Return the entry ``ref`` points to, creating one (not loaded) for a new key."""
        try:
            return self.entry_of(ref)
        except ReferenceNotHydratedError:
            ident = (ref.provider_id, ref.key)
            provider = self._provider(ident, "")
            if provider is None:
                raise
            entry = self.entries[ident] = Entry(self, ident, provider, "")
            self._bind(ref, entry)
            return entry

    def first_read(self, entry: Entry) -> None:
        """Take the content hash that later tells whether the value changed in place."""
        entry.read = True
        if self.watch_in_place and entry.watch and entry.value is not None:
            entry.digest = self.digest(entry.value)

    def digest(self, value: Any) -> str | None:
        """Content hash of ``value``'s JSON form (``None`` when it has none)."""
        try:
            return self._hasher.digest(self.serializer.dumps(value))
        except (TypeError, ValueError):
            return None

    # -- committing and saving -----------------------------------------------------------

    def stage(self, writes: Mapping[Key, Any], current: Mapping[Key, Any]) -> None:
        """Commit a step's changes: ``writes`` (set values) will be saved, ``current`` not."""
        for ident, value in current.items():
            entry = self.entries[ident]
            entry.value = value
            entry.publish()
        for ident, value in writes.items():
            entry = self.entries[ident]
            entry.value = value
            entry.read, entry.digest = False, None  # a new object: hashed again if read
            entry.reader = None
            entry.publish()
            self.staged[ident] = entry

    def close(self) -> None:
        """Forget the run's entries once it has ended; its context's references keep values.

        Entries and references point at each other: left as they are, every run with a
        reference would leave a cycle for the garbage collector (about 2 µs a run).
        """
        for entry in self.entries.values():
            entry.refs.clear()
            entry.reader = None  # the run's lean scope holds the context: another cycle
        self.entries.clear()
        self.staged.clear()
        self.hydrated.clear()

    def take_staged(self) -> list[Entry]:
        """Return and forget the staged entries (the caller saves them)."""
        if not self.staged:
            return []
        staged = list(self.staged.values())
        self.staged.clear()
        return staged

    async def save(
        self, entries: Iterable[Entry], writer: str, landed: list[Entry] | None = None
    ) -> None:
        """Save ``entries``, all keys of one versioned provider in one atomic call.

        ``landed`` collects the entries whose save landed; the first failure is raised
        after every call has ended (``StateSaveError``, or ``StateConflictError``).
        """
        await save_entries(
            entries,
            writer,
            [] if landed is None else landed,
            versioned=self.is_versioned,
            save_timeout_s=self.save_timeout_s,
            load_timeout_s=self.load_timeout_s,
        )

    def changed_in_place(self, context: BaseModel | None) -> list[Entry]:
        """Entries set outside any step, or changed in place since a step first read them."""
        if context is not None and self.held:  # else no reference of it can be dirty
            for _, ref in find_references(context):
                private: Any = ref.__pydantic_private__
                entry = private["_entry"]
                if private["_dirty"] and entry is not None and entry.session is self:
                    entry.value = private["_value"]  # set() outside a run: the user's value
                    self.staged[entry.ident] = entry
        changed: list[Entry] = []
        staged = self.staged
        for entry in self.entries.values():
            # No digest first: an unwatched value, or one no step read, is never compared.
            if entry.digest is None or not entry.read or entry.ident in staged:
                continue
            if self.digest(entry.value) == entry.digest:
                continue
            if entry.tainted is not None:
                self._telemetry.warning(
                    f"{entry.describe()} changed in place, but {entry.tainted}, so the change "
                    "is not saved: call .set() to save changes exactly once"
                )
                continue
            changed.append(entry)
        return [*staged.values(), *changed] if staged else changed
