"""Values a run's records cannot hold as JSON: a description stands in, or the step fails.

A step output JSON cannot hold is stored as a description (its ``repr``), with a
warning, and the run goes on. One that cannot even be described — its ``repr``
raises — cannot be stored at all: the step fails, naming itself and the type, so
the run ends ``failed`` and stored instead of crashing with the ``repr``'s error.
"""

from __future__ import annotations

from typing import Any

from flujo.domain.interfaces import Serializer
from flujo.domain.models import StepResult

__all__ = [
    "UNSERIALIZABLE",
    "UnstorableOutputError",
    "describe",
    "description",
    "storable_payload",
]

UNSERIALIZABLE = "__unserializable__"
"""Key of the placeholder stored for a value JSON cannot hold."""


class UnstorableOutputError(Exception):
    """A step's output can be neither stored as JSON nor described (engine-internal).

    ``failed(result)`` is the step's result as a failure saying so.
    """

    def failed(self, result: StepResult) -> StepResult:
        """Return ``result`` failed, with this error as its feedback and no output."""
        return StepResult.trusted(
            result.name,
            None,
            False,
            result.attempts,
            result.latency_s,
            str(self),
            result.cost_usd,
            result.token_counts,
            step_history=result.step_history,
        )


def describe(value: Any) -> str | None:
    """Return ``repr(value)``, or ``None`` when that raises."""
    return _repr(value)[0]


def _repr(value: Any) -> tuple[str | None, BaseException | None]:
    try:
        text = repr(value)
    except Exception as exc:
        return None, exc
    return text, None


def description(value: Any) -> dict[str, str]:
    """Return the placeholder stored for ``value``; never raises."""
    text = describe(value)
    if text is None:
        text = f"<{_type_name(value)} object; repr() failed>"
    return {UNSERIALIZABLE: text}


def _type_name(value: Any) -> str:
    kind = type(value)
    return (
        f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__name__
    )


def _why(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return type(exc).__name__


def _encodes(serializer: Serializer, value: Any) -> BaseException | None:
    try:
        serializer.dumps(value)
    except Exception as exc:
        return exc
    return None


def storable_payload(
    payload: dict[str, Any], serializer: Serializer, step_name: str
) -> dict[str, Any]:
    """Return ``payload`` (a stored step result) with what JSON cannot hold described.

    The step's output and the outputs of its nested steps become descriptions, and
    progress that cannot be stored is left out (a resumed construct starts over).
    Raises ``UnstorableOutputError`` when the step's output cannot be described.
    """
    fixed = dict(payload)
    output = fixed.get("output")
    problem = _encodes(serializer, output)
    if problem is not None:
        text, failure = _repr(output)
        if text is None:
            raise UnstorableOutputError(
                f"the output of step {step_name!r} cannot be stored in the run's checkpoint: "
                f"a {_type_name(output)} is not JSON-serializable ({_why(problem)}) and "
                f"cannot be described either (repr() raised {_why(failure) if failure else '?'})"
            )
        fixed["output"] = {UNSERIALIZABLE: text}
    fixed["step_history"] = [
        _nested(serializer, nested) for nested in fixed.get("step_history") or []
    ]
    if "partial" in fixed and _encodes(serializer, fixed["partial"]) is not None:
        del fixed["partial"]
    return fixed


def _nested(serializer: Serializer, payload: dict[str, Any]) -> dict[str, Any]:
    fixed = dict(payload)
    if _encodes(serializer, fixed.get("output")) is not None:
        fixed["output"] = description(fixed.get("output"))
    fixed["step_history"] = [_nested(serializer, n) for n in fixed.get("step_history") or []]
    return fixed
