"""The one error tree of flujo.

Every error flujo raises on purpose derives from :class:`FlujoError`, split by
the phase in which it happens::

    FlujoError
    ├── ConfigurationError            bad input found before anything runs
    │   └── UncacheableInputError     a cached step's input cannot be made into a key
    ├── ExecutionError                a run could not go on
    │   ├── StepTimeoutError          one step attempt ran past its timeout
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
        └── StateBackendError           a run-state backend failed or holds bad data
            ├── RunNotFoundError        no run with that id
            └── StateCorruptError       a stored value does not fit (type, range, status,
                                        schema version): names the run, column and value

Errors raised by third-party libraries are converted at the boundary of the
part that uses them, with the original exception chained as ``__cause__``.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = [
    "ConfigurationError",
    "ControlFlowError",
    "ExecutionError",
    "FlujoError",
    "HumanInputError",
    "MergeConflictError",
    "ParallelConflictError",
    "PipelineAbortSignal",
    "ReferenceNotHydratedError",
    "ReferenceNotWritableError",
    "ResumeError",
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
]


class FlujoError(Exception):
    """Base of every error flujo raises on purpose."""


class ConfigurationError(FlujoError):
    """Bad input found before anything runs: a misspelt setting, a bad pipeline."""


class UncacheableInputError(ConfigurationError):
    """A cached step's input (or key) cannot be serialized into a cache key."""


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
