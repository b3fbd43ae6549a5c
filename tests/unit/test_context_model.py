"""The context class a pipeline declares, read from its callables' ``context`` annotations."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated, Any, Optional

import pytest
from pydantic import Field

from flujo import ConfigurationError, PipelineContext, Step
from flujo.domain.dsl.context_model import (
    check_context_model,
    context_declarations,
    declared_context_model,
)

if TYPE_CHECKING:
    from tests.helpers import RecordingTelemetry as OnlyForTypeCheckers


class Words(PipelineContext):
    words: list[str] = Field(default_factory=list)


class MoreWords(Words):
    extra: int = 0


class Other(PipelineContext):
    n: int = 0


def plain(x: Any) -> Any:
    return x


def wants_words(x: Any, *, context: Words) -> Any:
    return x


def wants_more(x: Any, *, context: MoreWords | None = None) -> Any:
    return x


def wants_other(x: Any, *, context: Other) -> Any:
    return x


def wants_base(x: Any, *, context: PipelineContext) -> Any:
    return x


def untyped(x: Any, *, context: Any) -> Any:
    return x


def unresolvable(x: Any, *, context: OnlyForTypeCheckers) -> Any:
    return x


def step(fn: Any, name: str | None = None) -> Step[Any, Any]:
    return Step.from_callable(fn, name=name or fn.__name__)


def test_nothing_declared_is_none() -> None:
    assert declared_context_model(step(plain) >> step(untyped)) is None
    assert context_declarations(step(plain)) == []


def test_one_declaring_step_gives_its_class() -> None:
    assert declared_context_model(step(plain) >> step(wants_words)) is Words


def test_string_annotations_are_resolved_in_the_callables_module() -> None:
    # This module uses `from __future__ import annotations`: every annotation is text.
    assert isinstance(wants_words.__annotations__["context"], str)
    assert declared_context_model(step(wants_words)) is Words


def test_the_most_derived_class_wins_when_it_is_all_of_them() -> None:
    pipeline = step(wants_base) >> step(wants_words) >> step(wants_more)
    assert declared_context_model(pipeline) is MoreWords
    assert [where for where, _ in context_declarations(pipeline)] == [
        "step 'wants_base'",
        "step 'wants_words'",
        "step 'wants_more'",
    ]


def test_unrelated_classes_are_an_error_naming_the_steps() -> None:
    with pytest.raises(ConfigurationError) as info:
        declared_context_model(step(wants_words) >> step(wants_other))
    message = str(info.value)
    assert "step 'wants_words' takes" in message and "Words" in message
    assert "step 'wants_other' takes" in message and "Other" in message


def test_optional_and_annotated_context_annotations_count() -> None:
    def optional(x: Any, *, context: Optional[Other] = None) -> Any:  # noqa: UP045
        return x

    def annotated(x: Any, *, context: Annotated[Other, "why"]) -> Any:
        return x

    assert declared_context_model(step(optional)) is Other
    assert declared_context_model(step(annotated)) is Other


def test_an_annotation_that_cannot_be_resolved_declares_nothing() -> None:
    assert declared_context_model(step(unresolvable) >> step(plain)) is None


def test_steps_nested_in_every_construct_are_read() -> None:
    inner = {
        "branch": Step.branch_on(lambda x, c: "a", {"a": step(wants_more)}, name="route"),
        "loop": Step.loop_until(step(wants_more), lambda x, c: True, max_loops=1, name="again"),
        "parallel": Step.parallel({"left": step(plain), "right": step(wants_more)}, name="both"),
        "map": Step.map_over(step(wants_more), name="each"),
    }
    for kind, construct in inner.items():
        pipeline = step(wants_words) >> construct
        assert declared_context_model(pipeline) is MoreWords, kind
    wheres = [where for where, _ in context_declarations(inner["parallel"])]
    assert wheres == ["step 'both' (branches)['right'] > step 'wants_more'"]


def test_a_branch_default_and_a_condition_are_read() -> None:
    def condition(x: Any, context: Other) -> str:
        return "a"

    branch = Step.branch_on(condition, {"a": step(plain)}, default=step(wants_other), name="pick")
    found = context_declarations(branch)
    assert [model for _, model in found] == [Other, Other]
    assert found[0][0] == "step 'pick' (condition)"
    assert found[1][0] == "step 'pick' (default) > step 'wants_other'"


def test_a_fallback_step_is_read() -> None:
    main = step(plain, "main").fallback(step(wants_other, "backup"))
    assert context_declarations(main) == [("step 'main' (fallback 'backup')", Other)]


def test_an_agent_step_and_a_callable_object_are_read() -> None:
    class Agent:
        async def run(self, data: Any, *, context: Words) -> Any:
            return data

    class Callable:
        def __call__(self, x: Any, *, context: Other) -> Any:
            return x

    assert declared_context_model(Step("agent", agent=Agent())) is Words
    assert declared_context_model(Step.from_callable(Callable(), name="obj")) is Other


def test_a_partial_is_read() -> None:
    part = functools.partial(wants_more)
    assert declared_context_model(Step.from_callable(part, name="part")) is MoreWords


def test_check_accepts_the_declared_class_and_its_subclasses() -> None:
    pipeline = step(wants_words) >> step(plain)
    check_context_model(pipeline, Words)
    check_context_model(pipeline, MoreWords)
    check_context_model(step(plain), Other)  # nothing declared: anything goes


def test_check_refuses_a_class_a_step_cannot_take() -> None:
    expected = r"Other is not a .*Words, which step 'wants_words'"
    with pytest.raises(ConfigurationError, match=expected):
        check_context_model(step(wants_words), Other)


def test_check_names_a_class_loaded_twice() -> None:
    twin = type("Words", (PipelineContext,), {"__module__": Words.__module__})
    with pytest.raises(ConfigurationError, match="loaded twice"):
        check_context_model(step(wants_words), twin)
