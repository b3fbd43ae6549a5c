"""``FaultyProvider``: any state provider, with failures and hangs injected on schedule.

Wrapping a ``VersionedStateProvider`` gives a ``FaultyVersionedProvider``, which keeps
``load_versioned`` and ``save_versioned`` (faults apply to them too), so the engine
still sees a versioned provider; wrapping a plain one gives a plain wrapper, so the
engine never takes a plain provider for a versioned one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypedDict, TypeVar, Unpack, cast, overload

from flujo.domain.interfaces import StateProvider, Versioned, VersionedStateProvider, Write
from flujo.testing.faults import FaultPlan, Faults, InjectedFault

__all__ = ["FaultyProvider", "FaultyVersionedProvider", "ProviderFaults"]

T = TypeVar("T")
V = TypeVar("V")

_VERSIONED = ("load", "save", "load_versioned", "save_versioned")


class ProviderFaults(TypedDict, total=False):
    """The schedules of ``FaultyProvider.inject``: ``None`` removes one."""

    load: Faults | None
    save: Faults | None


def _is_versioned(provider: object) -> bool:
    return all(callable(getattr(provider, name, None)) for name in _VERSIONED)


class FaultyProvider(Generic[T]):
    """A ``StateProvider`` over ``inner`` whose loads and saves fail or hang on schedule.

    ``load=`` covers ``load`` (and ``load_versioned``), ``save=`` covers ``save`` (and
    ``save_versioned``, one call however many writes it holds), each a ``Faults``
    schedule. ``inject(...)`` replaces schedules while a test runs, ``heal()`` removes
    them all, and ``calls`` counts every call by operation. With ``copy_values=True``
    it hands out and keeps deep copies, as an external store does: a value changed in
    place is not what the store holds until it is saved. A failed call never reaches
    ``inner``; one in ``Faults.fail_after`` does, then raises.
    """

    inner: StateProvider[T]
    copy_values: bool
    _plan: FaultPlan

    @overload
    def __new__(
        cls,
        inner: VersionedStateProvider[T],
        *,
        load: Faults | None = None,
        save: Faults | None = None,
        copy_values: bool = False,
    ) -> FaultyVersionedProvider[T]: ...

    @overload
    def __new__(
        cls,
        inner: StateProvider[T],
        *,
        load: Faults | None = None,
        save: Faults | None = None,
        copy_values: bool = False,
    ) -> FaultyProvider[T]: ...

    def __new__(
        cls,
        inner: Any,
        *,
        load: Faults | None = None,
        save: Faults | None = None,
        copy_values: bool = False,
    ) -> Any:
        """Wrap ``inner``: a ``FaultyVersionedProvider`` when ``inner`` is versioned."""
        # Built here, with no __init__, so type checkers read the overloads above.
        if not (callable(getattr(inner, "load", None)) and callable(getattr(inner, "save", None))):
            raise TypeError(
                f"FaultyProvider wraps a StateProvider (async load and save), got {inner!r}"
            )
        chosen = FaultyVersionedProvider if cls is FaultyProvider and _is_versioned(inner) else cls
        self: FaultyProvider[Any] = object.__new__(chosen)
        self.inner = inner
        self.copy_values = copy_values
        self._plan = FaultPlan(("load", "save"), InjectedFault)
        self._plan.install({"load": load, "save": save})
        return self

    @property
    def calls(self) -> dict[str, int]:
        """How many loads and saves were called (failed ones included), by operation."""
        return dict(self._plan.calls)

    @property
    def faults(self) -> dict[str, Faults]:
        """The schedules installed now, by operation."""
        return self._plan.schedules()

    def inject(self, **faults: Unpack[ProviderFaults]) -> None:
        """Install schedules by operation, counted from this call on; ``None`` removes one."""
        self._plan.install(cast("Mapping[str, Faults | None]", faults))

    def heal(self) -> None:
        """Remove every schedule: from now on every call goes through to ``inner``."""
        self._plan.clear()

    def _copy(self, value: V) -> V:
        return copy.deepcopy(value) if self.copy_values else value

    async def load(self, key: str) -> T | None:
        """Return ``inner``'s value under ``key``, unless this call is scheduled to fail."""
        landed = await self._plan.before("load")
        value = self._copy(await self.inner.load(key))
        landed()
        return value

    async def save(self, key: str, data: T) -> None:
        """Store ``data`` in ``inner``, unless this call is scheduled to fail."""
        landed = await self._plan.before("save")
        await self.inner.save(key, self._copy(data))
        landed()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class FaultyVersionedProvider(FaultyProvider[T]):
    """A ``FaultyProvider`` over a ``VersionedStateProvider``; it is versioned too."""

    inner: VersionedStateProvider[T]

    async def load_versioned(self, key: str) -> Versioned[T]:
        """Return ``inner``'s versioned value, unless this load is scheduled to fail."""
        landed = await self._plan.before("load")
        found = await self.inner.load_versioned(key)
        if self.copy_values:
            found = Versioned(copy.deepcopy(found.value), found.version, found.writer)
        landed()
        return found

    async def save_versioned(self, writes: Sequence[Write[T]]) -> list[int]:
        """Apply ``writes`` to ``inner`` all or none, unless this save is scheduled to fail."""
        landed = await self._plan.before("save")
        if self.copy_values:
            writes = [
                Write(w.key, copy.deepcopy(w.data), w.expected_version, w.writer) for w in writes
            ]
        versions = await self.inner.save_versioned(writes)
        landed()
        return versions
