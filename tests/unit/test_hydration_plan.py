"""The per-class hydration plan, the lean read path and the default pointers that feed them.

How a context's references are found is decided once per model class and kept
across runs (``references.context_plan``); an unwatched reference read in a
lean step is handed out without a scope call until something ``set()``s it.
These tests pin what those shortcuts must never change.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, Field

from flujo import ContextReference, Flujo, Pipeline, PipelineContext, Step
from flujo.application.core.references import context_plan
from flujo.domain.models import _POINTER_FIELDS
from flujo.providers import InMemoryStateProvider


class Note(BaseModel):
    text: str = ""


class RefItems(PipelineContext):
    items: ContextReference[list[int]] = ContextReference(provider_id="mem", key="items")


class PlainItems(PipelineContext):
    """The same field name as ``RefItems``, holding no reference."""

    items: list[int] = Field(default_factory=list)


class NoteItems(PipelineContext):
    """The same field name, typed with a model: a subclass value may hold a reference."""

    items: Note = Note()


class MoreItems(RefItems):
    """A subclass adding a second reference."""

    extra: ContextReference[list[int]] = ContextReference(
        provider_id="mem", key="extra", watch=False
    )


class RefNote(Note):
    ref: ContextReference[list[int]] = ContextReference(provider_id="mem", key="noted")


def test_classes_sharing_field_names_get_plans_of_their_own() -> None:
    ref_plan, plain_plan, note_plan = (
        context_plan(RefItems),
        context_plan(PlainItems),
        context_plan(NoteItems),
    )

    assert (ref_plan.kind, ref_plan.only) == (2, ("items", "context.items"))
    assert (plain_plan.kind, plain_plan.fields, plain_plan.only) == (0, (), None)
    assert (note_plan.kind, note_plan.fields, note_plan.direct) == (1, ("items",), False)


def test_a_subclass_adding_a_reference_has_its_own_plan_and_leaves_its_parents() -> None:
    child, parent = context_plan(MoreItems), context_plan(RefItems)

    assert child.fields == ("items", "extra")
    assert child.direct and child.only is None  # two fields: the general path
    assert parent.fields == ("items",)
    assert context_plan(RefItems) is parent  # kept, not rebuilt per call


def runner(
    steps: list[Step[Any, Any]], model: type[PipelineContext], provider: InMemoryStateProvider[Any]
) -> Flujo[Any, Any, Any]:
    return Flujo(
        Pipeline(steps),
        context_model=model,
        persist_state=False,
        state_providers={"mem": provider},
    )


async def test_parent_and_subclass_contexts_each_hydrate_their_own_references() -> None:
    provider: InMemoryStateProvider[Any] = InMemoryStateProvider({"items": [1], "extra": [2]})
    seen: list[Any] = []

    async def look(data: int, *, context: Any) -> int:
        seen.append(
            [
                getattr(context, name).get()
                for name in ("items", "extra")
                if name in type(context).model_fields
            ]
        )
        return data

    step = Step.from_callable(look, name="look")
    for model in (RefItems, MoreItems, RefItems):  # the parent after the child: unchanged
        result = await runner([step], model, provider).run_async(0)
        assert result.success, result.feedback

    assert seen == [[[1]], [[1], [2]], [[1]]]


async def test_a_reference_inside_a_subclass_value_of_a_model_field_is_hydrated() -> None:
    provider: InMemoryStateProvider[Any] = InMemoryStateProvider({"noted": [7]})
    seen: list[Any] = []

    async def look(data: int, *, context: NoteItems) -> int:
        assert isinstance(context.items, RefNote)
        seen.append(context.items.ref.get())
        return data

    result = await runner([Step.from_callable(look, name="look")], NoteItems, provider).run_async(
        0, initial_context_data={"items": RefNote()}
    )
    assert result.success, result.feedback
    assert seen == [[7]]


class Unwatched(PipelineContext):
    items: ContextReference[list[int]] = ContextReference(
        provider_id="mem", key="items", watch=False
    )


async def test_an_unwatched_read_sees_a_set_of_its_own_step_and_the_next_step_sees_it_too() -> None:
    provider: InMemoryStateProvider[Any] = InMemoryStateProvider({"items": [1]})
    seen: list[Any] = []

    async def read(data: int, *, context: Unwatched) -> int:
        seen.append(context.items.get())
        return data

    async def read_set_read(data: int, *, context: Unwatched) -> int:
        seen.append(context.items.get())  # the quick path is on for this reference now
        context.items.set([1, 2])
        seen.append(context.items.get())  # ... and off again: the attempt's own value
        return data

    steps = [
        Step.from_callable(read, name="a"),
        Step.from_callable(read, name="b"),
        Step.from_callable(read_set_read, name="c"),
        Step.from_callable(read, name="d"),
    ]
    saves = provider.saves
    result = await runner(steps, Unwatched, provider).run_async(0)

    assert result.success, result.feedback
    assert seen == [[1], [1], [1], [1, 2], [1, 2]]
    assert provider.data["items"] == [1, 2]
    assert provider.saves - saves == 1  # the set() saved exactly once


async def test_a_failed_steps_set_of_an_unwatched_reference_is_not_read_back_or_saved() -> None:
    provider: InMemoryStateProvider[Any] = InMemoryStateProvider({"items": [1]})
    seen: list[Any] = []

    async def read(data: int, *, context: Unwatched) -> int:
        seen.append(context.items.get())
        return data

    async def set_then_fail(data: int, *, context: Unwatched) -> int:
        context.items.set([9])
        raise RuntimeError("boom")

    failing = Step.from_callable(set_then_fail, name="fails")
    fallback = Step.from_callable(read, name="fallback")
    steps = [Step.from_callable(read, name="a"), failing.fallback(fallback)]
    result = await runner(steps, Unwatched, provider).run_async(0)

    assert result.success, result.feedback
    assert seen == [[1], [1]]  # the fallback reads the value before the failed attempt
    assert provider.data["items"] == [1]


def test_default_pointers_are_independent_objects() -> None:
    assert frozenset(ContextReference.model_fields) == _POINTER_FIELDS
    first, second = Unwatched(), Unwatched()

    assert first.items is not second.items
    assert first.items.__pydantic_private__ is not second.items.__pydantic_private__
    assert (first.items.provider_id, first.items.key, first.items.watch) == ("mem", "items", False)
    assert not first.items.is_hydrated
    first.items.set([3])
    assert first.items.get() == [3] and not second.items.is_hydrated
    first.items.key = "other"  # an assignment touches its own pointer only
    assert second.items.key == "items"
    assert Unwatched.model_fields["items"].default.key == "items"


def test_a_default_pointer_with_watch_left_out_keeps_its_own_fields_set() -> None:
    first, second = RefItems(), RefItems()

    assert first.items.model_fields_set == {"provider_id", "key"}
    first.items.watch = False
    assert first.items.model_fields_set == {"provider_id", "key", "watch"}
    assert second.items.model_fields_set == {"provider_id", "key"}
    assert copy.deepcopy(first).items.model_fields_set == {"provider_id", "key", "watch"}
