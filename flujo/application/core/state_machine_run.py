"""How a state machine runs: one state at a time over the shared context, each in its own scope.

A state runs its pipeline in an isolating child scope of the construct's scope, on a
copy of the context that is written back when the state finishes: a failed state
leaves neither plain context changes nor ``set()`` values behind. The construct's
context is what the next transition is read from.

A top-level state machine of a durable run records its progress through the run's
``Progress`` after every transition — the state to run next, its input and the moves
made — committing what the finished states did with that record, so a resumed run
(or a retry of the step) goes on in the state it was in without redoing the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.application.core.nesting import current_scope, run_body, summary
from flujo.application.core.scope import Scope
from flujo.domain.dsl.state_machine import StateMachineStep
from flujo.domain.errors import ControlFlowError
from flujo.domain.models import StepResult
from flujo.domain.state_access import ACCESS

if TYPE_CHECKING:
    from flujo.application.core.control_flow import Progress
    from flujo.application.core.executor_core import ExecutorCore

__all__ = ["run_state_machine"]


def _label(step: StateMachineStep) -> str:
    return f"state_machine {step.name!r}"


def _field_default(step: StateMachineStep, context: BaseModel) -> Any:
    """Return what the ``next_state_from`` field is cleared to before each state."""
    assert step.next_state_from is not None
    info = type(context).model_fields[step.next_state_from]
    return info.get_default(call_default_factory=True)


def _check_field(step: StateMachineStep, context: BaseModel | None) -> None:
    field = step.next_state_from
    if field is None:
        return
    if context is None or field not in type(context).model_fields:
        model = "no context" if context is None else f"context {type(context).__name__}"
        raise ControlFlowError(
            f"{_label(step)}: next_state_from names the field {field!r}, but the run has "
            f"{model} with no such field; add it to the context model"
        )


def _from_field(
    step: StateMachineStep, state: str, context: BaseModel | None, allowed: list[str]
) -> str:
    assert step.next_state_from is not None and context is not None
    field = step.next_state_from
    value = getattr(context, field)
    if value == _field_default(step, context):
        raise ControlFlowError(
            f"{_label(step)}: state {state!r} did not set context.{field} to the next state; "
            f"set it to one of {allowed}"
        )
    if not isinstance(value, str) or value not in allowed:
        raise ControlFlowError(
            f"{_label(step)}: state {state!r} set context.{field} to {value!r}, which is not "
            f"a state it may move to; known: {allowed}"
        )
    return value


def next_state(step: StateMachineStep, state: str, output: Any, context: BaseModel | None) -> str:
    """Return the state after ``state``, from its transition entry, its output or the context."""
    entry = step.transitions.get(state)
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        if isinstance(output, str) and output in entry:
            return entry[output]
        raise ControlFlowError(
            f"{_label(step)}: state {state!r} returned {output!r}, which is none of the "
            f"outputs its transitions map: {list(entry)}"
        )
    return _from_field(step, state, context, step.targets(state))


async def _run_state(
    executor: ExecutorCore,
    step: StateMachineStep,
    state: str,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
) -> Any:
    """Run one state in its own scope; commit it if it finished, drop it if not."""
    scope = current_scope()
    child = Scope(executor.session, scope, f"state {state!r}", context, isolate=True)
    if step.next_state_from is not None and child.context is not None:
        # Cleared in the state's copy, so a value left by an earlier state cannot move it.
        setattr(child.context, step.next_state_from, _field_default(step, child.context))
    nested: list[StepResult] = []
    token = ACCESS.set(child)
    try:
        out = await run_body(
            executor,
            f"{step.name}.{state}",
            step.states[state],
            data,
            child.context,
            resources,
            nested,
        )
    except ControlFlowError as exc:
        child.rollback(f"state {state!r} of {step.name!r}, which read it, failed")
        history.append(summary(state, None, False, nested, str(exc)))
        raise ControlFlowError(f"{_label(step)}: state {state!r} failed: {exc}") from exc
    except BaseException:
        child.rollback(f"state {state!r} of {step.name!r}, which read it, was stopped")
        history.append(summary(state, None, False, nested, "stopped"))
        raise
    finally:
        ACCESS.reset(token)
    child.commit()
    history.append(summary(state, out, True, nested, None))
    return out


async def run_state_machine(
    executor: ExecutorCore,
    step: StateMachineStep,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
    progress: Progress | None,
) -> Any:
    """Run the machine from ``start`` (or where its stored progress says) to an end state."""
    _check_field(step, context)
    state, moves = step.start, 0
    stored = None
    if progress is not None:
        stored = progress.last if progress.last is not None else progress.resumed
    if stored is not None and stored.get("kind") == "state_machine":
        state, moves, data = str(stored["state"]), int(stored["moves"]), stored["output"]
    scope = current_scope()
    while True:
        if state in step.states:
            data = await _run_state(executor, step, state, data, context, resources, history)
        if state in step.end:
            return data
        target = next_state(step, state, data, context)
        if moves >= step.max_transitions:
            raise ControlFlowError(
                f"{_label(step)} reached max_transitions={step.max_transitions}: the move "
                f"from {state!r} to {target!r} would be move {moves + 1}"
            )
        state, moves = target, moves + 1
        if progress is not None:
            partial = {"kind": "state_machine", "state": state, "moves": moves, "output": data}
            await progress.record(partial, scope)
