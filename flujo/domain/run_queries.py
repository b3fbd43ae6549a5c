"""The arguments of the queries on stored runs (list, prune), checked before any store sees them.

The runner and every built-in backend call these, so a status that is not one, a
lone string where a list of statuses belongs, or a limit or age of the wrong kind
is a ``ConfigurationError`` saying what is allowed, never an empty answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta
from typing import cast

from flujo.domain.errors import ConfigurationError
from flujo.domain.models import RUN_STATUSES, RunStatus

__all__ = ["check_age", "check_cutoff", "check_limit", "check_status", "check_statuses"]


def _allowed() -> str:
    return ", ".join(repr(s) for s in RUN_STATUSES)


def check_status(status: object) -> RunStatus | None:
    """Return ``status`` if it is ``None`` or a run status; ``ConfigurationError`` if not."""
    if status is None or (isinstance(status, str) and status in RUN_STATUSES):
        return status
    raise ConfigurationError(f"status must be None or one of {_allowed()}, got {status!r}")


def check_statuses(statuses: object) -> tuple[RunStatus, ...]:
    """Return ``statuses`` as a tuple of run statuses (a list, tuple or set of them).

    A lone string is refused, not read letter by letter.
    """
    if isinstance(statuses, str | bytes) or not isinstance(statuses, Iterable):
        raise ConfigurationError(
            f"statuses must be a list, tuple or set of run statuses ({_allowed()}), got "
            f"{statuses!r}"
            + (f"; write ({statuses!r},) for one" if isinstance(statuses, str) else "")
        )
    chosen = tuple(statuses)
    unknown = [s for s in chosen if not (isinstance(s, str) and s in RUN_STATUSES)]
    if unknown:
        raise ConfigurationError(
            f"statuses holds {', '.join(repr(s) for s in unknown)}, which "
            f"{'is not a run status' if len(unknown) == 1 else 'are not run statuses'}; "
            f"allowed: {_allowed()}"
        )
    return cast("tuple[RunStatus, ...]", chosen)


def check_limit(limit: object) -> int:
    """Return ``limit`` if it is a whole number > 0 (``bool`` is not one)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ConfigurationError(f"limit must be a whole number > 0, got {limit!r}")
    return limit


def check_cutoff(older_than: object) -> float:
    """Return ``older_than``, a backend's ``prune`` cutoff, if it is a finite Unix time."""
    if (
        isinstance(older_than, bool)
        or not isinstance(older_than, int | float)
        or not math.isfinite(older_than)
    ):
        raise ConfigurationError(
            f"older_than must be a finite Unix time (seconds), got {older_than!r}"
        )
    return float(older_than)


def check_age(older_than: object) -> float:
    """Return the runner's ``prune`` age ``older_than`` in seconds (a timedelta or seconds >= 0)."""
    seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise ConfigurationError(
            "older_than must be a timedelta or a number of seconds >= 0, e.g. "
            f"timedelta(days=30) or 3600, got {older_than!r}"
        )
    return float(seconds)
