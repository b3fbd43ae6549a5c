"""A ContextReference pickles as its pointer only, like its JSON: unhydrated where it lands."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from flujo import ContextReference, PipelineContext
from flujo.domain.errors import ReferenceNotHydratedError


class Ctx(PipelineContext):
    log: ContextReference[list[str]] = ContextReference(provider_id="kg", key="log")


def _dumps(name: str) -> Any:
    if name == "pickle":
        return pickle.dumps
    from ray import cloudpickle  # imported by the test, not at collection: see tests/ray

    return cloudpickle.dumps


@pytest.mark.parametrize("pickler", ["pickle", "cloudpickle"])
def test_an_unhydrated_reference_stays_unhydrated(pickler: str) -> None:
    dumps = _dumps(pickler)
    ref = ContextReference[list[str]](provider_id="kg", key="log", watch=False)
    back = pickle.loads(dumps(ref))

    assert type(back) is type(ref)
    assert (back.provider_id, back.key, back.watch) == ("kg", "log", False)
    assert not back.is_hydrated
    with pytest.raises(ReferenceNotHydratedError):
        back.get()


@pytest.mark.parametrize("pickler", ["pickle", "cloudpickle"])
def test_a_hydrated_reference_leaves_its_data_behind(pickler: str) -> None:
    dumps = _dumps(pickler)
    ref = ContextReference[list[str]](provider_id="kg", key="log")
    ref.set(["SECRET" * 1000])
    pickled = dumps(ref)

    assert b"SECRET" not in pickled and len(pickled) < 1000
    back = pickle.loads(pickled)
    assert not back.is_hydrated and not back.is_dirty


def test_inside_a_context_the_field_travels_as_its_pointer() -> None:
    context = Ctx()
    context.log.set(["SECRET"])
    back = pickle.loads(pickle.dumps(context))

    assert back.log.model_dump() == {"provider_id": "kg", "key": "log"}
    assert not back.log.is_hydrated
    assert back.model_dump() == context.model_dump()


def test_deepcopy_is_unchanged_a_pointer_copy() -> None:
    ref = ContextReference[list[str]](provider_id="kg", key="log")
    ref.set(["x"])
    copied = copy.deepcopy(ref)
    assert not copied.is_hydrated and copied is not ref
