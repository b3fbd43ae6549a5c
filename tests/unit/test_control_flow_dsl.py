"""Control-flow steps at construction: bad input fails early and clearly; good input composes."""

from __future__ import annotations

from typing import Any

import pytest

from flujo import ConfigurationError, Pipeline, Step
from flujo.domain.dsl.control_flow import BranchStep, LoopStep, MapStep, ParallelStep


def _s(name: str) -> Step[Any, Any]:
    return Step.from_callable(lambda x: x, name=name)


def _pick(output: Any, context: Any) -> str:
    return "a"


def _done(output: Any, context: Any) -> bool:
    return True


# --- branch_on ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", [1, None, ("a",), b"a"])
def test_branch_key_that_is_not_a_string_is_rejected(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="keys must be strings") as info:
        Step.branch_on(_pick, {"a": _s("x"), key: _s("y")}, name="route")
    assert "'route'" in str(info.value)
    assert repr(key) in str(info.value)


@pytest.mark.parametrize("branches", [{}, [], None, "a"])
def test_branch_on_needs_a_non_empty_dict_of_branches(branches: Any) -> None:
    with pytest.raises(ConfigurationError, match="non-empty dict of branches") as info:
        Step.branch_on(_pick, branches, name="route")
    assert "'route'" in str(info.value)


@pytest.mark.parametrize("condition", [None, "a", 3])
def test_branch_condition_must_be_callable(condition: Any) -> None:
    with pytest.raises(ConfigurationError, match="condition must be callable"):
        Step.branch_on(condition, {"a": _s("x")})


def test_branch_body_must_be_a_step_or_pipeline() -> None:
    with pytest.raises(ConfigurationError, match="must be a Step or a Pipeline") as info:
        Step.branch_on(_pick, {"a": _s("x"), "b": lambda x: x}, name="route")  # type: ignore[dict-item]
    assert "branch 'b'" in str(info.value) and "function" in str(info.value)


def test_branch_default_must_be_a_step_or_pipeline() -> None:
    with pytest.raises(ConfigurationError, match="default of 'route'"):
        Step.branch_on(_pick, {"a": _s("x")}, default="oops", name="route")  # type: ignore[arg-type]


def test_branch_on_accepts_steps_and_pipelines() -> None:
    branch = Step.branch_on(_pick, {"a": _s("x"), "b": _s("y") >> _s("z")}, default=_s("d"))
    assert isinstance(branch, BranchStep)
    assert branch.branches["a"].step_names == ["x"]
    assert branch.branches["b"].step_names == ["y", "z"]
    assert branch.default is not None and branch.default.step_names == ["d"]


# --- loop_until --------------------------------------------------------------------------


@pytest.mark.parametrize("max_loops", [0, -1, True, False, "3", 2.0, None])
def test_max_loops_must_be_a_positive_int(max_loops: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_loops must be > 0") as info:
        Step.loop_until(_s("b"), _done, max_loops=max_loops, name="retry-loop")
    assert "'retry-loop'" in str(info.value) and repr(max_loops) in str(info.value)


@pytest.mark.parametrize("mode", ["raise", "", None, "RETURN"])
def test_on_max_loops_must_be_fail_or_return(mode: Any) -> None:
    with pytest.raises(ConfigurationError, match="on_max_loops must be 'fail' or 'return'"):
        Step.loop_until(_s("b"), _done, max_loops=2, on_max_loops=mode)


def test_exit_condition_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match="exit_condition must be callable"):
        Step.loop_until(_s("b"), True, max_loops=2)  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [None, "step", 3, lambda x: x, [_s("b")]])
def test_loop_body_must_be_a_step_or_pipeline(body: Any) -> None:
    with pytest.raises(ConfigurationError, match="body of 'loop' must be a Step or a Pipeline"):
        Step.loop_until(body, _done, max_loops=2)


def test_loop_until_keeps_its_settings() -> None:
    loop = Step.loop_until(_s("a") >> _s("b"), _done, max_loops=4, on_max_loops="return")
    assert isinstance(loop, LoopStep)
    assert loop.body.step_names == ["a", "b"]
    assert (loop.max_loops, loop.on_max_loops, loop.name) == (4, "return", "loop")


# --- parallel ----------------------------------------------------------------------------


@pytest.mark.parametrize("branches", [{}, [], None])
def test_parallel_needs_a_non_empty_dict_of_branches(branches: Any) -> None:
    with pytest.raises(ConfigurationError, match="non-empty dict of branches") as info:
        Step.parallel(branches, name="fan-out")
    assert "'fan-out'" in str(info.value)


def test_parallel_branch_key_must_be_a_string() -> None:
    with pytest.raises(ConfigurationError, match="keys must be strings, got 2"):
        Step.parallel({"a": _s("x"), 2: _s("y")})  # type: ignore[dict-item]


def test_parallel_body_must_be_a_step_or_pipeline() -> None:
    with pytest.raises(ConfigurationError, match="branch 'b' of 'parallel'"):
        Step.parallel({"a": _s("x"), "b": 42})  # type: ignore[dict-item]


def test_reference_writers_must_name_a_branch_of_the_step() -> None:
    with pytest.raises(ConfigurationError) as info:
        Step.parallel({"a": _s("x"), "b": _s("y")}, reference_writers={"notes": "c"})
    message = str(info.value)
    assert "'notes'" in message and "'c'" in message
    assert "['a', 'b']" in message  # the branches it could have named


@pytest.mark.parametrize("mode", ["ignore", None, "FAIL"])
def test_on_branch_failure_must_be_fail_or_collect(mode: Any) -> None:
    with pytest.raises(ConfigurationError, match="on_branch_failure must be 'fail' or 'collect'"):
        Step.parallel({"a": _s("x")}, on_branch_failure=mode)


def test_parallel_merge_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match="merge must be callable"):
        Step.parallel({"a": _s("x")}, merge="first")  # type: ignore[arg-type]


def test_parallel_keeps_its_settings() -> None:
    par = Step.parallel(
        {"a": _s("x"), "b": _s("y")}, on_branch_failure="collect", reference_writers={"n": "b"}
    )
    assert isinstance(par, ParallelStep)
    assert list(par.branches) == ["a", "b"]
    assert par.on_branch_failure == "collect"
    assert par.reference_writers == {"n": "b"}


# --- map_over ----------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [0, -2, True, 1.5, "4", None])
def test_concurrency_must_be_a_positive_int(concurrency: Any) -> None:
    with pytest.raises(ConfigurationError, match="concurrency must be > 0") as info:
        Step.map_over(_s("b"), concurrency=concurrency, name="each")
    assert "'each'" in str(info.value)


@pytest.mark.parametrize("items_from", [3, ["docs"], b"docs"])
def test_items_from_must_be_a_field_name_or_a_callable(items_from: Any) -> None:
    with pytest.raises(ConfigurationError, match="items_from must be callable"):
        Step.map_over(_s("b"), items_from=items_from)


@pytest.mark.parametrize("body", [None, "b", lambda x: x])
def test_map_body_must_be_a_step_or_pipeline(body: Any) -> None:
    with pytest.raises(ConfigurationError, match="body of 'map' must be a Step or a Pipeline"):
        Step.map_over(body)


@pytest.mark.parametrize("items_from", [None, "docs", lambda data, context: data])
def test_map_over_accepts_input_field_name_or_callable(items_from: Any) -> None:
    mapped = Step.map_over(_s("b"), items_from=items_from, concurrency=3)
    assert isinstance(mapped, MapStep)
    assert (mapped.items_from, mapped.concurrency) == (items_from, 3)


# --- agents ------------------------------------------------------------------------------


class _NoRun:
    pass


class _RunIsData:
    run = "not callable"


@pytest.mark.parametrize("agent", [_NoRun(), _RunIsData(), 42])
def test_an_agent_without_a_callable_run_is_rejected(agent: Any) -> None:
    with pytest.raises(ConfigurationError, match="has no callable `run") as info:
        Step("writer", agent=agent)
    assert "'writer'" in str(info.value) and type(agent).__name__ in str(info.value)


# --- composition -------------------------------------------------------------------------


def test_control_flow_steps_compose_with_rshift() -> None:
    pipeline = (
        _s("start")
        >> Step.branch_on(_pick, {"a": _s("x")})
        >> Step.loop_until(_s("b"), _done, max_loops=2)
        >> Step.parallel({"p": _s("y")})
        >> Step.map_over(_s("m"))
    )
    assert isinstance(pipeline, Pipeline)
    assert pipeline.step_names == ["start", "branch", "loop", "parallel", "map"]
    assert [type(s) for s in pipeline.steps[1:]] == [BranchStep, LoopStep, ParallelStep, MapStep]


def test_the_constructors_build_the_same_kinds_through_a_step_too() -> None:
    # They are static: reached through an instance they take no `self`.
    some = _s("some")
    assert type(some.branch_on(_pick, {"a": _s("x")})) is BranchStep
    assert type(some.loop_until(_s("b"), _done, max_loops=1)) is LoopStep
    assert type(some.parallel({"p": _s("y")})) is ParallelStep
    assert type(some.map_over(_s("m"))) is MapStep


def test_a_control_flow_step_can_start_a_pipeline() -> None:
    pipeline = Step.map_over(_s("m")) >> _s("after")
    assert pipeline.step_names == ["map", "after"]


def test_two_control_flow_steps_with_the_default_name_clash() -> None:
    with pytest.raises(ConfigurationError, match="two steps are named 'map'"):
        _ = Step.map_over(_s("a")) >> Step.map_over(_s("b"))


def test_a_control_flow_step_clashing_with_a_plain_step_name_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="two steps are named 'loop'"):
        _ = _s("loop") >> Step.loop_until(_s("b"), _done, max_loops=1)


def test_names_inside_a_body_must_be_unique_too() -> None:
    with pytest.raises(ConfigurationError, match="two steps are named 'x'"):
        Step.loop_until(_s("x") >> _s("x"), _done, max_loops=1)


def test_control_flow_step_name_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="non-empty name"):
        Step.parallel({"a": _s("x")}, name="  ")


def test_step_options_are_checked_on_control_flow_steps() -> None:
    with pytest.raises(ConfigurationError, match="max_retries must be >= 0"):
        Step.loop_until(_s("b"), _done, max_loops=2, max_retries=-1)
    with pytest.raises(ConfigurationError, match="unknown step option"):
        Step.map_over(_s("b"), retries=2)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "build",
    [
        lambda body: Step.branch_on(lambda d, c: "a", {"a": body}),
        lambda body: Step.loop_until(body, lambda o, c: True, max_loops=2),
        lambda body: Step.parallel({"a": body}),
        lambda body: Step.map_over(body),
    ],
    ids=["branch", "loop", "parallel", "map"],
)
def test_a_human_step_inside_control_flow_is_refused_at_construction(build: Any) -> None:
    body = Step.from_callable(lambda x: x, name="prep") >> Step.human_in_the_loop("ok?")
    with pytest.raises(ConfigurationError, match=r"human step 'human_input'.*top-level"):
        build(body)
