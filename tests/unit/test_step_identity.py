"""``Step.identity``: what a step runs, named the same way in every process."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from flujo import Step
from flujo.domain.dsl.identity import code_digest, qualified_name

ROOT = Path(__file__).resolve().parents[2]


def classify(word: str) -> str:
    return "vowel" if word[:1] in {"a", "e", "i", "o", "u"} else "other"


def test_a_function_step_names_its_module_and_qualname() -> None:
    identity = Step.from_callable(classify, name="c").identity
    assert identity.startswith(f"{__name__}.classify#")
    assert identity == Step.from_callable(classify, name="other name").identity


def _identity_in_a_child(seed: str) -> str:
    code = (
        "from flujo import Step\n"
        "from tests.unit.test_step_identity import classify\n"
        "print(Step.from_callable(classify, name='c').identity)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_identity_is_the_same_in_every_process() -> None:
    # The set literal is a frozenset constant, whose iteration order follows the hash seed.
    here = Step.from_callable(classify, name="c").identity
    assert _identity_in_a_child("1") == _identity_in_a_child("2") == here


def test_what_the_function_closes_over_and_defaults_to_counts() -> None:
    def times(k: int) -> Any:
        return lambda x: x * k

    def plus(x: int, k: int = 1) -> int:
        return x + k

    def plus_two(x: int, k: int = 2) -> int:
        return x + k

    assert code_digest(times(2)) == code_digest(times(2))
    assert code_digest(times(2)) != code_digest(times(3))
    assert code_digest(plus) != code_digest(plus_two)


def test_a_decorated_function_is_told_apart_by_what_it_wraps() -> None:
    def logged(fn: Any) -> Any:
        def wrapper(x: Any) -> Any:  # no functools.wraps: every wrapper has one qualname
            return fn(x)

        return wrapper

    one, two = logged(lambda x: x + 1), logged(lambda x: x - 1)
    assert qualified_name(one) == qualified_name(two)
    assert code_digest(one) != code_digest(two)


def test_partials_methods_and_callable_objects_have_identities() -> None:
    class Scale:
        def __init__(self, k: int) -> None:
            self.k = k

        def __call__(self, x: int) -> int:
            return x * self.k

        def apply(self, x: int) -> int:
            return x * self.k

    double = functools.partial(lambda x, k: x * k, k=2)
    triple = functools.partial(lambda x, k: x * k, k=3)
    assert code_digest(double) != code_digest(triple)
    assert qualified_name(Scale(2)) == qualified_name(Scale) == f"{__name__}.{Scale.__qualname__}"
    assert qualified_name(Scale(2).apply).endswith("Scale.apply")
    assert code_digest(Scale(2)) == code_digest(Scale(3))  # an object's state is its own
    assert qualified_name(len) == "builtins.len"
    assert code_digest(len) == code_digest(len)


def test_a_recursive_closure_is_digested() -> None:
    def outer() -> Any:
        def again(n: int) -> int:
            return 0 if n == 0 else again(n - 1)

        return again

    assert code_digest(outer()) == code_digest(outer())


def test_an_agent_step_names_the_agent_type() -> None:
    class Echo:
        async def run(self, data: Any) -> Any:
            return data

    identity = Step("talk", agent=Echo()).identity
    assert identity.startswith(f"{__name__}.{Echo.__qualname__}#")


def test_an_explicit_version_replaces_the_digest() -> None:
    s = Step.from_callable(classify, name="c", version="2024-06")
    assert s.identity == f"{__name__}.classify@v2024-06"
    assert Step.from_callable(classify, name="c").with_config(version="3").identity.endswith("@v3")


def test_every_kind_of_step_is_named_by_the_module_that_defines_it() -> None:
    # Cache keys hold the identity, and so these paths: moving a class between DSL
    # modules would make every cached result of that kind miss.
    body = Step.from_callable(classify, name="x")
    made = {
        "flujo.domain.dsl.step.Step": Step("bare"),
        "flujo.domain.dsl.step.HumanStep": Step.human_in_the_loop("ok?"),
        "flujo.domain.dsl.control_flow.BranchStep": Step.branch_on(len, {"a": body}),
        "flujo.domain.dsl.control_flow.LoopStep": Step.loop_until(body, len, max_loops=1),
        "flujo.domain.dsl.control_flow.ParallelStep": Step.parallel({"a": body}),
        "flujo.domain.dsl.control_flow.MapStep": Step.map_over(body),
    }
    for name, built in made.items():
        assert built.identity.startswith(f"{name}#"), (name, built.identity)


def test_a_control_flow_step_digests_its_nested_steps() -> None:
    def pick(data: Any, context: Any) -> str:
        return "a"

    one = Step.branch_on(pick, {"a": Step.from_callable(classify, name="x")})
    same = Step.branch_on(pick, {"a": Step.from_callable(classify, name="x")})
    other = Step.branch_on(pick, {"a": Step.from_callable(str.upper, name="x")})
    renamed = Step.branch_on(pick, {"a": Step.from_callable(classify, name="y")})
    assert one.identity.startswith("flujo.domain.dsl.control_flow.BranchStep#")
    assert one.identity == same.identity
    assert len({one.identity, other.identity, renamed.identity}) == 3
