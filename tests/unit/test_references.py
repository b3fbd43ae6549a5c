"""Finding the ``ContextReference`` fields of a context, and the paths that name them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, Field

from flujo import ContextReference, PipelineContext
from flujo.application.core.references import find_references, reference_fields


def ref(key: str, provider_id: str = "p") -> ContextReference[Any]:
    return ContextReference(provider_id=provider_id, key=key)


def paths(context: BaseModel) -> dict[str, str]:
    """``path -> key`` of every reference found in ``context``."""
    return {path: found.key for path, found in find_references(context, with_paths=True)}


class Doc(BaseModel):
    title: str = ""
    ref: ContextReference[str]


class Plain(BaseModel):
    text: str = ""
    count: int = 0


class Top(PipelineContext):
    ref: ContextReference[list[int]] = ContextReference(provider_id="p", key="top")
    name: str = "x"


class WithOptional(PipelineContext):
    maybe: ContextReference[int] | None = None
    old_style: Optional[ContextReference[int]] = None  # noqa: UP045 - the spelling under test


class Containers(PipelineContext):
    doc: Doc | None = None
    docs: list[Doc] = Field(default_factory=list)
    pair: tuple[Doc, ...] = ()
    by_name: dict[str, Doc] = Field(default_factory=dict)
    plain: Plain = Field(default_factory=Plain)
    plains: list[Plain] = Field(default_factory=list)


def test_context_without_references_has_no_reference_fields() -> None:
    assert reference_fields(PipelineContext) == ()
    assert find_references(PipelineContext(scratchpad={"x": ref("hidden")})) == []


def test_top_level_reference() -> None:
    context = Top()

    assert reference_fields(Top) == ("ref",)
    [(path, found)] = find_references(context, with_paths=True)
    assert path == "context.ref"
    assert found is context.ref


def test_optional_reference_is_found_only_when_set() -> None:
    assert set(reference_fields(WithOptional)) == {"maybe", "old_style"}
    assert find_references(WithOptional()) == []

    context = WithOptional(maybe=ref("m"), old_style=ref("o"))

    assert paths(context) == {"context.maybe": "m", "context.old_style": "o"}


def test_references_in_nested_models_and_containers_with_paths() -> None:
    context = Containers(
        doc=Doc(ref=ref("single")),
        docs=[Doc(ref=ref("d0")), Doc(ref=ref("d1"))],
        pair=(Doc(ref=ref("t0")),),
        by_name={"a": Doc(ref=ref("na")), "b c": Doc(ref=ref("nbc"))},
    )

    assert set(reference_fields(Containers)) == {"doc", "docs", "pair", "by_name"}
    assert paths(context) == {
        "context.doc.ref": "single",
        "context.docs[0].ref": "d0",
        "context.docs[1].ref": "d1",
        "context.pair[0].ref": "t0",
        "context.by_name['a'].ref": "na",
        "context.by_name['b c'].ref": "nbc",
    }


def test_found_objects_are_the_context_own_references() -> None:
    context = Containers(docs=[Doc(ref=ref("d0")), Doc(ref=ref("d1"))])

    found = [r for _, r in find_references(context)]

    assert found[0] is context.docs[0].ref
    assert found[1] is context.docs[1].ref


def test_without_paths_the_paths_are_empty() -> None:
    context = Containers(docs=[Doc(ref=ref("d0"))])

    assert [(path, r.key) for path, r in find_references(context)] == [("", "d0")]


def test_the_same_reference_object_is_reported_once() -> None:
    shared = ref("shared")
    context = Containers.model_construct(docs=[Doc.model_construct(ref=shared)] * 2)

    assert [r for _, r in find_references(context)] == [shared]


def test_fields_typed_any_are_not_searched() -> None:
    class Loose(PipelineContext):
        blob: Any = None
        table: dict[str, Any] = Field(default_factory=dict)
        rows: list[object] = Field(default_factory=list)
        kind: Literal["a", "b"] = "a"
        real: ContextReference[int] = ContextReference(provider_id="p", key="real")

    context = Loose(
        blob=ref("in-any"),
        table={"x": ref("in-dict-any")},
        rows=[ref("in-list-object")],
    )

    assert reference_fields(Loose) == ("real",)
    assert paths(context) == {"context.real": "real"}


def test_annotated_and_union_types_are_followed() -> None:
    class Mixed(PipelineContext):
        annotated: Annotated[ContextReference[int], Field(description="x")] = ref("ann")
        either: Plain | Doc = Field(default_factory=Plain)

    assert set(reference_fields(Mixed)) == {"annotated", "either"}
    assert paths(Mixed(either=Doc(ref=ref("union")))) == {
        "context.annotated": "ann",
        "context.either.ref": "union",
    }


class Node(BaseModel):
    ref: ContextReference[int] | None = None
    children: list[Node] = Field(default_factory=list)


class Tree(BaseModel):
    children: list[Tree] = Field(default_factory=list)
    label: str = ""


class Ping(BaseModel):
    pong: Pong | None = None


class Pong(BaseModel):
    ping: Ping | None = None
    ref: ContextReference[int] | None = None


class RecursiveContext(PipelineContext):
    root: Node = Field(default_factory=Node)
    tree: Tree = Field(default_factory=Tree)
    ping: Ping = Field(default_factory=Ping)


def test_recursive_model_without_references_terminates() -> None:
    context = RecursiveContext(tree=Tree(children=[Tree(children=[Tree(label="leaf")])]))

    assert reference_fields(Tree) == ()
    assert "tree" not in reference_fields(RecursiveContext)
    assert find_references(context) == []


def test_self_recursive_model_is_searched_at_every_depth() -> None:
    context = RecursiveContext(
        root=Node(
            ref=ref("root"),
            children=[Node(children=[Node(ref=ref("grandchild"))]), Node(ref=ref("child"))],
        )
    )

    assert set(reference_fields(Node)) == {"ref", "children"}
    assert paths(context) == {
        "context.root.ref": "root",
        "context.root.children[0].children[0].ref": "grandchild",
        "context.root.children[1].ref": "child",
    }


def test_mutually_recursive_models_are_searched_at_every_depth() -> None:
    context = RecursiveContext(ping=Ping(pong=Pong(ping=Ping(pong=Pong(ref=ref("deep"))))))

    assert reference_fields(Ping) == ("pong",)
    assert set(reference_fields(Pong)) == {"ping", "ref"}
    assert paths(context) == {"context.ping.pong.ping.pong.ref": "deep"}


def test_reference_fields_is_stable_across_calls() -> None:
    first = reference_fields(Containers)

    assert reference_fields(Containers) == first
    assert find_references(Containers()) == []
