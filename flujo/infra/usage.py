"""Per-run usage accounting."""

from __future__ import annotations

import threading

__all__ = ["ThreadSafeMeter"]


class ThreadSafeMeter:
    """Sums cost and tokens; steps running in worker threads may add concurrently."""

    __slots__ = ("_cost", "_lock", "_tokens")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cost = 0.0
        self._tokens = 0

    def add(self, cost_usd: float, tokens: int) -> None:
        """Add one step's usage."""
        with self._lock:
            self._cost += cost_usd
            self._tokens += tokens

    def totals(self) -> tuple[float, int]:
        """Return ``(cost_usd, tokens)`` so far."""
        with self._lock:
            return self._cost, self._tokens
