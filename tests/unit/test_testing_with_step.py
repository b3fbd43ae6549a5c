"""flujo.testing.with_step: swap one step of a pipeline, wherever it is nested."""

from __future__ import annotations

from typing import Any

import pytest

from flujo import Flujo, Pipeline, Step
from flujo.domain.dsl.control_flow import BranchStep, LoopStep, MapStep, ParallelStep
from flujo.domain.errors import ConfigurationError
from flujo.testing import step_paths, with_step


def named(name: str, fn: Any = None) -> Step[Any, Any]:
    return Step.from_callable(fn or (lambda data: data), name=name)


def tagger(tag: str) -> Step[Any, Any]:
    return Step.from_callable(lambda data: f"{data}+{tag}", name=tag)


def nested_pipeline() -> Pipeline[Any, Any]:
    """Every kind of nesting: a branch with a default, a parallel, a loop and a map."""
    route = Step.branch_on(
        lambda data, context: (
            "premium" if "vip" in data else "basic" if "basic" in data else "other"
        ),
        {"premium": tagger("enrich") >> tagger("polish"), "basic": tagger("plain")},
        default=tagger("fallthrough"),
        name="route",
    )
    fan = Step.parallel(
        {"left": tagger("enrich"), "right": tagger("mirror")},
        merge=lambda outputs: f"{outputs['left']}|{outputs['right']}",
        name="fan",
    )
    again = Step.loop_until(
        tagger("retouch"),
        lambda output, context: output.lower().count("retouch") >= 2,
        max_loops=5,
        name="again",
    )
    each = Step.map_over(tagger("item"), name="each")
    split = Step.from_callable(lambda data: [data, "!"], name="split")
    return tagger("start") >> route >> fan >> again >> split >> each


def test_step_paths_lists_every_step_with_branch_keys_and_bodies() -> None:
    assert step_paths(nested_pipeline()) == [
        "start",
        "route",
        "route/premium/enrich",
        "route/premium/polish",
        "route/basic/plain",
        "route/<default>/fallthrough",
        "fan",
        "fan/left/enrich",
        "fan/right/mirror",
        "again",
        "again/retouch",
        "split",
        "each",
        "each/item",
    ]


@pytest.mark.parametrize(
    ("address", "data", "expected"),
    [
        (
            "start",
            "vip",
            "vip+START+enrich+polish+enrich|vip+START+enrich+polish+mirror+<loop>+item",
        ),
        (
            "route/premium/polish",
            "vip",
            "vip+start+enrich+POLISH+enrich|vip+start+enrich+POLISH+mirror+<loop>+item",
        ),
        ("plain", "basic", "basic+start+PLAIN+enrich|basic+start+PLAIN+mirror+<loop>+item"),
        (
            "route/<default>/fallthrough",
            "x",
            "x+start+FALLTHROUGH+enrich|x+start+FALLTHROUGH+mirror+<loop>+item",
        ),
        (
            "fan/right/mirror",
            "x",
            "x+start+fallthrough+enrich|x+start+fallthrough+MIRROR+<loop>+item",
        ),
        (
            "retouch",
            "x",
            "x+start+fallthrough+enrich|x+start+fallthrough+mirror+RETOUCH+RETOUCH+item",
        ),
        ("each/item", "x", "x+start+fallthrough+enrich|x+start+fallthrough+mirror+<loop>+ITEM"),
    ],
)
def test_the_replacement_runs_in_place_of_the_step_at_any_depth(
    address: str, data: str, expected: str
) -> None:
    name = address.rsplit("/", 1)[-1]
    swapped = with_step(nested_pipeline(), address, lambda value: f"{value}+{name.upper()}")
    result = Flujo(swapped, persist_state=False).run(data)
    assert result.success, result.step_history[-1].feedback
    assert result.output[0] == expected.replace("<loop>", "retouch+retouch")
    assert result.output[1] == ("!+ITEM" if name == "item" else "!+item")


def test_the_swapped_step_keeps_its_place_name_and_neighbours() -> None:
    original = nested_pipeline()
    swapped = with_step(original, "route/<default>/fallthrough", lambda data: "swapped")
    route = swapped.steps[1]
    assert isinstance(route, BranchStep) and route.default is not None
    assert route.default.step_names == ["fallthrough"]
    assert route.default.steps[0].identity != original.steps[1].default.steps[0].identity  # type: ignore[attr-defined]
    assert route.branches["premium"] is original.steps[1].branches["premium"]  # type: ignore[attr-defined]
    assert swapped.step_names == original.step_names
    assert [type(s) for s in swapped.steps] == [type(s) for s in original.steps]
    result = Flujo(swapped, persist_state=False).run("unknown-kind")
    assert result.success


def test_the_pipeline_given_is_not_changed() -> None:
    original = nested_pipeline()
    before = {s.name: (s, s.identity) for s in original.steps}
    with_step(original, "fan/left/enrich", lambda data: data)
    with_step(original, "again/retouch", lambda data: data)
    with_step(original, "start", lambda data: data)
    assert {s.name: (s, s.identity) for s in original.steps} == before
    fan = original.steps[2]
    assert isinstance(fan, ParallelStep) and fan.branches["left"].steps[0].name == "enrich"
    loop = original.steps[3]
    assert isinstance(loop, LoopStep) and loop.body.steps[0].name == "retouch"
    each = original.steps[5]
    assert isinstance(each, MapStep)
    assert Flujo(original, persist_state=False).run("x").output[0].endswith("+item")


def test_a_step_replacement_runs_under_the_replaced_name_with_its_own_options() -> None:
    calls = []

    def flaky(data: str) -> str:
        calls.append(data)
        if len(calls) < 2:
            raise RuntimeError("first try fails")
        return "ok"

    replacement = Step.from_callable(flaky, name="whatever", max_retries=1)
    swapped = with_step(tagger("a") >> tagger("b"), "b", replacement)
    assert swapped.step_names == ["a", "b"] and replacement.name == "whatever"
    result = Flujo(swapped, persist_state=False).run("x")
    assert result.success and result.output == "ok" and len(calls) == 2
    assert [r.name for r in result.step_history] == ["a", "b"]


async def test_an_async_replacement_works_and_a_single_step_is_a_pipeline() -> None:
    async def stub(data: str) -> str:
        return "stubbed"

    swapped = with_step(tagger("only"), "only", stub)
    assert isinstance(swapped, Pipeline)
    assert (await Flujo(swapped, persist_state=False).run_async("x")).output == "stubbed"


def test_a_typo_is_an_error_listing_the_steps() -> None:
    with pytest.raises(ConfigurationError) as info:
        with_step(nested_pipeline(), "enrihc", lambda data: data)
    message = str(info.value)
    assert "no step 'enrihc'" in message
    assert "route/premium/enrich" in message and "each/item" in message


def test_a_name_in_two_places_asks_for_a_path_and_the_path_works() -> None:
    with pytest.raises(ConfigurationError, match=r"2 steps are named 'enrich'") as info:
        with_step(nested_pipeline(), "enrich", lambda data: data)
    assert "route/premium/enrich, fan/left/enrich" in str(info.value)
    swapped = with_step(nested_pipeline(), "fan/left/enrich", lambda data: f"{data}+L")
    assert (
        Flujo(swapped, persist_state=False)
        .run("vip")
        .output[0]
        .startswith("vip+start+enrich+polish+L|")
    )


def test_a_path_that_does_not_exist_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="no step 'fan/middle/enrich'"):
        with_step(nested_pipeline(), "fan/middle/enrich", lambda data: data)


def test_a_fallback_is_not_swapped_and_the_error_says_which_step_to_swap() -> None:
    primary = named("primary").fallback(named("backup"))
    with pytest.raises(ConfigurationError, match="fallback of 'primary': swap 'primary'"):
        with_step(tagger("a") >> primary, "backup", lambda data: data)


@pytest.mark.parametrize("replacement", [42, tagger("x") >> tagger("y")])
def test_a_replacement_that_is_not_a_step_or_callable_is_refused(replacement: Any) -> None:
    with pytest.raises(ConfigurationError, match="must be a Step or a callable"):
        with_step(tagger("a"), "a", replacement)


def test_a_human_step_cannot_be_swapped_into_a_control_flow_step() -> None:
    with pytest.raises(ConfigurationError, match="human step"):
        with_step(nested_pipeline(), "again/retouch", Step.human_in_the_loop("ok?"))
    top = with_step(nested_pipeline(), "start", Step.human_in_the_loop("ok?"))
    assert top.steps[0].name == "start"
    assert Flujo(top).run("x").status == "paused"
