"""The composition root's default parts, for an ``ExecutorCore()`` built by hand.

``ExecutorCore()`` works with no arguments (the spec drives it by hand), so the
engine needs flujo's defaults without naming an infra class itself. It cannot
ask ``flujo.containers`` for them: the container imports the engine to wire
``ExecutorCore``, so the engine importing the container, even lazily, closes an
import circle. This module is that seam instead: part of the composition root,
beside ``containers.py``, it imports only ``flujo.domain`` and ``flujo.infra``,
never ``flujo.application``, so the engine may import it without a circle. The
container builds its defaults from the same constructors.
"""

from __future__ import annotations

from dataclasses import dataclass

from flujo.domain.interfaces import CacheBackend, Hasher, Serializer, Telemetry, UsageMeter
from flujo.infra.caches import InMemoryLRUCache
from flujo.infra.hashing import Blake3Hasher
from flujo.infra.serialization import OrjsonSerializer
from flujo.infra.telemetry import LoggingTelemetry
from flujo.infra.usage import ThreadSafeMeter

__all__ = ["DefaultParts", "default_parts"]


@dataclass(frozen=True, slots=True)
class DefaultParts:
    """The parts an ``ExecutorCore`` built without arguments uses."""

    serializer: Serializer
    hasher: Hasher
    cache_backend: CacheBackend
    telemetry: Telemetry
    usage_meter: UsageMeter


def default_parts() -> DefaultParts:
    """Fresh default parts, all in memory, for an ``ExecutorCore`` built by hand."""
    return DefaultParts(
        serializer=OrjsonSerializer(),
        hasher=Blake3Hasher(),
        cache_backend=InMemoryLRUCache(),
        telemetry=LoggingTelemetry(),
        usage_meter=ThreadSafeMeter(),
    )
