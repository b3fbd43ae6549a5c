"""The validated settings behind ``FlujoContainer.config``; a misspelt key is an error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flujo.domain.errors import ConfigurationError

__all__ = [
    "CacheSettings",
    "FlujoSettings",
    "StateSettings",
    "TelemetrySettings",
    "default_state_path",
    "load_settings",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheSettings(_Strict):
    """The step-result cache."""

    backend: Literal["memory"] = "memory"
    max_entries: int = Field(default=1024, gt=0)


class StateSettings(_Strict):
    """Durable run state and managed state."""

    backend: Literal["memory", "sqlite"] = "sqlite"
    uri: str | None = Field(
        default=None,
        description="SQLite file path; default: $XDG_STATE_HOME/flujo/runs.db "
        "(~/.local/state/flujo/runs.db).",
    )
    on_missing_provider: Literal["error", "warn"] = "error"

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file this profile's run state lives in."""
        if self.uri is None:
            return default_state_path()
        return Path(self.uri.removeprefix("sqlite:///")).expanduser()


class TelemetrySettings(_Strict):
    """Where spans and warnings go."""

    backend: Literal["logging", "null"] = "logging"
    logger_name: str = "flujo"


class FlujoSettings(_Strict):
    """Everything a container profile can set."""

    cache: CacheSettings = CacheSettings()
    state: StateSettings = StateSettings()
    telemetry: TelemetrySettings = TelemetrySettings()


def default_state_path() -> Path:
    """``$XDG_STATE_HOME/flujo/runs.db``, read when called (never at import time)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "flujo" / "runs.db"


def load_settings(raw: dict[str, Any] | None, source: str = "configuration") -> FlujoSettings:
    """Validate raw configuration; unknown or bad keys raise ``ConfigurationError``."""
    try:
        return FlujoSettings.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid flujo {source}: {problems}") from exc
