"""``OrjsonSerializer``: the normal dump keeps dict order, the canonical one sorts keys."""

from __future__ import annotations

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
