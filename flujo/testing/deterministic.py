"""A clock a test moves by hand and ids that count, for the container's ``clock``/``run_id``.

Install them with ``override_providers(container, clock=FakeClock(),
run_id=SequentialIds("run"))`` (or the pytest plugin's ``flujo_clock`` and
``flujo_run_ids`` fixtures): run records then carry the times and ids a test chose.
"""

from __future__ import annotations

import math
import threading

__all__ = ["FakeClock", "SequentialIds"]

DEFAULT_START = 1_767_225_600.0
"""2026-01-01T00:00:00Z: where a ``FakeClock`` starts unless told."""


class FakeClock:
    """A clock that reads ``now`` (Unix seconds) and moves only when told to.

    Call it for the time, as flujo calls the container's ``clock``. ``advance(s)``
    moves it on, ``set(t)`` puts it anywhere. With ``tick`` > 0 every reading also
    moves it on by ``tick`` seconds, so each record gets a time of its own and
    listings ordered by time have one order. Safe to read from many threads.
    """

    def __init__(self, start: float = DEFAULT_START, *, tick: float = 0.0) -> None:
        self._now = _seconds(start, "start")
        self.tick = _seconds(tick, "tick")
        if self.tick < 0:
            raise ValueError(f"FakeClock(tick=...) must be >= 0 seconds, got {tick!r}")
        self._lock = threading.Lock()

    @property
    def now(self) -> float:
        """The time the next reading gives (reading this does not tick)."""
        return self._now

    def __call__(self) -> float:
        """Return the time, then move on by ``tick``."""
        with self._lock:
            now = self._now
            self._now = now + self.tick
            return now

    def advance(self, seconds: float) -> float:
        """Move the clock on by ``seconds`` (>= 0); return the new time."""
        step = _seconds(seconds, "advance")
        if step < 0:
            raise ValueError(
                f"FakeClock.advance({seconds!r}): a clock moves forward; use set() to go back"
            )
        with self._lock:
            self._now += step
            return self._now

    def set(self, now: float) -> None:
        """Put the clock at ``now`` (Unix seconds), earlier or later."""
        value = _seconds(now, "set")
        with self._lock:
            self._now = value

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, tick={self.tick!r})"


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"FakeClock {what}: expected a finite number of seconds, got {value!r}")
    return float(value)


class SequentialIds:
    """Ids that count: ``SequentialIds("run")`` gives ``"run-1"``, ``"run-2"``, ...

    Call it for the next id, as flujo calls the container's ``run_id`` and
    ``owner_id``. ``issued`` is how many it gave. Safe to call from many threads:
    no two calls get one id.
    """

    def __init__(self, prefix: str = "run", *, start: int = 1) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"SequentialIds needs a non-empty prefix, got {prefix!r}")
        if isinstance(start, bool) or not isinstance(start, int):
            raise ValueError(f"SequentialIds(start=...) takes an integer, got {start!r}")
        self.prefix = prefix
        self._next = start
        self.issued = 0
        """How many ids were given."""
        self._lock = threading.Lock()

    def __call__(self) -> str:
        """Return the next id."""
        with self._lock:
            number = self._next
            self._next += 1
            self.issued += 1
        return f"{self.prefix}-{number}"

    def __repr__(self) -> str:
        return f"SequentialIds({self.prefix!r}, next={self._next})"
