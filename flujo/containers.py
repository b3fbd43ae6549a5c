"""``FlujoContainer``: the composition root, the one place that names concrete parts.

Every provider name below is public API: configure parts through ``config``
(or a YAML profile), swap them in tests with ``override``, and embed the
container in a host application with ``providers.Container(FlujoContainer, ...)``.

Runs from many threads resolve parts at once (``runner.run()`` from a thread
pool), so every part made once is a ``ThreadSafeSingleton``: the first build
happens under dependency-injector's one re-entrant build lock, and later calls
read the part without locking. ``Settings`` validates a changed configuration
under that same lock, so a build and a change never wait on each other.
"""

from __future__ import annotations

import operator
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from dependency_injector import containers, providers

from flujo.application.core.execution_backend import LocalExecutionBackend
from flujo.application.core.executor_core import ExecutorCore
from flujo.domain.errors import ConfigurationError
from flujo.infra.caches import InMemoryLRUCache
from flujo.infra.hashing import Blake3Hasher
from flujo.infra.otel_telemetry import OpenTelemetryTelemetry
from flujo.infra.ray_backend import RayExecutionBackend
from flujo.infra.ray_pool import ActorPool
from flujo.infra.redis_cache import RedisCache
from flujo.infra.serialization import OrjsonSerializer
from flujo.infra.state.memory import InMemoryBackend
from flujo.infra.state.postgres import PostgresBackend
from flujo.infra.state.sqlite import SQLiteBackend
from flujo.infra.telemetry import LoggingTelemetry, NullTelemetry
from flujo.infra.usage import ThreadSafeMeter
from flujo.profiles import is_profile_name, locate_profile
from flujo.settings import FlujoSettings, load_settings

__all__ = ["Configured", "FlujoContainer", "Settings", "load_profile", "new_executor"]

_UNSET: Any = object()
_BUILD_LOCK: Any = cast(Any, providers.ThreadSafeSingleton).storage_lock
"""dependency-injector's lock for building thread-safe singletons (a class attribute)."""


def new_run_id() -> str:
    """Return a fresh random run id (32 hex digits)."""
    return os.urandom(16).hex()


def new_executor(*, settings: FlujoSettings, **parts: Any) -> ExecutorCore:
    """Return an ``ExecutorCore`` with ``parts`` and the state settings it applies."""
    # The settings object itself, not four lookups through providers: this runs per run.
    state = settings.state
    return ExecutorCore(
        on_missing_provider=state.on_missing_provider,
        load_timeout_s=state.load_timeout_s,
        save_timeout_s=state.save_timeout_s,
        watch_in_place=state.watch_in_place,
        **parts,
    )


def new_owner_id() -> str:
    """Return a fresh lease owner id: host, process id and 8 random hex digits."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def load_profile(profile: str | Path) -> dict[str, Any]:
    """Read and validate a profile, by shipped name or by path; return its configuration.

    ``"testing"`` (a bare name) is the profile shipped in the package; a ``Path``, or a
    string holding ``/`` or ``.``, is a file (see ``flujo.profiles``).
    """
    import yaml  # only profile users pay for the YAML import

    source = locate_profile(profile)
    shown = source if is_profile_name(profile) else profile  # a path as the caller wrote it
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read container profile {shown}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"container profile {shown} is not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigurationError(
            f"container profile {shown} must be a mapping, got {type(raw).__name__}"
        )
    load_settings(raw, source=f"profile {shown}")
    return raw


class Settings(providers.Provider[FlujoSettings]):
    """The settings validated from ``config``, validated again when ``config`` changed.

    A change made through the configuration API after first use (``from_dict``,
    ``set``, ``from_value``, a host's config) is seen at the next resolution: a bad
    key raises ``ConfigurationError`` there, and good values take effect, the
    ``Configured`` parts whose arguments changed being made again. Unchanged, it
    costs one identity check of the raw configuration.
    """

    def __init__(self, config: providers.Provider[Any] | None = None) -> None:
        self._config = config
        self._current: tuple[Any, FlujoSettings | None] = (_UNSET, None)
        """The raw configuration last validated and its settings, replaced in one step."""
        self._dependents: list[Configured] = []
        super().__init__()

    def __deepcopy__(self, memo: dict[Any, Any] | None) -> Settings:
        memo = {} if memo is None else memo
        copied = memo.get(id(self))
        if copied is None:  # dependents register with the copy as they are copied
            copied = Settings(providers.deepcopy(self._config, memo))
            memo[id(self)] = copied
            self._copy_overridings(copied, memo)
        return cast(Settings, copied)

    @property
    def related(self) -> Iterator[providers.Provider[Any]]:
        """The configuration provider, then what the base provider relates to."""
        if self._config is not None:
            yield self._config
        yield from super().related

    def register(self, part: Configured) -> None:
        """Make ``part`` again whenever a configuration change alters its arguments."""
        self._dependents.append(part)

    def _provide(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> FlujoSettings:
        raw = self._config() if self._config is not None else None
        seen, settings = self._current
        if raw is seen and settings is not None:
            return settings
        with _BUILD_LOCK:  # one thread validates a change and resets the parts it alters
            return self._change(raw)

    def _change(self, raw: Any) -> FlujoSettings:
        seen, old = self._current
        if raw is seen and old is not None:
            return old  # another thread made this change while this one waited
        settings = load_settings(raw)  # raises before anything changes: a bad edit is not kept
        if old is None:
            self._current = (raw, settings)
            return settings
        self._current = (raw, old)  # re-entrant calls below see the settings parts were made with
        before = [part.arguments() for part in self._dependents]
        self._current = (raw, settings)
        for part, made_with in zip(self._dependents, before, strict=True):
            if made_with is None or part.arguments() != made_with:
                part.reset()
        return settings


class Configured(providers.ThreadSafeSingleton[Any]):
    """A ``ThreadSafeSingleton`` made again when a configuration change alters its arguments.

    ``Singleton(Part, max_entries=...)`` keeps the part made from the first settings
    forever; this one registers with ``settings``, which resets it when a change
    alters the arguments it resolves. Resolving it costs what a ``Singleton`` does.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        provides: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(provides, **kwargs)
        self._settings = settings
        if settings is not None:
            settings.register(self)

    def __deepcopy__(self, memo: dict[Any, Any] | None) -> Configured:
        memo = {} if memo is None else memo
        copied = memo.get(id(self))
        if copied is None:
            copied = cast(Configured, super().__deepcopy__(memo))
            if self._settings is not None:
                copied._settings = cast(Settings, providers.deepcopy(self._settings, memo))
                copied._settings.register(copied)
        return cast(Configured, copied)

    def arguments(self) -> dict[str, Any] | None:
        """Return the keyword arguments it would be made with now (``None`` if they fail)."""
        try:
            return {
                name: value() if providers.is_provider(value) else value
                for name, value in self.kwargs.items()
            }
        except ConfigurationError:
            return None  # made again: the error shows when the part is next resolved


def _setting(path: str, settings: Any) -> Any:
    # attrgetter through providers.Callable resolves in ~2 µs; a `.provided` chain in ~9.
    return providers.Callable(operator.attrgetter(path), settings)


class FlujoContainer(containers.DeclarativeContainer):
    """Wires serializer, hasher, cache, telemetry, usage meter, state and executor."""

    config = providers.Configuration()
    settings = Settings(config)

    serializer = providers.ThreadSafeSingleton(OrjsonSerializer)
    hasher = providers.ThreadSafeSingleton(Blake3Hasher)
    cache_backend = providers.Selector(
        _setting("cache.backend", settings),
        memory=Configured(
            settings,
            InMemoryLRUCache,
            max_entries=_setting("cache.max_entries", settings),
            copy_values=_setting("cache.copy_values", settings),
        ),
        redis=Configured(
            settings,
            RedisCache,
            url=_setting("cache.url", settings),
            serializer=serializer,
            prefix=_setting("cache.prefix", settings),
        ),
    )
    telemetry = providers.Selector(
        _setting("telemetry.backend", settings),
        logging=Configured(
            settings, LoggingTelemetry, logger_name=_setting("telemetry.logger_name", settings)
        ),
        otel=Configured(
            settings,
            OpenTelemetryTelemetry,
            logger_name=_setting("telemetry.logger_name", settings),
        ),
        null=providers.ThreadSafeSingleton(NullTelemetry),
    )
    usage_meter = providers.Factory(ThreadSafeMeter)
    state_providers = providers.Dict()
    state_backend = providers.Selector(
        _setting("state.resolved_backend", settings),
        memory=providers.ThreadSafeSingleton(InMemoryBackend),
        sqlite=Configured(settings, SQLiteBackend, path=_setting("state.sqlite_path", settings)),
        postgres=Configured(
            settings, PostgresBackend, dsn=_setting("state.postgres_dsn", settings)
        ),
    )
    run_id = providers.Callable(new_run_id)
    owner_id = providers.Callable(new_owner_id)
    clock = providers.Callable(time.time)

    executor = providers.Factory(
        new_executor,
        serializer=serializer,
        hasher=hasher,
        cache_backend=cache_backend,
        telemetry=telemetry,
        usage_meter=usage_meter,
        state_providers=state_providers,
        settings=settings,
    )
    ray_actors = Configured(settings, ActorPool, size=_setting("execution.actors", settings))
    """The Ray leaf actors every run of this container shares (``execution.workers: actors``)."""
    execution_backend = providers.Selector(
        _setting("execution.backend", settings),
        local=providers.Factory(LocalExecutionBackend, executor=executor),
        ray=providers.Factory(
            RayExecutionBackend,
            executor=executor,
            address=_setting("execution.address", settings),
            on_worker_lost=_setting("execution.on_worker_lost", settings),
            worker_retries=_setting("execution.worker_retries", settings),
            workers=_setting("execution.workers", settings),
            pool=ray_actors,
        ),
    )

    @classmethod
    def from_profile(cls, profile: str | Path) -> Any:
        """Return a new container configured from a shipped profile's name or a YAML path.

        ``from_profile("testing")`` finds the profile shipped in the package from any
        folder; ``from_profile("conf/ci.yaml")`` or a ``Path`` reads that file.
        """
        container = cls()
        container.config.from_dict(load_profile(profile))
        return container
