"""``ExecutorFactory`` and ``BackendFactory``: thin facades over a ``FlujoContainer``.

They keep the construction API the spec documents
(``ExecutorFactory(telemetry=..., cache_backend=..., state_providers=...)``);
the container underneath does the wiring.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flujo.application.core.executor_core import ExecutorCore
from flujo.domain.errors import ConfigurationError
from flujo.domain.interfaces import CacheBackend, ExecutionBackend, StateProvider, Telemetry

if TYPE_CHECKING:
    from dependency_injector.containers import Container

__all__ = ["BackendFactory", "ExecutorFactory", "merge_registries"]


def merge_registries(
    *registries: Mapping[str, StateProvider[Any]] | None,
) -> dict[str, StateProvider[Any]]:
    """Merge provider registries; one id naming two different providers is an error."""
    merged: dict[str, StateProvider[Any]] = {}
    for registry in registries:
        for provider_id, provider in (registry or {}).items():
            known = merged.get(provider_id)
            if known is not None and known is not provider:
                raise ConfigurationError(
                    f"state provider id {provider_id!r} is given two different providers "
                    f"({type(known).__name__} and {type(provider).__name__}); use distinct ids"
                )
            merged[provider_id] = provider
    return merged


class ExecutorFactory:
    """Builds ``ExecutorCore`` objects from a container with the given parts swapped in."""

    def __init__(
        self,
        *,
        telemetry: Telemetry | None = None,
        cache_backend: CacheBackend | None = None,
        state_providers: Mapping[str, StateProvider[Any]] | None = None,
        container: Container | None = None,
    ) -> None:
        self._telemetry = telemetry
        self._cache_backend = cache_backend
        self._state_providers = dict(state_providers or {})
        self._container = container

    @property
    def state_providers(self) -> Mapping[str, StateProvider[Any]]:
        """The providers this factory registers."""
        return self._state_providers

    @property
    def container(self) -> Container:
        """The container this factory resolves executors from (made on first use)."""
        if self._container is None:
            from flujo.containers import FlujoContainer

            self._container = FlujoContainer()
            self.configure(self._container)
        return self._container

    def configure(self, container: Container) -> None:
        """Override ``container``'s parts with this factory's (its registry merged in)."""
        from dependency_injector import providers

        if self._telemetry is not None:
            container.telemetry.override(providers.Object(self._telemetry))
        if self._cache_backend is not None:
            container.cache_backend.override(providers.Object(self._cache_backend))
        if self._state_providers:
            merged = merge_registries(container.state_providers(), self._state_providers)
            container.state_providers.override(providers.Object(merged))

    def create_executor(self) -> ExecutorCore:
        """Return a new executor wired by the container."""
        executor: ExecutorCore = self.container.executor()
        return executor


class BackendFactory:
    """Builds the execution backend that runs steps with an executor."""

    def __init__(self, executor_factory: ExecutorFactory | None = None) -> None:
        self.executor_factory = executor_factory or ExecutorFactory()

    def create_execution_backend(self, executor: ExecutorCore | None = None) -> ExecutionBackend:
        """Return a backend running steps with ``executor`` (a new one if omitted)."""
        container = self.executor_factory.container
        chosen = executor if executor is not None else self.executor_factory.create_executor()
        backend: ExecutionBackend = container.execution_backend(executor=chosen)
        return backend
