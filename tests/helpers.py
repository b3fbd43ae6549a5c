"""Shared test doubles for the core runtime tests."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flujo.domain.interfaces import AttributeValue


@dataclass
class RecordedSpan:
    """A span that remembers what was done to it."""

    name: str
    attributes: dict[str, AttributeValue]
    exceptions: list[BaseException] = field(default_factory=list)
    ended: bool = False

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def record_exception(self, exc: BaseException) -> None:
        self.exceptions.append(exc)

    def end(self) -> None:
        self.ended = True


class RecordingTelemetry:
    """A ``Telemetry`` that keeps every span and warning in lists."""

    def __init__(self) -> None:
        self.spans: list[RecordedSpan] = []
        self.warnings: list[str] = []

    def start_span(self, name: str, attributes: Mapping[str, AttributeValue]) -> RecordedSpan:
        span = RecordedSpan(name, dict(attributes))
        self.spans.append(span)
        return span

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    @property
    def step_names(self) -> list[AttributeValue]:
        return [
            s.attributes.get("flujo.step.name", "") for s in self.spans if s.name == "flujo.step"
        ]


class DictCache:
    """A ``CacheBackend`` over a plain dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    async def get(self, key: str) -> Any | None:
        return self.data.get(key)

    async def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        self.data[key] = value

    async def clear(self) -> None:
        self.data.clear()


class DictStateProvider:
    """A ``StateProvider`` over a plain dict that counts its calls."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data or {})
        self.loads: list[str] = []
        self.saves: list[tuple[str, Any]] = []

    async def load(self, key: str) -> Any | None:
        self.loads.append(key)
        return self.data.get(key)

    async def save(self, key: str, data: Any) -> None:
        self.saves.append((key, data))
        self.data[key] = data


class Flaky:
    """A sync callable that raises ``failures`` times, then returns its input."""

    def __init__(self, failures: int, exc: type[Exception] = ValueError) -> None:
        self.failures = failures
        self.exc = exc
        self.calls = 0

    def __call__(self, data: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"boom {self.calls}")
        return data


def read_only(path: Path | str) -> contextlib.closing[sqlite3.Connection]:
    """Open a SQLite file read-only, closed when the ``with`` block ends (no ResourceWarning)."""
    return contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5))
