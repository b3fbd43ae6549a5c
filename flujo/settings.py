"""The validated settings behind ``FlujoContainer.config``; a misspelt key is an error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flujo.domain.errors import ConfigurationError
from flujo.domain.validation import summarize
from flujo.state_uri import StateBackendName, StateURI, parse_state_uri

__all__ = [
    "STATE_URI_ENV",
    "CacheSettings",
    "FlujoSettings",
    "StateBackendName",
    "StateSettings",
    "TelemetrySettings",
    "default_state_path",
    "load_settings",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheSettings(_Strict):
    """The step-result cache: in-process LRU, or Redis at ``url``."""

    backend: Literal["memory", "redis"] = "memory"
    max_entries: int = Field(default=1024, gt=0)
    copy_values: bool = Field(
        default=True,
        description="memory backend: hand out copies (false: share the stored objects).",
    )
    url: str | None = Field(default=None, description="Redis URL for the redis backend.")
    prefix: str = "flujo:cache:"

    @model_validator(mode="after")
    def _check_url(self) -> CacheSettings:
        if self.backend == "redis" and not self.url:
            raise ValueError("cache.backend 'redis' needs cache.url, e.g. redis://127.0.0.1:6379/0")
        return self


STATE_URI_ENV = "FLUJO_STATE_URI"
"""Environment variable giving ``state.uri`` when a profile leaves it unset."""


class StateSettings(_Strict):
    """Durable run state and managed state.

    ``uri`` picks the store: ``memory://``, ``sqlite:///path/to/runs.db`` (or a
    bare path) or ``postgresql://user:pass@host/db``, read strictly (see
    ``flujo.state_uri``). Unset, it comes from ``$FLUJO_STATE_URI``, else the
    SQLite file at ``default_state_path()``. ``backend`` may be left out: the
    URI's scheme decides.
    """

    backend: StateBackendName | None = None
    uri: str | None = None
    on_missing_provider: Literal["error", "warn"] = "error"
    load_timeout_s: float | None = Field(
        default=30.0, gt=0, description="Deadline of one provider load; None: no deadline."
    )
    save_timeout_s: float | None = Field(
        default=30.0, gt=0, description="Deadline of one provider save; None: no deadline."
    )
    watch_in_place: bool = Field(
        default=True,
        description="Catch changes made in place without set() (a content hash per read value).",
    )
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a run's lease lasts unless renewed; then another process may "
        "take the run over.",
    )
    heartbeat_s: float = Field(
        default=10.0, gt=0, description="How often a running run renews its lease."
    )

    @model_validator(mode="after")
    def _check_lease(self) -> StateSettings:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError(
                f"state.heartbeat_s ({self.heartbeat_s}) must be shorter than state.lease_s "
                f"({self.lease_s}): a run renews its lease before it expires"
            )
        return self

    @model_validator(mode="after")
    def _check_uri(self) -> StateSettings:
        self.resolved_backend  # noqa: B018 - raises for an unknown scheme or a mismatch
        return self

    @property
    def effective_uri(self) -> str | None:
        """``uri``, or ``$FLUJO_STATE_URI`` when unset (read when asked, not at import)."""
        return self.uri if self.uri is not None else os.environ.get(STATE_URI_ENV) or None

    @property
    def parsed_uri(self) -> StateURI | None:
        """``effective_uri`` parsed (``ConfigurationError`` if malformed); ``None`` if unset."""
        uri = self.effective_uri
        if uri is None or uri == "":
            return None
        origin = "state.uri" if self.uri is not None else f"${STATE_URI_ENV}"
        # ConfigurationError, not ValueError: this also runs outside validation,
        # when the environment is read as parts are resolved.
        return parse_state_uri(uri, origin)

    @property
    def resolved_backend(self) -> StateBackendName:
        """The backend this configuration selects."""
        parsed = self.parsed_uri
        from_uri = None if parsed is None else parsed.backend
        if self.backend is not None and from_uri is not None and from_uri != self.backend:
            if self.uri is None:
                return self.backend  # an explicit backend beats the environment
            raise ConfigurationError(
                f"state.backend is {self.backend!r} but state.uri names {from_uri!r}"
            )
        return self.backend or from_uri or "sqlite"

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file this configuration's run state lives in."""
        parsed = self.parsed_uri
        if parsed is not None and parsed.path is not None:
            return parsed.path
        # Unset, or another store's URI (an overridden environment): the default file.
        return default_state_path()

    @property
    def postgres_dsn(self) -> str:
        """The PostgreSQL DSN (only meaningful when the backend is ``postgres``)."""
        parsed = self.parsed_uri
        if parsed is not None and parsed.dsn is not None:
            return parsed.dsn
        if self.resolved_backend == "postgres":
            raise ConfigurationError(
                "state.backend is 'postgres' but no PostgreSQL DSN is set: give state.uri "
                f"or ${STATE_URI_ENV} as postgresql://user:password@host:port/database"
            )
        return ""


class TelemetrySettings(_Strict):
    """Where spans and warnings go."""

    backend: Literal["logging", "otel", "null"] = "logging"
    logger_name: str = "flujo"


class ExecutionSettings(_Strict):
    """Where steps run: in this process, or on a Ray cluster (``pip install 'flujo[ray]'``)."""

    backend: Literal["local", "ray"] = "local"
    address: str | None = Field(
        default=None,
        description="Ray cluster address (127.0.0.1:6379); None: as ray.init() finds one.",
    )
    on_worker_lost: Literal["retry", "fail"] = Field(
        default="retry",
        description="A step whose Ray worker or node died: run it again on another, or fail.",
    )
    worker_retries: int = Field(default=2, ge=0, description="How many times 'retry' retries.")
    workers: Literal["actors", "tasks"] = Field(
        default="actors",
        description="Ray: leaf steps on a pool of actors kept across runs, or one task each.",
    )
    actors: int | None = Field(
        default=None, ge=1, description="Ray actor pool size; None: the cluster's CPUs."
    )


class FlujoSettings(_Strict):
    """Everything a container profile can set."""

    # Factories, not instances: a default is built (and the environment read) when
    # settings are loaded, never at import time.
    cache: CacheSettings = Field(default_factory=CacheSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)


def default_state_path() -> Path:
    """``$XDG_STATE_HOME/flujo/runs.db``, read when called (never at import time)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "flujo" / "runs.db"


def load_settings(raw: dict[str, Any] | None, source: str = "configuration") -> FlujoSettings:
    """Validate raw configuration; unknown or bad keys raise ``ConfigurationError``."""
    try:
        return FlujoSettings.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigurationError(f"invalid flujo {source}: {summarize(exc)}") from exc
