"""``Step.state_machine``: named states, each a pipeline, moved between by a transition table.

What the construct *is* lives here; how it runs lives in the engine. The meaning the
engine gives it:

- The machine starts in ``start`` with the step's input. A state runs its pipeline;
  its output is the next state's input, and the output of the last state run is the
  construct's output.
- After a state has run, its entry in ``transitions`` says where to go:

  ====================  =====================================================================
  entry                 next state
  ====================  =====================================================================
  ``"b"``               always ``b``
  ``{"ok": "b", ...}``  the state the state's *output* names through the mapping (the output
                        must be one of its keys)
  ``["b", "c"]``        the state the context field ``next_state_from`` names, one of these
  no entry              the state the context field ``next_state_from`` names, any of them
  ====================  =====================================================================

- An ``end`` state stops the machine. One that also has a pipeline in ``states`` runs
  it first; one without ends the machine on the output it was reached with.
- ``max_transitions`` bounds the moves from one state to the next (moving into an end
  state counts); the move after the last allowed one fails the step.

``state_machine_problems`` finds what is wrong with a machine's declaration — unknown
state names, states or end states that cannot be reached from ``start``, states from
which no end state can be reached, a bad ``max_transitions`` — all at once, each with
where in the arguments it is (the pipeline-file loader turns that into a line and a
column). ``StateMachineStep`` raises them as one ``ConfigurationError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

from flujo.domain.dsl.control_flow import Body, CompositeStep, as_pipeline
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError
from flujo.domain.policies import StepOptions

__all__ = [
    "Problem",
    "StateMachineStep",
    "Transition",
    "reachable_states",
    "state_machine_problems",
    "transition_targets",
]

Transition = str | Sequence[str] | Mapping[str, str]
"""A ``transitions`` entry: one next state, the states a context field chooses among, or a
mapping from the state's output to the next state."""

Where = tuple[str | int, ...]
"""Where a problem is in the constructor's arguments: ``("end", 1)``, ``("transitions", "a")``."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a state machine's declaration, and where it is."""

    where: Where
    message: str


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def transition_targets(
    state: str, transitions: Mapping[str, Any], every: Sequence[str]
) -> list[str] | None:
    """Return the states ``state`` may move to, ``every`` for a missing entry; ``None`` if bad."""
    entry = transitions.get(state)
    if entry is None:
        return list(every)
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, Mapping):
        return [target for target in entry.values() if isinstance(target, str)]
    if isinstance(entry, Sequence):
        return [target for target in entry if isinstance(target, str)]
    return None


def reachable_states(
    start: str, ends: Sequence[str], transitions: Mapping[str, Any], every: Sequence[str]
) -> list[str]:
    """Return the states reachable from ``start``, in the order found (``start`` first)."""
    seen = [start]
    index = 0
    while index < len(seen):
        state = seen[index]
        index += 1
        if state in ends:
            continue  # the machine stops there
        for target in transition_targets(state, transitions, every) or []:
            if target not in seen:
                seen.append(target)
    return seen


def state_machine_problems(
    states: Mapping[str, Any],
    start: Any,
    end: Any,
    transitions: Mapping[str, Any],
    next_state_from: Any,
    max_transitions: Any,
) -> list[Problem]:
    """Return every problem of a machine's declaration (an empty list: it is sound)."""
    problems: list[Problem] = []
    names = [name for name in states if isinstance(name, str)]
    if isinstance(max_transitions, bool) or not isinstance(max_transitions, int):
        problems.append(
            Problem(
                ("max_transitions",), f"max_transitions must be an int, got {max_transitions!r}"
            )
        )
    elif max_transitions <= 0:
        problems.append(
            Problem(("max_transitions",), f"max_transitions must be > 0, got {max_transitions}")
        )
    if next_state_from is not None and (
        not isinstance(next_state_from, str) or not next_state_from.isidentifier()
    ):
        problems.append(
            Problem(
                ("next_state_from",),
                f"next_state_from must name a context field, got {next_state_from!r}",
            )
        )
        next_state_from = None
    ends = _ends(end, problems)
    known = [*names, *(e for e in ends if e not in names)]
    if not isinstance(start, str) or start not in states:
        problems.append(
            Problem(
                ("start",), f"start {start!r} is not one of the states {names}{_hint(start, names)}"
            )
        )
    naming = _transition_problems(transitions, names, ends, known, next_state_from)
    problems += naming
    if naming or not ends or not isinstance(start, str) or start not in states:
        return problems  # reachability means little over unknown names
    return problems + _reach_problems(start, names, ends, transitions, known)


def _hint(name: Any, known: Sequence[str]) -> str:
    return _suggest(name, known) if isinstance(name, str) else ""


def _ends(end: Any, problems: list[Problem]) -> list[str]:
    if isinstance(end, str) or not isinstance(end, Sequence) or not end:
        problems.append(
            Problem(("end",), f"end must be a non-empty list of state names, got {end!r}")
        )
        return []
    ends: list[str] = []
    for index, name in enumerate(end):
        if not isinstance(name, str) or not name.strip():
            problems.append(Problem(("end", index), f"an end state must be a name, got {name!r}"))
        elif name in ends:
            problems.append(Problem(("end", index), f"end state {name!r} is listed twice"))
        else:
            ends.append(name)
    return ends


def _transition_problems(
    transitions: Mapping[str, Any],
    names: Sequence[str],
    ends: Sequence[str],
    known: Sequence[str],
    next_state_from: str | None,
) -> list[Problem]:
    problems: list[Problem] = []
    for state, entry in transitions.items():
        where: Where = ("transitions", state)
        if state in ends:
            problems.append(
                Problem(where, f"end state {state!r} has a transition; the machine stops there")
            )
            continue
        if state not in names:
            problems.append(
                Problem(
                    where,
                    f"transitions name state {state!r}, which is not one of the states "
                    f"{list(names)}{_hint(state, names)}",
                )
            )
            continue
        problems += _entry_problems(state, entry, where, known, next_state_from)
    for state in names:
        if state not in ends and state not in transitions and next_state_from is None:
            problems.append(
                Problem(
                    ("states", state),
                    f"state {state!r} has no way out: give it a transitions entry, set "
                    "next_state_from, or list it in end",
                )
            )
    return problems


def _entry_problems(
    state: str, entry: Any, where: Where, known: Sequence[str], next_state_from: str | None
) -> list[Problem]:
    problems: list[Problem] = []
    targets: list[tuple[Where, Any]]
    if isinstance(entry, str):
        targets = [(where, entry)]
    elif isinstance(entry, Mapping):
        if not entry:
            return [Problem(where, f"transitions[{state!r}] is an empty mapping")]
        targets = []
        for key, target in entry.items():
            if not isinstance(key, str):
                problems.append(
                    Problem(
                        (*where, key),
                        f"transitions[{state!r}]: output {key!r} is not a string; a state's "
                        "output is matched against string keys (quote it)",
                    )
                )
            targets.append(((*where, key), target))
    elif isinstance(entry, Sequence) and entry:
        if next_state_from is None:
            problems.append(
                Problem(
                    where,
                    f"transitions[{state!r}] lists the states a context field chooses among, "
                    "but next_state_from names no field",
                )
            )
        targets = [((*where, index), target) for index, target in enumerate(entry)]
    else:
        return [
            Problem(
                where,
                f"transitions[{state!r}] must be a state name, a list of state names or a "
                f"mapping from outputs to state names, got {entry!r}",
            )
        ]
    for place, target in targets:
        if not isinstance(target, str) or target not in known:
            problems.append(
                Problem(
                    place,
                    f"transition from {state!r} goes to {target!r}, which is not a state or an "
                    f"end state; known: {list(known)}{_hint(target, known)}",
                )
            )
    return problems


def _reach_problems(
    start: str,
    names: Sequence[str],
    ends: Sequence[str],
    transitions: Mapping[str, Any],
    known: Sequence[str],
) -> list[Problem]:
    problems: list[Problem] = []
    reached = reachable_states(start, ends, transitions, known)
    for state in names:
        if state not in reached and state not in ends:
            problems.append(
                Problem(("states", state), f"state {state!r} cannot be reached from {start!r}")
            )
    for index, name in enumerate(ends):
        if name not in reached:
            problems.append(
                Problem(("end", index), f"end state {name!r} cannot be reached from {start!r}")
            )
    for state in reached:
        if state in ends:
            continue
        if not any(e in reachable_states(state, ends, transitions, known) for e in ends):
            problems.append(
                Problem(
                    ("states", state),
                    f"from state {state!r} no end state can be reached; the machine would "
                    "only stop at max_transitions",
                )
            )
    return problems


class StateMachineStep(CompositeStep):
    """Runs named states (each a pipeline) from ``start`` until an ``end`` state.

    See the module docstring for how the next state is found.
    """

    __slots__ = ("end", "max_transitions", "next_state_from", "start", "states", "transitions")

    states: dict[str, Pipeline[Any, Any]]
    """The states that run something; end states need not be among them."""
    start: str
    end: tuple[str, ...]
    transitions: dict[str, str | tuple[str, ...] | dict[str, str]]
    next_state_from: str | None
    """The context field a state's steps set to the next state's name."""
    max_transitions: int

    def __init__(
        self,
        name: str,
        states: Mapping[str, Body],
        start: str,
        end: Sequence[str],
        max_transitions: int,
        transitions: Mapping[str, Transition] | None = None,
        next_state_from: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.states = _states(name, states)
        given = {} if transitions is None else transitions
        if not isinstance(given, Mapping):
            raise ConfigurationError(
                f"state_machine {name!r}: transitions must be a dict, got {given!r}"
            )
        problems = state_machine_problems(
            self.states, start, end, given, next_state_from, max_transitions
        )
        if problems:
            listed = "; ".join(p.message for p in problems)
            raise ConfigurationError(f"state_machine {name!r}: {listed}")
        self.start = start
        self.end = tuple(end)
        self.transitions = {state: _frozen(entry) for state, entry in given.items()}
        self.next_state_from = next_state_from
        self.max_transitions = max_transitions

    def targets(self, state: str) -> list[str]:
        """Return the states ``state`` may move to (every state, for a context-chosen one)."""
        every = [*self.states, *(e for e in self.end if e not in self.states)]
        return transition_targets(state, self.transitions, every) or []


def _states(name: str, states: Any) -> dict[str, Pipeline[Any, Any]]:
    if not isinstance(states, Mapping) or not states:
        raise ConfigurationError(f"state_machine {name!r} needs a non-empty dict of states")
    made = {}
    for key, body in states.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigurationError(
                f"state_machine {name!r}: state names must be non-empty strings, got {key!r}"
            )
        made[key] = as_pipeline(body, f"state {key!r} of {name!r}")
    return made


def _frozen(entry: Transition) -> str | tuple[str, ...] | dict[str, str]:
    """Return a copy of a transitions entry the caller cannot change under the step."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping):
        return dict(entry)
    return tuple(entry)


# --- Step's constructor (bound onto Step by flujo.domain.dsl) -----------------------------


def _state_machine(
    states: Mapping[str, Body],
    *,
    start: str,
    end: Sequence[str],
    max_transitions: int,
    transitions: Mapping[str, Transition] | None = None,
    next_state_from: str | None = None,
    name: str = "state_machine",
    **options: Unpack[StepOptions],
) -> Step[Any, Any]:
    """Run named states, each a step or pipeline, from ``start`` until an ``end`` state.

    After a state, its ``transitions`` entry picks the next: a name, a mapping from the
    state's output to a name, or a list the context field ``next_state_from`` chooses
    among (no entry: that field chooses among all). At most ``max_transitions`` moves.
    """
    return StateMachineStep(
        name, states, start, end, max_transitions, transitions, next_state_from, **options
    )
