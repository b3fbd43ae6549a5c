"""Hydrating and persisting the ``ContextReference`` values of one run.

Loads happen once per reference per run (all concurrently); saves happen only
for references ``set()`` since their last save, or, at the end of the run, for
values whose content hash differs from the one taken when they were loaded or
last saved. Hydrated data is never copied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel

from flujo.application.core.references import Found, find_references
from flujo.domain.errors import ConfigurationError, StateLoadError, StateSaveError
from flujo.domain.interfaces import Hasher, Serializer, StateProvider, Telemetry
from flujo.domain.models import ContextReference

__all__ = ["ManagedState", "MissingProviderPolicy"]

MissingProviderPolicy = Literal["error", "warn"]
"""What a reference to an unregistered provider does: stop the run, or warn and skip it."""


class ManagedState:
    """The managed-state side of one run (or of one executor driven by hand)."""

    __slots__ = ("_hasher", "_on_missing", "_providers", "_serializer", "_skipped", "_telemetry")

    def __init__(
        self,
        providers: Mapping[str, StateProvider[Any]],
        *,
        serializer: Serializer,
        hasher: Hasher,
        telemetry: Telemetry,
        on_missing_provider: MissingProviderPolicy = "error",
    ) -> None:
        self._providers = providers
        self._serializer = serializer
        self._hasher = hasher
        self._telemetry = telemetry
        self._on_missing = on_missing_provider
        self._skipped: set[int] = set()

    @property
    def providers(self) -> Mapping[str, StateProvider[Any]]:
        """The registry: ``provider_id -> StateProvider``."""
        return self._providers

    def _digest(self, value: Any) -> str | None:
        try:
            return self._hasher.digest(self._serializer.dumps(value))
        except (TypeError, ValueError):
            return None  # not JSON-representable: in-place changes cannot be detected

    def _provider_for(self, path: str, ref: ContextReference[Any]) -> StateProvider[Any] | None:
        provider = self._providers.get(ref.provider_id)
        if provider is not None:
            return provider
        registered = ", ".join(repr(p) for p in sorted(self._providers)) or "none"
        message = (
            f"{path or 'a context field'} references provider {ref.provider_id!r} "
            f"(key {ref.key!r}), which is not registered; registered providers: {registered}"
        )
        if self._on_missing == "error":
            raise ConfigurationError(
                message + ". Pass it with Flujo(state_providers={...}) or set "
                "state.on_missing_provider to 'warn'."
            )
        if id(ref) not in self._skipped:
            self._skipped.add(id(ref))
            self._telemetry.warning(message + "; it stays unhydrated.")
        return None

    async def hydrate(self, context: BaseModel) -> None:
        """Load every reference of ``context`` that holds no value yet, concurrently."""
        pending = [
            (path, ref)
            for path, ref in find_references(context, with_paths=True)
            if not ref.is_hydrated and id(ref) not in self._skipped
        ]
        await self._for_each(pending, self._load)

    async def _load(
        self, path: str, ref: ContextReference[Any], provider: StateProvider[Any]
    ) -> None:
        try:
            value = await provider.load(ref.key)
        except Exception as exc:
            raise StateLoadError(
                f"loading {path} from provider {ref.provider_id!r}, key {ref.key!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        digest = self._digest(value)
        if digest is None and value is not None:
            self._telemetry.warning(
                f"{path} (provider {ref.provider_id!r}, key {ref.key!r}) holds a "
                f"{type(value).__name__} that is not JSON-serializable: changes made in place "
                "are not detected, call .set() after changing it"
            )
        ref._hydrate(value, digest)

    async def persist_changed(self, context: BaseModel) -> None:
        """Save the references ``set()`` since their last save."""
        if not any(ref.is_dirty for _, ref in find_references(context)):
            return
        dirty = [f for f in find_references(context, with_paths=True) if f[1].is_dirty]
        await self._save_all(dirty)

    def discard_changes(self, context: BaseModel) -> None:
        """Drop values ``set()`` since their last save; they are loaded again when needed.

        Called when a step fails: its changes never reach the provider, so a retry
        or a resumed run starts from what was last saved and applies the step once.
        """
        for _, ref in find_references(context):
            if ref.is_dirty:
                ref._discard()

    async def persist_mutated(self, context: BaseModel) -> None:
        """Save references that were set, or changed in place, since their last save."""
        changed: list[Found] = []
        for path, ref in find_references(context, with_paths=True):
            if not ref.is_hydrated or id(ref) in self._skipped:
                continue
            if ref.is_dirty:
                changed.append((path, ref))
                continue
            before = ref._digest
            if before is not None and self._digest(ref._value) != before:
                changed.append((path, ref))
        await self._save_all(changed)

    async def _save_all(self, found: list[Found]) -> None:
        await self._for_each(found, self._save)

    async def _for_each(
        self,
        found: list[Found],
        action: Callable[[str, ContextReference[Any], StateProvider[Any]], Awaitable[None]],
    ) -> None:
        """Run ``action`` on every reference concurrently; raise the first failure."""
        if not found:
            return
        # Resolve every provider before making a coroutine: a missing one raises with none
        # left unawaited.
        resolved = [(path, ref, self._provider_for(path, ref)) for path, ref in found]
        outcomes = await _gather(
            *(
                action(path, ref, provider)
                for path, ref, provider in resolved
                if provider is not None
            ),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _save(
        self, path: str, ref: ContextReference[Any], provider: StateProvider[Any]
    ) -> None:
        value = ref._value
        try:
            await provider.save(ref.key, value)
        except Exception as exc:
            raise StateSaveError(
                f"saving {path} to provider {ref.provider_id!r}, key {ref.key!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        # Only mark clean if the step did not set a newer value while the save ran.
        if ref._value is value:
            ref._mark_saved(self._digest(value))


async def _gather(*aws: Awaitable[None], return_exceptions: bool) -> list[Any]:
    import asyncio  # not at module level: see runner._run_sync

    return await asyncio.gather(*aws, return_exceptions=return_exceptions)
