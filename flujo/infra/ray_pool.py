"""The leaf actors of one ``RayExecutionBackend``, shared by all its runs: ``ActorPool``.

An actor is made when every actor the pool has is busy and the pool is below its
size (by default the cluster's CPUs when the first step is shipped), so a
sequential pipeline keeps one actor and a ``map_over(concurrency=8)`` up to eight.
A step goes to the least busy actor. The actors are placed with Ray's ``SPREAD``
strategy; without ``num_cpus`` they take Ray's actor default (one CPU to be
placed, none held while alive), so an idle pool never starves the cluster's other
work, nor a step that itself submits Ray tasks.

An actor that died, or that a step's deadline had killed, leaves the pool
(``retire``); the next step that needs one makes a new one. The pool is
thread-safe: runs on other threads' event loops share it.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["ActorPool", "Slot"]


@dataclass(eq=False)
class Slot:
    """One actor of the pool, with the steps it has now."""

    actor: Any
    busy: int = 0
    killed: bool = False
    """Killed by the pool (a deadline, a lost call): what it had queued was not lost."""


class ActorPool:
    """Leaf actors made on demand, up to ``size``; each runs one step at a time."""

    def __init__(self, *, size: int | None = None, num_cpus: float | None = None) -> None:
        if size is not None and size < 1:
            from flujo.domain.errors import ConfigurationError

            raise ConfigurationError(f"actors (the Ray actor pool's size) must be >= 1, got {size}")
        self.size = size
        self.num_cpus = num_cpus
        self._slots: list[Slot] = []
        self._lock = threading.Lock()
        self._actor_class: Any = None

    def take(self, ray: Any) -> Slot:
        """Return the least busy actor, made first when all are busy and there is room."""
        with self._lock:
            if self.size is None:
                cpus = float(ray.cluster_resources().get("CPU", 1.0))
                self.size = max(1, int(cpus // (self.num_cpus or 1.0)))
            slot = min(self._slots, key=lambda s: s.busy, default=None)
            if slot is None or (slot.busy and len(self._slots) < self.size):
                slot = Slot(self._new(ray))
                self._slots.append(slot)
            slot.busy += 1
            return slot

    def done(self, slot: Slot) -> None:
        """Say that one step on ``slot`` has its answer."""
        with self._lock:
            slot.busy -= 1

    def retire(self, ray: Any, slot: Slot) -> None:
        """Take ``slot`` out of the pool and kill its actor (no restart); later steps get others."""
        with self._lock:
            if slot in self._slots:
                self._slots.remove(slot)
            slot.killed = True
        with contextlib.suppress(Exception):  # already dead: nothing to kill
            ray.kill(slot.actor, no_restart=True)

    def actors(self) -> list[Any]:
        """Return the live actors' handles (tests and diagnostics)."""
        with self._lock:
            return [slot.actor for slot in self._slots]

    def close(self) -> None:
        """Kill every actor of the pool; a later step makes new ones."""
        with self._lock:
            slots, self._slots = self._slots, []
        if not slots:
            return
        import ray

        for slot in slots:
            slot.killed = True
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)

    def _new(self, ray: Any) -> Any:
        if self._actor_class is None:
            from flujo.infra.ray_worker import LeafActor

            options: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0}
            if self.num_cpus is not None:
                options["num_cpus"] = self.num_cpus
            self._actor_class = ray.remote(**options)(LeafActor)
        return self._actor_class.options(scheduling_strategy="SPREAD").remote()
