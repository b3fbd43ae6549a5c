"""``Faults``: which calls of one operation fail or hang, and the counting behind them.

A ``Faults`` schedule numbers the calls of one operation (a provider's ``save``, a
backend's ``checkpoint``) from 1, counted from when it was installed, and says which
of them raise before reaching the wrapped part, which reach it and then raise (the
write landed, the reply was lost), and which hang. ``FaultyProvider`` and
``FaultyStateBackend`` hold one schedule per operation.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Faults", "InjectedFault"]


class InjectedFault(ConnectionError):
    """The error a fault schedule raises unless it was given another (a lost connection)."""


Action = Literal["fail", "fail_after", "hang"]
"""What a schedule does to one call; ``None`` lets the call through."""


def _call_numbers(value: Collection[int], what: str) -> frozenset[int]:
    if isinstance(value, int | str | bytes):
        raise TypeError(
            f"Faults({what}=...) takes a collection of call numbers such as {{2}} or "
            f"range(1, 4), got {value!r}"
        )
    numbers = frozenset(value)
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(
                f"Faults({what}=...): calls are numbered from 1, got {number!r} in {value!r}"
            )
    return numbers


@dataclass(frozen=True, slots=True)
class Faults:
    """Which calls of one operation fail or hang, numbered from 1 since it was installed.

    ``fail``: calls that raise before reaching the wrapped part. ``fail_after``: calls
    that reach it and then raise, as when a write lands but its reply is lost.
    ``fail_from``: every call from that one on raises (a store that went away).
    ``hang``: calls that never answer, until cancelled (a deadline ends them), or that
    answer after ``hang_s`` seconds and then go through. ``error`` is what a failing
    call raises: an exception instance (raised as is) or class (made with a message
    naming the operation and call); by default an ``InjectedFault`` from a provider
    and a ``StateBackendError`` from a state backend, which is what their protocols
    allow. ``Faults.first(n)``, ``Faults.nth(...)`` and ``Faults.always()`` are the
    common schedules.
    """

    fail: Collection[int] = ()
    fail_after: Collection[int] = ()
    fail_from: int | None = None
    hang: Collection[int] = ()
    hang_s: float | None = None
    error: BaseException | type[BaseException] | None = None

    def __post_init__(self) -> None:
        sets = {
            "fail": _call_numbers(self.fail, "fail"),
            "fail_after": _call_numbers(self.fail_after, "fail_after"),
            "hang": _call_numbers(self.hang, "hang"),
        }
        for name, numbers in sets.items():
            object.__setattr__(self, name, numbers)
        names = list(sets)
        for index, first in enumerate(names):
            for second in names[index + 1 :]:
                both = sets[first] & sets[second]
                if both:
                    raise ValueError(
                        f"Faults: call {min(both)} is in both {first} and {second}; "
                        "give each call one fault"
                    )
        start = self.fail_from
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            raise ValueError(f"Faults(fail_from=...) takes a call number, got {start!r}")
        if start is not None and start < 1:
            raise ValueError(f"Faults(fail_from=...): calls are numbered from 1, got {start}")
        if self.hang_s is not None and not self.hang_s >= 0:
            raise ValueError(f"Faults(hang_s=...) must be >= 0 seconds, got {self.hang_s!r}")
        if self.error is not None and not _is_error(self.error):
            raise TypeError(
                f"Faults(error=...) takes an exception or an exception class, got {self.error!r}"
            )

    @classmethod
    def first(
        cls, calls: int, *, error: BaseException | type[BaseException] | None = None
    ) -> Faults:
        """Fail the first ``calls`` calls, then recover: every later call goes through."""
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 0:
            raise ValueError(f"Faults.first(...) takes a count >= 0, got {calls!r}")
        return cls(fail=range(1, calls + 1), error=error)

    @classmethod
    def nth(cls, *calls: int, error: BaseException | type[BaseException] | None = None) -> Faults:
        """Fail exactly the given calls (numbered from 1); the others go through."""
        if not calls:
            raise ValueError("Faults.nth(...) needs at least one call number, e.g. Faults.nth(2)")
        return cls(fail=calls, error=error)

    @classmethod
    def always(cls, *, error: BaseException | type[BaseException] | None = None) -> Faults:
        """Fail every call until the schedule is replaced (a store that is down)."""
        return cls(fail_from=1, error=error)

    def action(self, call: int) -> Action | None:
        """Return what call number ``call`` (from 1) meets: a fault, or ``None`` to go through."""
        if call in self.fail or (self.fail_from is not None and call >= self.fail_from):
            return "fail"
        if call in self.fail_after:
            return "fail_after"
        if call in self.hang:
            return "hang"
        return None

    def raised(self, operation: str, call: int, default: type[BaseException]) -> BaseException:
        """Return the exception call ``call`` of ``operation`` raises."""
        error = self.error
        if isinstance(error, BaseException):
            return error
        made = default if error is None else error
        return made(f"injected fault: {operation} call {call}")


def _is_error(value: object) -> bool:
    return isinstance(value, BaseException) or (
        isinstance(value, type) and issubclass(value, BaseException)
    )


@dataclass
class FaultPlan:
    """The schedules of a wrapper's operations and how many calls each has had.

    ``calls`` counts every call of each operation since the wrapper was made;
    a schedule counts its own calls from when it was installed.
    """

    operations: tuple[str, ...]
    default_error: type[BaseException]
    calls: dict[str, int] = field(default_factory=dict)
    _installed: dict[str, tuple[Faults, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.calls = dict.fromkeys(self.operations, 0)

    def install(self, faults: Mapping[str, Faults | None]) -> None:
        """Install each schedule (``None`` removes one); its calls are counted from here."""
        for operation, schedule in faults.items():
            if operation not in self.operations:
                raise ValueError(
                    f"no operation {operation!r} to inject faults into; "
                    f"the operations are {', '.join(self.operations)}"
                )
            if schedule is not None and not isinstance(schedule, Faults):
                raise TypeError(f"{operation}= takes a Faults schedule or None, got {schedule!r}")
        with self._lock:
            for operation, schedule in faults.items():
                if schedule is None:
                    self._installed.pop(operation, None)
                else:
                    self._installed[operation] = (schedule, self.calls[operation])

    def clear(self) -> None:
        """Remove every schedule: from now on every call goes through."""
        with self._lock:
            self._installed.clear()

    def schedules(self) -> dict[str, Faults]:
        """Return the schedules installed now, by operation."""
        with self._lock:
            return {op: schedule for op, (schedule, _) in self._installed.items()}

    def _next(self, operation: str) -> tuple[Faults | None, int]:
        with self._lock:  # runs from many threads count each call once
            self.calls[operation] += 1
            installed = self._installed.get(operation)
            if installed is None:
                return None, 0
            schedule, offset = installed
            return schedule, self.calls[operation] - offset

    async def before(self, operation: str) -> Callable[[], None]:
        """Count one call; raise or hang as scheduled; return what to run after it landed."""
        schedule, call = self._next(operation)
        if schedule is None:
            return _nothing
        action = schedule.action(call)
        if action == "fail":
            raise schedule.raised(operation, call, self.default_error)
        if action == "hang":
            if schedule.hang_s is None:
                await asyncio.Event().wait()  # until cancelled: a deadline or the test ends it
            await asyncio.sleep(schedule.hang_s or 0.0)
        if action == "fail_after":
            error = schedule.raised(operation, call, self.default_error)

            def lose_reply() -> None:
                raise error

            return lose_reply
        return _nothing


def _nothing() -> None:
    return None
