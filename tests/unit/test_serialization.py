"""``OrjsonSerializer``: the normal dump keeps dict order, the canonical one sorts keys."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from flujo.infra.serialization import OrjsonSerializer


def test_dumps_canonical_sorts_keys_at_every_depth_and_dumps_does_not() -> None:
    serializer = OrjsonSerializer()
    one = {"b": {"y": 1, "x": [{"q": 1, "p": 2}]}, "a": 0}
    two = {"a": 0, "b": {"x": [{"p": 2, "q": 1}], "y": 1}}
    assert serializer.dumps_canonical(one) == serializer.dumps_canonical(two)
    assert serializer.dumps_canonical(one) == b'{"a":0,"b":{"x":[{"p":2,"q":1}],"y":1}}'
    assert serializer.dumps(one) != serializer.dumps(two)  # the normal dump keeps its order
    assert serializer.dumps_canonical({2: "b", 1: "a"}) == b'{"1":"a","2":"b"}'
    assert serializer.loads(serializer.dumps_canonical(one)) == one


class _Opaque:
    """A value neither pydantic nor orjson can write as JSON."""


class _Item(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    name: str
    tags: set[str] = set()
    extra: Any = None


def test_a_model_dumps_as_inside_a_container_and_what_json_cannot_hold_is_a_type_error() -> None:
    serializer = OrjsonSerializer()
    item = _Item(name="n", tags={"b"}, extra={"k": (1, 2)})
    # The model alone and inside a dict (through orjson's default) dump alike.
    assert serializer.dumps(item) == b'{"name":"n","tags":["b"],"extra":{"k":[1,2]}}'
    assert serializer.dumps({"m": item}) == b'{"m":' + serializer.dumps(item) + b"}"
    with pytest.raises(TypeError):
        serializer.dumps(_Item(name="n", extra=_Opaque()))
    with pytest.raises(TypeError):
        serializer.dumps({"m": _Item(name="n", extra=_Opaque())})
