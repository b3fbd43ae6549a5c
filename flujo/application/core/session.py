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

from collections.abc import Awaitable, Iterable, Mapping
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel

from flujo.application.core.awaiting import at_once, deadline, gather_all, why
from flujo.application.core.entry import Entry, Key
from flujo.application.core.references import ContextPlan, context_plan, find_references
from flujo.application.core.saving import save_entries
from flujo.domain.errors import (
    ConfigurationError,
    ReferenceNotHydratedError,
    StateLoadError,
)
from flujo.domain.interfaces import (
    Hasher,
    Serializer,
    StateProvider,
    Telemetry,
)
from flujo.domain.models import ContextReference

__all__ = ["Entry", "Key", "MissingProviderPolicy", "StateSession"]

_VERSIONED_METHODS = ("load", "save", "load_versioned", "save_versioned")
"""The methods a ``VersionedStateProvider`` has."""


@lru_cache(maxsize=256)
def _class_has_versions(kind: type) -> bool:
    """Whether the class defines every such method (a fact of the class, so kept across runs).

    A cache of C calls rather than a weak-keyed dict: every run asks once per provider,
    and provider classes live as long as the process anyway.
    """
    return all(callable(getattr(kind, name, None)) for name in _VERSIONED_METHODS)


def _has_versions(provider: object) -> bool:
    """Answer ``isinstance(provider, VersionedStateProvider)`` at a fraction of its cost."""
    kind: Any = type(provider)  # mypy sees type[object] as unhashable
    if _class_has_versions(kind):
        return True
    # Methods an instance carries itself (a proxy, a wrapper), or given its class since:
    # looked at each run.
    return all(callable(getattr(provider, name, None)) for name in _VERSIONED_METHODS)


MissingProviderPolicy = Literal["error", "warn"]
"""What a reference to an unregistered provider does: stop the run, or warn and skip it."""


class StateSession:
    """The referenced values of one run (or of one executor driven by hand)."""

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
        self.providers = providers
        self.serializer = serializer
        self._hasher = hasher
        self._telemetry = telemetry
        self._on_missing = on_missing_provider
        self.load_timeout_s = load_timeout_s
        self.save_timeout_s = save_timeout_s
        self.watch_in_place = watch_in_place
        self.entries: dict[Key, Entry] = {}
        self.staged: dict[Key, Entry] = {}
        """Entries whose committed value the provider does not hold yet."""
        self.hydrated: set[int] = set()
        """Ids of the contexts whose references are all bound."""
        self.new_refs = False
        """A reference was created during a step: the next step looks for it."""
        self.deferred = False
        """True while a run loop owns the session: it saves staged values with checkpoints."""
        self.plain_model: type[BaseModel] | None = None
        """The last context model seen that can never hold a reference (no search needed)."""
        self.held = False
        """A bound reference was ``set()`` outside a step: the end of the run looks for it."""
        self._skipped: set[Key] = set()
        self._versioned: dict[str, bool] = {}

    # -- finding and loading -------------------------------------------------------------

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

    def _provider(self, ident: Key, path: str) -> StateProvider[Any] | None:
        provider = self.providers.get(ident[0])
        if provider is not None:
            return provider
        registered = ", ".join(repr(p) for p in sorted(self.providers)) or "none"
        message = (
            f"{path or 'a context field'} references provider {ident[0]!r} "
            f"(key {ident[1]!r}), which is not registered; registered providers: {registered}"
        )
        if self._on_missing == "error":
            raise ConfigurationError(
                message + ". Pass it with Flujo(state_providers={...}) or set "
                "state.on_missing_provider to 'warn'."
            )
        if ident not in self._skipped:
            self._skipped.add(ident)
            self._telemetry.warning(message + "; it stays unhydrated.")
        return None

    def is_versioned(self, provider_id: str, provider: StateProvider[Any]) -> bool:
        """Whether the provider offers compare-and-swap (checked once per provider id)."""
        known = self._versioned.get(provider_id)
        if known is None:
            known = self._versioned[provider_id] = _has_versions(provider)
        return known

    def _bind(self, ref: ContextReference[Any], entry: Entry) -> None:
        private: Any = ref.__pydantic_private__
        private["_entry"] = entry
        private["_value"] = entry.value
        private["_dirty"] = False
        entry.refs.append(ref)
        if not ref.watch:
            entry.watch = False

    async def hydrate(self, context: BaseModel) -> None:
        """Bind every reference of ``context``; load the keys not loaded yet, concurrently."""
        self.new_refs = False
        plan = context_plan(type(context))
        if plan.kind:
            only = plan.only
            rest = (
                self._hydrate(context, plan)
                if only is None
                else self._hydrate_only(context, plan, context.__dict__[only[0]], only[1])
            )
            if rest is not None:
                await rest
        self.hydrated.add(id(context))

    def _hydrate_only(
        self, context: BaseModel, plan: ContextPlan, ref: Any, path: str
    ) -> Awaitable[None] | None:
        """Hydrate a context whose one reference field holds ``ref``; what to await, if any.

        The common context, hydrated on every run: its reference, new to this session,
        is bound and loaded here with no coroutine of its own (nor a list of what was
        found) when its provider answers at once; anything else goes the general way.
        """
        if not isinstance(ref, ContextReference) or self.entries:
            return self._hydrate(context, plan)
        private: Any = ref.__pydantic_private__
        pointer = ref.__dict__
        ident = (pointer["provider_id"], pointer["key"])
        provider = self.providers.get(ident[0])
        if provider is None or private["_entry"] is not None:
            return self._hydrate(context, plan)
        entry = self.entries[ident] = Entry(self, ident, provider, path)
        private["_entry"] = entry
        private["_value"] = None  # what publish() would give it until the value is in
        private["_dirty"] = False
        entry.refs.append(ref)
        if not pointer["watch"]:
            entry.watch = False
        try:
            rest = self._load_now(entry)
        except BaseException:
            del self.entries[ident]
            raise
        if rest is not None:
            return self._loaded_later([entry], rest)
        private["_value"] = entry.value  # publish(), for its one reference
        return None

    async def _hydrate(self, context: BaseModel, plan: ContextPlan) -> None:
        """Bind every reference of ``context`` and load the new keys (the general way)."""
        if plan.direct:  # references as fields of their own: read, not searched
            values = context.__dict__
            loads = self._bind_found([(path, values[name]) for name, path in plan.paths])
        else:
            loads = self._bind_found(find_references(context, with_paths=True))
        if not loads:
            return
        rest: Awaitable[Any] | None
        if len(loads) == 1:
            try:
                rest = self._load_now(loads[0])
            except BaseException:
                del self.entries[loads[0].ident]
                loads[0].publish()
                raise
        else:
            rest = gather_all(self._load(entry) for entry in loads)
        if rest is not None:
            await self._loaded_later(loads, rest)
        else:
            loads[0].publish()

    async def _loaded_later(self, loads: list[Entry], rest: Awaitable[Any]) -> None:
        """Await the loads of ``loads``, then publish them; forget them all if one fails."""
        try:
            await rest
        except BaseException:
            for entry in loads:
                del self.entries[entry.ident]
                entry.publish()
            raise
        for entry in loads:
            entry.publish()

    def _bind_found(self, found: list[tuple[str, Any]]) -> list[Entry]:
        """Bind the references found (other values are skipped); return the entries to load.

        A new entry's references get its value from ``publish()`` once it is loaded.
        """
        loads: list[Entry] = []
        entries = self.entries
        for path, ref in found:
            if not isinstance(ref, ContextReference):
                continue  # a reference field a step set to None
            private: Any = ref.__pydantic_private__
            bound = private["_entry"]
            if bound is not None and bound.session is self:
                continue  # bound already (or a second field holding the same object)
            pointer = ref.__dict__
            ident = (pointer["provider_id"], pointer["key"])
            entry = entries.get(ident)
            if entry is None:
                provider = self.providers.get(ident[0])
                if provider is None:  # unregistered: an error, or warned about and skipped
                    if ident not in self._skipped:
                        self._provider(ident, path)
                    continue
                entry = entries[ident] = Entry(self, ident, provider, path)
                loads.append(entry)
            else:
                private["_value"] = entry.value
            private["_entry"] = entry
            private["_dirty"] = False
            entry.refs.append(ref)
            if not pointer["watch"]:
                entry.watch = False
        return loads

    async def _load(self, entry: Entry) -> None:
        rest = self._load_now(entry)
        if rest is not None:
            await rest

    def _load_now(self, entry: Entry) -> Awaitable[None] | None:
        """Load ``entry``: ``None`` if its provider answered at once, else what to await."""
        provider_id, key = entry.ident
        provider: Any = entry.provider
        versioned = self._versioned.get(provider_id)
        if versioned is None:
            # One C call in the common case (the class answers): every run loads.
            kind: Any = type(provider)
            versioned = _class_has_versions(kind) or _has_versions(provider)
        try:
            answered, result = at_once(
                provider.load_versioned(key) if versioned else provider.load(key)
            )
        except Exception as exc:
            raise self._load_error(entry, exc) from exc
        if not answered:
            return self._load_rest(entry, result, versioned)
        if versioned:  # _loaded, inline: every run loads
            entry.value, entry.version = result.value, result.version
        else:
            entry.value = result
        entry.loaded = True
        return None

    async def _load_rest(self, entry: Entry, rest: Awaitable[Any], versioned: bool) -> None:
        try:
            result = await deadline(rest, self.load_timeout_s)
        except Exception as exc:
            raise self._load_error(entry, exc) from exc
        self._loaded(entry, result, versioned)

    def _loaded(self, entry: Entry, result: Any, versioned: bool) -> None:
        if versioned:
            entry.value, entry.version = result.value, result.version
        else:
            entry.value = result
        entry.loaded = True

    def _load_error(self, entry: Entry, exc: Exception) -> StateLoadError:
        return StateLoadError(f"loading {entry.describe()} failed: {why(exc, self.load_timeout_s)}")

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
