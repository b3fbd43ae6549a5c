"""One-line descriptions of pydantic validation errors, for messages users act on."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["summarize"]


def summarize(exc: ValidationError) -> str:
    """Return ``field.path: message; ...`` for every error in ``exc``, on one line."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors()
    )
