"""A container on the testing profile, and swapping its parts for one test.

(No name here starts with ``test``: pytest would collect it from a test module.)

``in_memory_container()`` is a fresh ``FlujoContainer`` configured from the shipped
testing profile (everything in memory), found from any working folder.
``override_providers(container, clock=FakeClock(), state_backend=backend)`` swaps parts
with the container's own ``override`` API and undoes exactly those overrides on
``reset()`` or at the end of a ``with`` block.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from dependency_injector import providers

from flujo.containers import FlujoContainer
from flujo.domain.errors import ConfigurationError

__all__ = ["ProviderOverrides", "in_memory_container", "override_providers"]

CALLED_FOR_A_VALUE = ("clock", "run_id", "owner_id")
"""Providers flujo calls for a fresh value each time: they are overridden with a function."""

NOT_OVERRIDDEN = ("config", "settings")
"""Configured through ``container.config``, not swapped."""


def in_memory_container() -> Any:
    """Return a fresh ``FlujoContainer`` on the testing profile: cache and run state in memory."""
    return FlujoContainer.from_profile("testing")  # the shipped profile, found from any folder


class ProviderOverrides:
    """Overrides made on one container by ``override_providers``; ``reset()`` undoes them.

    A context manager too: the overrides last until the ``with`` block ends. Each
    override is pushed on its provider's stack, so nested overrides unwind in order.
    """

    def __init__(self, container: Any, made: dict[str, providers.Provider[Any]]) -> None:
        self.container = container
        self.made = made
        """The providers now overriding each part, by provider name."""
        self._active = True

    def reset(self) -> None:
        """Undo these overrides (again: nothing); the parts are what they were before."""
        if not self._active:
            return
        self._active = False
        for name in reversed(list(self.made)):
            getattr(self.container, name).reset_last_overriding()

    def __enter__(self) -> ProviderOverrides:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reset()


def override_providers(container: Any, **parts: Any) -> ProviderOverrides:
    """Override parts of ``container`` by provider name; return what undoes it.

    A provider is used as given. ``clock``, ``run_id`` and ``owner_id`` take a
    function that flujo calls for each value (``FakeClock()``, ``SequentialIds("run")``);
    any other part takes the object to use (``state_backend=FaultyStateBackend(...)``,
    ``state_providers={"kg": provider}``). ``config`` and ``settings`` are configured
    with ``container.config.from_dict(...)`` instead. The overrides apply from the next
    run of any runner on ``container``.
    """
    known = list(getattr(container, "providers", {}))
    made: dict[str, providers.Provider[Any]] = {}
    for name, value in parts.items():
        if name in NOT_OVERRIDDEN:
            raise ConfigurationError(
                f"override_providers: {name!r} is not swapped; change the configuration "
                "with container.config.from_dict({...}) instead"
            )
        if name not in known:
            raise ConfigurationError(
                f"override_providers: the container has no provider {name!r}; "
                f"its providers are {', '.join(known)}"
            )
        made[name] = _overriding(name, value)
    for name, provider in made.items():
        getattr(container, name).override(provider)
    return ProviderOverrides(container, made)


def _overriding(name: str, value: Any) -> providers.Provider[Any]:
    if providers.is_provider(value):
        return value  # type: ignore[no-any-return]
    if name in CALLED_FOR_A_VALUE:
        if not callable(value):
            raise ConfigurationError(
                f"override_providers: {name}= takes a function flujo calls for each value "
                f"(FakeClock(), SequentialIds(...), lambda: ...), got {value!r}"
            )
        return providers.Callable(value)
    return providers.Object(value)
