"""The one error tree of flujo.

Every error flujo raises on purpose derives from :class:`FlujoError`, split by
the phase in which it happens::

    FlujoError
    ├── ConfigurationError            bad input found before anything runs
    │   ├── UncacheableInputError     a cached step's input cannot be made into a key
    │   └── PipelineFileError         a pipeline file does not check: every Finding in it
    ├── ExecutionError                a run could not go on
    │   ├── StepTimeoutError          one step attempt ran past its timeout
    │   ├── WorkerLostError           the worker or node running a shipped step died
    │   ├── UsageLimitExceededError   a run spent more than its UsageLimits allow
    │   ├── ResumeError               a run cannot be resumed (completed, other pipeline)
    │   ├── HumanInputError           human input failed the step's input_model
    │   ├── ValidationFailedError     a validator rejected a step's output
    │   ├── ControlFlowError          a nested step of a branch/loop/parallel/map failed
    │   │   └── MergeConflictError    two child scopes wrote the same path or reference
    │   │       └── ParallelConflictError  ... two parallel branches, in particular
    │   └── PipelineAbortSignal       raised by a hook to stop the run on purpose
    └── StateError                    managed state and durable run state
        ├── ReferenceNotHydratedError   a ContextReference read before it was loaded
        ├── ReferenceNotWritableError   set() on a reference a parallel branch may only read
        ├── StateLoadError              a StateProvider failed to load a reference
        ├── StateSaveError              a StateProvider failed to save a reference
        ├── StateConflictError          another writer got there first, or a pending step's
        │                               saves cannot be told apart on resume
        ├── RunLeasedError              another process owns the run (its lease has not expired)
        ├── RunExistsError              a new run was given the id of a stored run
        └── StateBackendError           a run-state backend failed or holds bad data
            ├── RunNotFoundError        no run with that id
            └── StateCorruptError       a stored value does not fit (type, range, status,
                                        schema version): names the run, column and value

Errors raised by third-party libraries are converted at the boundary of the
part that uses them, with the original exception chained as ``__cause__``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ConfigurationError",
    "ControlFlowError",
    "ExecutionError",
    "Finding",
    "FlujoError",
    "HumanInputError",
    "MergeConflictError",
    "ParallelConflictError",
    "PipelineAbortSignal",
    "PipelineFileError",
    "ReferenceNotHydratedError",
    "ReferenceNotWritableError",
    "ResumeError",
    "RunExistsError",
    "RunLeasedError",
    "RunNotFoundError",
    "StateBackendError",
    "StateConflictError",
    "StateCorruptError",
    "StateError",
    "StateLoadError",
    "StateSaveError",
    "StepTimeoutError",
    "UncacheableInputError",
    "UsageLimitExceededError",
    "ValidationFailedError",
    "WorkerLostError",
]


class FlujoError(Exception):
    """Base of every error flujo raises on purpose."""


class ConfigurationError(FlujoError):
    """Bad input found before anything runs: a misspelt setting, a bad pipeline."""


class UncacheableInputError(ConfigurationError):
    """A cached step's input (or key) cannot be serialized into a cache key."""


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """One thing wrong in a pipeline file: where (1-based line and column) and what."""

    file: str
    """The file as the user reaches it: the path given, or an import joined onto it."""
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class PipelineFileError(ConfigurationError):
    """A pipeline file (or a file it imports) does not check; ``findings`` holds every problem.

    The message lists them all, one ``file:line:column: message`` a line.
    """

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = tuple(findings)
        count = len(self.findings)
        listed = "\n".join(str(finding) for finding in self.findings)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in pipeline files:\n{listed}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.findings,))


class ExecutionError(FlujoError):
    """A run could not go on."""


class ValidationFailedError(ExecutionError):
    """A validator rejected a step's output; the attempt counts as failed."""


class ControlFlowError(ExecutionError):
    """A step nested in a branch, loop, parallel or map step failed, or the construct did."""


class MergeConflictError(ControlFlowError):
    """Two child scopes (branches, items, iterations) wrote one path or reference differently.

    The message names both writers and the path; disjoint writes merge without it.
    """


class ParallelConflictError(MergeConflictError):
    """Two parallel branches changed the same context path to different values."""


class PipelineAbortSignal(ExecutionError):
    """Raise from a hook to stop the run on purpose (other hook errors are only reported)."""


class StepTimeoutError(ExecutionError):
    """One attempt of a step ran longer than its ``timeout_s``."""


class WorkerLostError(ExecutionError):
    """The worker (or node) running a shipped step died before it answered."""


class UsageLimitExceededError(ExecutionError):
    """A run spent more cost or tokens than its ``UsageLimits`` allow."""


class ResumeError(ExecutionError):
    """A run cannot be resumed: it completed, or belongs to another pipeline."""


class HumanInputError(ExecutionError):
    """Input given to a paused run failed its step's ``input_model``; the run stays paused."""


class StateError(FlujoError):
    """Managed state or durable run state failed."""


class ReferenceNotHydratedError(StateError):
    """A ``ContextReference`` was read before its value was loaded."""


class ReferenceNotWritableError(StateError):
    """``set()`` was called on a reference a parallel branch may only read."""


class StateLoadError(StateError):
    """A ``StateProvider`` failed to load the value of a reference."""


class StateSaveError(StateError):
    """A ``StateProvider`` failed to save the value of a reference."""


class StateConflictError(StateError):
    """A compare-and-swap save lost a race, or a pending step's saves cannot be told apart.

    On resume it names the step, its references and which of them were written;
    ``resume_async(..., on_pending="rerun" | "accept")`` decides explicitly.
    """


class StateBackendError(StateError):
    """A run-state backend failed, or holds a record it cannot read."""


class RunNotFoundError(StateBackendError):
    """No run with the given id exists in the state backend."""


class StateCorruptError(StateBackendError):
    """A stored value does not fit what flujo writes: wrong type, out of range, unknown status.

    Raised where a store's values are read back, before anything else uses them. The
    message names the run (or the provider's key), the column and what was found;
    ``run_id``, ``column`` and ``found`` hold the same for programs.
    """

    def __init__(
        self, message: str, *, run_id: str | None = None, column: str = "", found: str = ""
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.column = column
        self.found = found

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Keyword-only fields survive pickling (a run's errors may cross processes).
        rebuild = functools.partial(
            type(self), run_id=self.run_id, column=self.column, found=self.found
        )
        return rebuild, self.args


class RunLeasedError(StateError):
    """Another process owns the run: it holds the run's lease, which has not expired.

    Raised by ``resume_async`` (and ``run_async(..., replace=True)``) of a run that
    is being driven elsewhere, and by a running run that finds its own lease taken
    over: it stops before its next commit instead of writing over the new owner.
    ``owner`` and ``lease_until`` (a Unix time) say who holds it and until when.
    """

    def __init__(
        self, message: str, *, run_id: str, owner: str | None, lease_until: float | None
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.owner = owner
        self.lease_until = lease_until

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields: the default pickling would call the class with the message only.
        return (_leased, (str(self), self.run_id, self.owner, self.lease_until))

    @classmethod
    def held(
        cls, run_id: str, owner: str | None, lease_until: float | None, now: float | None
    ) -> RunLeasedError:
        """Return the error for a run ``owner`` holds until ``lease_until``, seen at ``now``."""
        if owner is None:
            return cls(
                f"run {run_id!r} has no owner: the process that held it has ended it",
                run_id=run_id,
                owner=None,
                lease_until=None,
            )
        if lease_until is None:
            until = "with no expiry"
        else:
            try:
                moment = datetime.fromtimestamp(lease_until, tz=UTC).isoformat(timespec="seconds")
            except (OverflowError, OSError, ValueError):  # past year 9999: a clock gone wrong
                moment = f"{lease_until:.0f} (seconds since the epoch)"
            left = "" if now is None else f" (in {max(lease_until - now, 0.0):.1f} s)"
            until = f"until {moment}{left}"
        return cls(
            f"run {run_id!r} is leased by {owner!r} {until}: another process is driving it; "
            "resume it once that process has ended it, or after the lease expires if it died",
            run_id=run_id,
            owner=owner,
            lease_until=lease_until,
        )


def _leased(
    message: str, run_id: str, owner: str | None, lease_until: float | None
) -> RunLeasedError:
    return RunLeasedError(message, run_id=run_id, owner=owner, lease_until=lease_until)


class RunExistsError(StateError):
    """A new run was given the id of a stored run; ``replace=True`` deletes the old one first."""

    @classmethod
    def stored(cls, run_id: str, status: str) -> RunExistsError:
        """Return the error for starting a run with the id of the stored run ``run_id``."""
        return cls(
            f"run {run_id!r} is already stored (status {status!r}): resume it with "
            "resume_async, start the new run with another run id, or pass replace=True "
            "(flujo run --replace) to delete the stored run and start over"
        )
