"""``pipeline.to_mermaid()``: every kind of step drawn, checked by structure, whatever the names."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from flujo import ConfigurationError, Pipeline, Step
from flujo.domain.dsl.mermaid import DIRECTIONS, mermaid_label, to_mermaid
from tests.mermaid_chart import parse, unescape


class Approval(BaseModel):
    approved: bool


def s(name: str) -> Step[Any, Any]:
    return Step.from_callable(lambda x: x, name=name)


def test_a_straight_pipeline_is_boxes_joined_by_arrows() -> None:
    chart = parse((s("a") >> s("b") >> s("c")).to_mermaid())
    assert chart.direction == "TD"
    assert sorted(chart.labels.values()) == ["a", "b", "c"]
    assert set(chart.shapes.values()) == {"box"}
    assert chart.arrows() == {("a", "b", None), ("b", "c", None)}


def test_one_step_draws_as_one_node() -> None:
    chart = parse(to_mermaid(s("only")))
    assert list(chart.labels.values()) == ["only"] and chart.edges == []


def test_a_human_step_shows_its_name_and_message() -> None:
    pipeline = s("draft") >> Step.human_in_the_loop("Publish?", Approval, name="approve")
    chart = parse(pipeline.to_mermaid())
    human = chart.id_of("approve\nPublish?")
    assert chart.shapes[human] == "human"
    assert chart.arrows() == {("draft", "approve\nPublish?", None)}


def test_a_branch_is_a_diamond_with_an_arrow_per_key_and_every_arm_reaches_the_next_step() -> None:
    route = Step.branch_on(
        lambda x, c: "a",
        {"urgent": s("page"), "slow": s("queue") >> s("batch")},
        default=s("drop"),
        name="route",
    )
    chart = parse((s("start") >> route >> s("after")).to_mermaid())
    assert chart.shapes[chart.id_of("route")] == "decision"
    assert chart.arrows() == {
        ("start", "route", None),
        ("route", "page", "urgent"),
        ("route", "queue", "slow"),
        ("queue", "batch", None),
        ("route", "drop", "default"),
        ("page", "after", None),
        ("batch", "after", None),
        ("drop", "after", None),
    }


def test_a_branch_without_default_draws_no_default_arm() -> None:
    route = Step.branch_on(lambda x, c: "a", {"a": s("x")}, name="route")
    chart = parse((route >> s("y")).to_mermaid())
    assert chart.arrows() == {("route", "x", "a"), ("x", "y", None)}


@pytest.mark.parametrize(("merge", "join"), [(None, "join"), (lambda outputs: outputs, "merge")])
def test_a_parallel_forks_into_its_branches_and_joins_them(merge: Any, join: str) -> None:
    fork = Step.parallel({"left": s("l1") >> s("l2"), "right": s("r")}, merge=merge, name="fan")
    chart = parse((fork >> s("next")).to_mermaid())
    assert chart.shapes[chart.id_of("fan")] == "fork"
    assert chart.shapes[chart.id_of(join)] == "circle"
    assert chart.arrows() == {
        ("fan", "l1", "left"),
        ("l1", "l2", None),
        ("fan", "r", "right"),
        ("l2", join, None),
        ("r", join, None),
        (join, "next", None),
    }


def test_a_loop_frames_its_body_and_goes_back_until_done() -> None:
    loop = Step.loop_until(s("try") >> s("check"), lambda o, c: True, max_loops=3, name="polish")
    chart = parse((s("before") >> loop >> s("after")).to_mermaid())
    assert chart.frame_title("try") == chart.frame_title("check") == chart.frame_title("done?")
    assert chart.frame_title("try") == "polish: until done, at most 3 times"
    assert chart.frame_title("before") is None and chart.frame_title("after") is None
    assert chart.shapes[chart.id_of("done?")] == "decision"
    assert chart.arrows() == {
        ("before", "try", None),
        ("try", "check", None),
        ("check", "done?", None),
        ("done?", "try", "no"),
        ("done?", "after", "yes"),
    }


@pytest.mark.parametrize(("concurrency", "pace"), [(1, "one at a time"), (4, "4 at a time")])
def test_a_map_frames_its_body_with_its_concurrency(concurrency: int, pace: str) -> None:
    each = Step.map_over(s("fetch") >> s("parse"), concurrency=concurrency, name="pages")
    chart = parse((each >> s("index")).to_mermaid())
    assert chart.frame_title("fetch") == f"pages: for each item, {pace}"
    assert chart.frame_title("index") is None
    assert chart.arrows() == {("fetch", "parse", None), ("parse", "index", None)}


def test_a_fallback_hangs_off_its_step_and_goes_on_to_the_next() -> None:
    risky = s("primary").fallback(s("backup"))
    chart = parse((s("a") >> risky >> s("z")).to_mermaid())
    assert chart.dotted() == {("primary", "backup", "on failure")}
    assert chart.arrows() == {
        ("a", "primary", None),
        ("primary", "backup", "on failure"),
        ("primary", "z", None),
        ("backup", "z", None),
    }


def test_nested_constructs_keep_their_frames_and_exits() -> None:
    inner = Step.branch_on(lambda x, c: "k", {"k": s("keep"), "d": s("discard")}, name="sort")
    each = Step.map_over(s("read") >> inner, name="items")
    loop = Step.loop_until(
        Step.parallel({"a": s("pa"), "b": s("pb")}, name="both"), lambda o, c: True, max_loops=2
    )
    chart = parse((each >> loop).to_mermaid())
    assert {chart.frame_title(n) for n in ("read", "sort", "keep", "discard")} == {
        "items: for each item, one at a time"
    }
    assert chart.frame_title("both") == "loop: until done, at most 2 times"
    assert ("keep", "both", None) in chart.arrows() and ("discard", "both", None) in chart.arrows()
    assert ("join", "done?", None) in chart.arrows() and ("done?", "both", "no") in chart.arrows()


def test_node_ids_are_unique_and_made_from_no_name() -> None:
    # Two steps named alike in different branches, names that look like ids.
    fork = Step.parallel({"x": s("n0"), "y": s("n0") >> s("g0")}, name="end")
    chart = parse(to_mermaid(fork))
    assert len(chart.labels) == 5  # fork, three steps, join
    assert sorted(chart.labels.values()) == ["end", "g0", "join", "n0", "n0"]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_direction_is_accepted(direction: str) -> None:
    assert parse((s("a") >> s("b")).to_mermaid(direction)).direction == direction


def test_an_unknown_direction_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"TD, LR, BT, RL.*'sideways'"):
        Pipeline.of(s("a")).to_mermaid("sideways")


def test_something_other_than_a_pipeline_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="got int"):
        to_mermaid(42)  # type: ignore[arg-type]


NASTY = [
    'say "hi"',
    "a [bracket] {brace} (paren)",
    "two\nlines",
    "hash # and ; semicolon",
    "pipe | arrow --> here",
    "`backticks` and <b>tags</b> & more",
    "%% not a comment",
    "end",
    "subgraph",
    "ünïcödé ✓",
]


@pytest.mark.parametrize("name", NASTY)
def test_any_step_name_is_escaped_and_reads_back(name: str) -> None:
    human = Step.human_in_the_loop(f"message: {name}", name=f"ask {name}")
    loop = Step.loop_until(s(name), lambda o, c: True, max_loops=1, name=f"loop {name}")
    branch = Step.branch_on(lambda x, c: name, {name: s(f"arm {name}")}, name=f"route {name}")
    chart = parse((loop >> branch >> human).to_mermaid())
    assert chart.id_of(name) and chart.id_of(f"arm {name}")
    assert chart.frame_title(name) == f"loop {name}: until done, at most once"
    assert (f"route {name}", f"arm {name}", name) in chart.arrows()
    assert chart.id_of(f"ask {name}\nmessage: {name}")


@given(st.text())
def test_a_label_never_holds_a_raw_quote_or_newline_and_decodes_to_its_text(text: str) -> None:
    label = mermaid_label(text)
    assert label.startswith('"') and label.endswith('"')
    inner = label[1:-1]
    assert '"' not in inner and "\n" not in inner and "\r" not in inner
    assert all(ch.isalnum() or ch in " -_.,:/+*=@'!?()$~^#;<>" for ch in inner)
    assert unescape(inner) == text
