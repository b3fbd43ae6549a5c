"""Hydration: finding a context's references and loading the keys a run has not loaded.

``Hydrator`` is the loading half of ``StateSession`` (``flujo.application.core.session``),
kept apart so each module holds one concept: this one binds references to the run's
entries and loads their values, once per key, concurrently, under the load deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel

from flujo.application.core.awaiting import at_once, deadline, gather_all, why
from flujo.application.core.entry import Entry, Key
from flujo.application.core.references import ContextPlan, context_plan, find_references
from flujo.domain.errors import ConfigurationError, StateLoadError
from flujo.domain.interfaces import StateProvider, Telemetry
from flujo.domain.models import ContextReference

__all__ = ["Hydrator", "MissingProviderPolicy"]

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


class Hydrator:
    """Binds a run's references to its entries and loads each key once."""

    def __init__(
        self,
        providers: Mapping[str, StateProvider[Any]],
        *,
        telemetry: Telemetry,
        on_missing_provider: MissingProviderPolicy,
        load_timeout_s: float | None,
    ) -> None:
        self.providers = providers
        self._telemetry = telemetry
        self._on_missing = on_missing_provider
        self.load_timeout_s = load_timeout_s
        self.entries: dict[Key, Entry] = {}
        self.hydrated: set[int] = set()
        """Ids of the contexts whose references are all bound."""
        self.new_refs = False
        """A reference was created during a step: the next step looks for it."""
        self._skipped: set[Key] = set()
        self._versioned: dict[str, bool] = {}

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
