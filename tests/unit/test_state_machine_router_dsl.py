"""``Step.state_machine`` and ``Step.router`` as built: sound declarations compose, bad ones fail.

How they run belongs to the engine; these tests cover what the nodes hold, every
declaration problem reported at once, their identities, context models and charts.
"""

from __future__ import annotations

from typing import Any

import pytest

from flujo import ConfigurationError, Pipeline, PipelineContext, Step
from flujo.domain.dsl.context_model import declared_context_model
from flujo.domain.dsl.router import RouterStep
from flujo.domain.dsl.state_machine import (
    Problem,
    StateMachineStep,
    reachable_states,
    state_machine_problems,
)
from flujo.domain.errors import ControlFlowError
from tests.mermaid_chart import parse


def _s(name: str) -> Step[Any, Any]:
    return Step.from_callable(lambda x: x, name=name)


class Phases(PipelineContext):
    next_phase: str | None = None


def _reviewing(text: str, *, context: Phases) -> str:
    return text


def _machine(**changes: Any) -> StateMachineStep:
    arguments: dict[str, Any] = {
        "states": {"draft": _s("write"), "review": _s("check"), "fix": _s("edit")},
        "start": "draft",
        "end": ["published"],
        "transitions": {
            "draft": "review",
            "review": {"ok": "published", "again": "fix"},
            "fix": "review",
        },
        "max_transitions": 5,
        "name": "phases",
    }
    arguments.update(changes)
    made = Step.state_machine(**arguments)
    assert isinstance(made, StateMachineStep)
    return made


# --- state machine: what a sound one holds -------------------------------------------------


def test_a_state_machine_holds_its_states_as_pipelines_and_composes() -> None:
    machine = _machine()
    assert machine.composite and machine.takes_context
    assert {k: v.step_names for k, v in machine.states.items()} == {
        "draft": ["write"],
        "review": ["check"],
        "fix": ["edit"],
    }
    assert (machine.start, machine.end, machine.max_transitions) == ("draft", ("published",), 5)
    assert machine.targets("review") == ["published", "fix"]
    assert machine.targets("draft") == ["review"]
    pipeline = _s("before") >> machine >> _s("after")
    assert pipeline.step_names == ["before", "phases", "after"]
    assert (
        Step.state_machine(
            {"a": _s("x")}, start="a", end=["done"], transitions={"a": "done"}, max_transitions=1
        ).name
        == "state_machine"
    )


def test_a_state_machine_is_not_changed_by_changing_what_built_it() -> None:
    states = {"a": _s("x"), "b": _s("y")}
    end = ["b"]
    transitions: dict[str, Any] = {"a": {"go": "b", "stay": "a"}}
    machine = Step.state_machine(
        states, start="a", end=end, transitions=transitions, max_transitions=3
    )
    assert isinstance(machine, StateMachineStep)
    states["c"] = _s("z")
    end.append("c")
    transitions["a"]["go"] = "c"
    transitions["b"] = "a"
    assert list(machine.states) == ["a", "b"] and machine.end == ("b",)
    assert machine.transitions == {"a": {"go": "b", "stay": "a"}}


def test_an_end_state_may_have_steps_or_none() -> None:
    machine = _machine(
        states={"draft": _s("write"), "published": _s("announce")},
        transitions={"draft": {"ok": "published", "no": "dropped"}},
        end=["published", "dropped"],
    )
    assert machine.targets("draft") == ["published", "dropped"]
    assert list(machine.states) == ["draft", "published"] and machine.end == (
        "published",
        "dropped",
    )


def test_a_context_field_may_choose_the_next_state() -> None:
    machine = Step.state_machine(
        {"ask": _s("ask"), "answer": Step.from_callable(_reviewing, name="answer")},
        start="ask",
        end=["done"],
        transitions={"ask": ["answer", "ask"]},
        next_state_from="next_phase",
        max_transitions=9,
    )
    assert isinstance(machine, StateMachineStep)
    assert machine.targets("ask") == ["answer", "ask"]
    assert machine.targets("answer") == ["ask", "answer", "done"]  # no entry: any of them
    assert declared_context_model(machine) is Phases  # the states' steps are walked


def test_the_identity_covers_states_and_transitions() -> None:
    first, same = _machine(), _machine()
    assert first.identity == same.identity
    other = _machine(
        transitions={
            "draft": "review",
            "review": {"ok": "published", "retry": "fix"},
            "fix": "review",
        }
    )
    assert other.identity != first.identity
    assert _machine(
        states={"draft": _s("w2"), "review": _s("check"), "fix": _s("edit")}
    ).identity != (first.identity)


# --- state machine: what is wrong, all at once ---------------------------------------------


def test_every_problem_is_reported_in_one_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        _machine(
            start="drfat",
            transitions={"draft": "reveiw", "review": {"ok": "published"}, "ghost": "draft"},
        )
    message = str(info.value)
    assert message.startswith("state_machine 'phases': ")
    assert (
        "start 'drfat' is not one of the states ['draft', 'review', 'fix'] (did you mean 'draft'?)"
        in message
    )
    assert "goes to 'reveiw', which is not a state or an end state" in message
    assert "(did you mean 'review'?)" in message
    assert "transitions name state 'ghost'" in message
    assert "state 'fix' has no way out" in message


def test_unreachable_end_states_and_states_are_reported() -> None:
    with pytest.raises(ConfigurationError) as info:
        _machine(
            end=["published", "archived"],
            transitions={"draft": "review", "review": {"ok": "published"}, "fix": "archived"},
        )
    message = str(info.value)
    assert "state 'fix' cannot be reached from 'draft'" in message
    assert "end state 'archived' cannot be reached from 'draft'" in message


def test_a_loop_with_no_way_to_an_end_state_is_reported() -> None:
    problems = state_machine_problems(
        {"a": 1, "b": 2}, "a", ["done"], {"a": "b", "b": "a"}, None, 3
    )
    assert [p.where for p in problems] == [("end", 0), ("states", "a"), ("states", "b")]
    assert problems[1].message == (
        "from state 'a' no end state can be reached; the machine would only stop at max_transitions"
    )


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"max_transitions": 0}, "max_transitions must be > 0, got 0"),
        ({"max_transitions": True}, "max_transitions must be an int, got True"),
        ({"max_transitions": 2.5}, "max_transitions must be an int, got 2.5"),
        ({"end": []}, "end must be a non-empty list of state names"),
        ({"end": "published"}, "end must be a non-empty list of state names"),
        ({"end": ["published", "published"]}, "end state 'published' is listed twice"),
        ({"next_state_from": "not a field"}, "next_state_from must name a context field"),
        ({"transitions": "review"}, "transitions must be a dict"),
        ({"states": {}}, "needs a non-empty dict of states"),
        ({"states": {"draft": "write"}}, "state 'draft' of 'phases' must be a Step or a Pipeline"),
        ({"states": {1: _s("x")}}, "state names must be non-empty strings, got 1"),
    ],
)
def test_a_bad_argument_is_a_configuration_error(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match="phases") as info:
        _machine(**changes)
    assert fragment in str(info.value)


def test_transition_shapes_that_cannot_work_are_reported() -> None:
    problems = state_machine_problems(
        {"a": 1, "b": 2},
        "a",
        ["b"],
        {"a": ["b"], "b": "a"},
        None,
        3,
    )
    assert [(p.where, p.message) for p in problems] == [
        (
            ("transitions", "a"),
            "transitions['a'] lists the states a context field chooses among, but "
            "next_state_from names no field",
        ),
        (("transitions", "b"), "end state 'b' has a transition; the machine stops there"),
    ]
    shapes = state_machine_problems({"a": 1}, "a", ["z"], {"a": {True: "z"}}, None, 3)
    assert shapes == [
        Problem(
            ("transitions", "a", True),
            "transitions['a']: output True is not a string; a state's output is matched "
            "against string keys (quote it)",
        )
    ]
    assert state_machine_problems({"a": 1}, "a", ["z"], {"a": 5}, None, 3)[0].message.startswith(
        "transitions['a'] must be a state name, a list of state names or a mapping"
    )


def test_a_human_step_cannot_be_a_state() -> None:
    with pytest.raises(ConfigurationError, match="human step 'ask' cannot run inside"):
        _machine(states={"draft": Step.human_in_the_loop("Go?", name="ask")})


def test_reachable_states_stop_at_end_states() -> None:
    assert reachable_states("a", ["c"], {"a": "b", "b": {"x": "c", "y": "a"}, "c": "d"}, []) == [
        "a",
        "b",
        "c",
    ]


# --- router -------------------------------------------------------------------------------


def _choose(data: Any, context: Any) -> list[str]:
    return ["b", "a"]


def test_a_router_holds_its_branches_and_choice() -> None:
    router = Step.router(_choose, {"a": _s("x"), "b": _s("y") >> _s("z")}, name="pick")
    assert isinstance(router, RouterStep) and router.composite
    assert router.choose is _choose and router.branches["b"].step_names == ["y", "z"]
    assert (router.merge, router.on_branch_failure, router.reference_writers) == (None, "fail", {})
    assert Step.router(_choose, {"a": _s("x")}).name == "router"


def test_the_choice_is_put_in_branch_order_and_unknown_names_fail() -> None:
    router = Step.router(_choose, {"a": _s("x"), "b": _s("y"), "c": _s("w")}, name="pick")
    assert isinstance(router, RouterStep)
    assert router.chosen(["c", "a"]) == ["a", "c"]
    assert router.chosen("b") == ["b"] and router.chosen([]) == []
    with pytest.raises(ControlFlowError) as info:
        router.chosen(["a", "sales"])
    assert str(info.value) == (
        "router 'pick': choose returned 'sales', which is not one of the branches ['a', 'b', 'c']"
    )
    with pytest.raises(ControlFlowError, match="return a branch name or a list of them"):
        router.chosen(3)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: Step.router(3, {"a": _s("x")}), "router 'router': choose must be callable"),
        (lambda: Step.router(_choose, {}), "router 'router' needs a non-empty dict of branches"),
        (lambda: Step.router(_choose, {"a": _s("x")}, merge="m"), "merge must be callable"),
        (
            lambda: Step.router(_choose, {"a": _s("x")}, on_branch_failure="ignore"),
            "on_branch_failure must be 'fail' or 'collect', got 'ignore'",
        ),
        (
            lambda: Step.router(_choose, {"a": _s("x")}, reference_writers={"notes": "b"}),
            "reference 'notes' is given to branch 'b', which is not one of ['a']",
        ),
    ],
)
def test_a_bad_router_is_a_configuration_error(call: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        call()
    assert fragment in str(info.value)


def test_a_router_is_not_a_parallel_step() -> None:
    from flujo.domain.dsl.control_flow import ParallelStep

    # An engine that runs parallels must not run every branch of a router by mistake.
    assert not isinstance(Step.router(_choose, {"a": _s("x")}), ParallelStep)


# --- charts -------------------------------------------------------------------------------


def test_a_state_machine_is_drawn_with_a_frame_per_state_and_its_transitions() -> None:
    chart = parse(Pipeline.of(_s("before") >> _machine() >> _s("after")).to_mermaid())
    assert chart.frame_title("write") == "draft (start)"
    assert chart.frame_title("check") == "review"
    assert chart.shapes[chart.id_of("published")] == "rounded"
    assert {
        ("before", "write", None),
        ("write", "check", None),
        ("check", "published", "ok"),
        ("check", "edit", "again"),
        ("edit", "check", None),
        ("published", "after", None),
    } == chart.arrows()


def test_a_context_chosen_transition_is_dotted_and_names_the_field() -> None:
    machine = Step.state_machine(
        {"ask": _s("ask"), "done": _s("finish")},
        start="ask",
        end=["done"],
        transitions={"ask": ["ask", "done"]},
        next_state_from="next_phase",
        max_transitions=1,
        name="m",
    )
    chart = parse(Pipeline.of(machine).to_mermaid())
    assert chart.dotted() == {("ask", "ask", "next_phase"), ("ask", "finish", "next_phase")}
    assert chart.frame_title("finish") == "done (end)"
    titles = set(chart.frames.values())
    assert "m: state machine, moves at most once" in titles


def test_a_router_is_drawn_as_a_fork_with_dotted_arrows() -> None:
    chart = parse(
        Pipeline.of(Step.router(_choose, {"a": _s("x"), "b": _s("y")}, name="pick")).to_mermaid()
    )
    assert chart.shapes[chart.id_of("pick")] == "fork"
    assert chart.dotted() == {("pick", "x", "a"), ("pick", "y", "b")}
    assert {("x", "join", None), ("y", "join", None)} <= chart.arrows()
