"""``Versioned`` and ``StepRecord`` keep a dataclass's behaviour with their own ``__init__``."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from flujo.domain.interfaces import StepRecord, Versioned


def test_versioned_takes_its_fields_by_position_or_name_with_writer_optional() -> None:
    assert Versioned([1], 3) == Versioned(value=[1], version=3, writer=None)
    assert Versioned("v", 2, "run/1").writer == "run/1"
    with pytest.raises(TypeError):
        Versioned("v")  # type: ignore[call-arg]


def test_step_record_takes_its_fields_in_field_order_and_pending_defaults_to_false() -> None:
    values = ("run", 4, "step", True, b"{}", b"{}", 1.5)
    record = StepRecord(*values)
    assert dataclasses.astuple(record) == (*values, False)
    named: dict[str, Any] = dict(
        zip([f.name for f in dataclasses.fields(StepRecord)], values, strict=False)
    )
    assert StepRecord(**named, pending=True) == dataclasses.replace(record, pending=True)
    with pytest.raises(TypeError):
        StepRecord("run", 4)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "record",
    [Versioned({"a": 1}, 1, "w"), StepRecord("run", 0, "s", False, b"x", b"y", 2.0, True)],
)
def test_records_stay_frozen_hashable_copyable_and_picklable(record: object) -> None:
    first = dataclasses.fields(record)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, first, None)
    assert pickle.loads(pickle.dumps(record)) == record
    assert copy.deepcopy(record) == record
    if isinstance(record, StepRecord):
        assert hash(record) == hash(dataclasses.replace(record))
