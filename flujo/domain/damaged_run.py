"""``DamagedRun``: a stored run that cannot be read, listed beside the readable ones."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from flujo.domain.errors import StateCorruptError

__all__ = ["DamagedRun"]


class DamagedRun(BaseModel):
    """A stored run that cannot be read, as ``Flujo.list_runs`` reports it among the others.

    ``get_run`` and ``resume_async`` of it raise the ``StateCorruptError`` it was made from.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    run_id: str
    status: Literal["damaged"] = "damaged"
    column: str
    """The stored column that does not fit."""
    found: str
    """What the column holds, shortened."""
    error: str
    """The whole message of the ``StateCorruptError``."""

    @classmethod
    def from_error(cls, run_id: str, error: StateCorruptError) -> DamagedRun:
        """Describe the run ``run_id`` that ``error`` was raised for."""
        return cls(run_id=run_id, column=error.column, found=error.found, error=str(error))
