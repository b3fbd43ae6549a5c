"""Damaged rows, as pytest base classes: a ``StateBackend`` reads back only what fits.

A backend's test supplies, besides ``backend``, a ``damage`` fixture: an async
callable ``damage(run_id, column, value, index=None)`` that writes ``value`` as it is,
unchecked, into ``column`` of the run's header (``index=None``) or of its step record
``index``; columns are the record field names (``StepRecord.index`` may be ``idx`` in
SQL). The kit then checks that ``load_run`` and ``load_steps`` raise
``StateCorruptError`` naming the run and the column, and that ``list_runs`` lists the
run as a ``DamagedRun`` beside the others instead of failing.

``DamagedStateContract`` uses values any store can hold (an unknown status, a
negative count, a time out of range, an unknown schema version);
``UntypedDamagedStateContract`` adds values of the wrong type (text in a blob or a
count, a fraction in a count, ``'yes'`` in a flag), for stores whose columns do not
enforce their types, such as SQLite and in-memory records.
"""

from __future__ import annotations

from typing import Any

import pytest

from flujo.domain.errors import StateCorruptError
from flujo.domain.interfaces import SCHEMA_VERSION, RunRecord, StateBackend
from flujo.domain.models import DamagedRun
from flujo.testing.state_backend_contract import make_run, make_step

__all__ = ["DamagedStateContract", "UntypedDamagedStateContract"]

_HEADER_DAMAGE = [
    ("status", "bogus"),
    ("step_index", -1),
    ("created_at", 1e300),
    ("updated_at", -5.0),
    ("schema_version", 0),
    ("schema_version", SCHEMA_VERSION + 1),
]
_STEP_DAMAGE = [("index", -1), ("recorded_at", 1e300), ("recorded_at", float("inf"))]
_UNTYPED_HEADER_DAMAGE = [
    ("input", "text, not bytes"),
    ("context", 12),
    ("step_index", "three"),
    ("step_index", 2.5),
    ("created_at", "yesterday"),
    ("schema_version", "one"),
    ("pipeline_name", b"\x00\x01"),
]
_UNTYPED_STEP_DAMAGE = [
    ("success", "yes"),
    ("pending", 2),
    ("result", "text, not bytes"),
    ("name", b"\x00\x01"),
]


def _ids(cases: list[tuple[str, Any]]) -> list[str]:
    return [f"{column}={value!r}" for column, value in cases]


class _DamageKit:
    @pytest.fixture
    def backend(self) -> Any:
        """Override: return a fresh, empty backend."""
        raise NotImplementedError("define a `backend` fixture in your subclass")

    @pytest.fixture
    def damage(self) -> Any:
        """Override: return the async callable that damages a stored column (see above)."""
        raise NotImplementedError("define a `damage` fixture in your subclass")

    async def _header_is_reported(
        self, backend: StateBackend, damage: Any, column: str, value: Any
    ) -> None:
        await backend.save_run(make_run("good", status="completed", updated_at=10.0))
        await backend.save_run(make_run("bad", status="failed", updated_at=20.0))
        await damage("bad", column, value)
        with pytest.raises(StateCorruptError) as caught:
            await backend.load_run("bad")
        assert (caught.value.run_id, caught.value.column) == ("bad", column)
        assert "'bad'" in str(caught.value) and repr(column) in str(caught.value)
        assert await backend.load_run("good") == make_run(
            "good", status="completed", updated_at=10.0
        )
        listed = await backend.list_runs(status=None, limit=10)
        damaged = [r for r in listed if isinstance(r, DamagedRun)]
        assert [(d.run_id, d.column) for d in damaged] == [("bad", column)]
        assert [r.run_id for r in listed if isinstance(r, RunRecord)] == ["good"]

    async def _step_is_reported(
        self, backend: StateBackend, damage: Any, column: str, value: Any
    ) -> None:
        await backend.save_run(make_run("bad", status="failed"))
        await backend.checkpoint(make_step("bad", 0))
        await backend.save_run(make_run("good", status="failed"))
        await backend.checkpoint(make_step("good", 0))
        await damage("bad", column, value, 0)
        with pytest.raises(StateCorruptError) as caught:
            await backend.load_steps("bad")
        assert (caught.value.run_id, caught.value.column) == ("bad", column)
        assert "'bad'" in str(caught.value)
        assert list(await backend.load_steps("good")) == [make_step("good", 0)]


class DamagedStateContract(_DamageKit):
    """Subclass with ``backend`` and ``damage`` fixtures: damage any store can hold."""

    @pytest.mark.asyncio
    @pytest.mark.parametrize(("column", "value"), _HEADER_DAMAGE, ids=_ids(_HEADER_DAMAGE))
    async def test_a_damaged_header_is_reported_not_read(
        self, backend: StateBackend, damage: Any, column: str, value: Any
    ) -> None:
        await self._header_is_reported(backend, damage, column, value)

    @pytest.mark.asyncio
    @pytest.mark.parametrize(("column", "value"), _STEP_DAMAGE, ids=_ids(_STEP_DAMAGE))
    async def test_a_damaged_step_record_is_reported_not_read(
        self, backend: StateBackend, damage: Any, column: str, value: Any
    ) -> None:
        await self._step_is_reported(backend, damage, column, value)

    @pytest.mark.asyncio
    async def test_a_running_run_with_a_damaged_step_time_is_listed_as_damaged(
        self, backend: StateBackend, damage: Any
    ) -> None:
        await backend.save_run(make_run("bad"))
        await backend.checkpoint(make_step("bad", 0))
        await damage("bad", "recorded_at", 1e300, 0)
        with pytest.raises(StateCorruptError) as caught:
            await backend.load_run("bad")  # its progress comes from its step records
        assert caught.value.run_id == "bad"
        (listed,) = await backend.list_runs(status="running", limit=5)
        assert isinstance(listed, DamagedRun) and listed.run_id == "bad"

    @pytest.mark.asyncio
    async def test_a_damaged_run_is_still_deleted(self, backend: StateBackend, damage: Any) -> None:
        await backend.save_run(make_run("bad", status="failed"))
        await backend.checkpoint(make_step("bad", 0))
        await damage("bad", "step_index", -1)
        await backend.delete_run("bad")
        assert await backend.load_run("bad") is None
        assert list(await backend.list_runs(status=None, limit=5)) == []


class UntypedDamagedStateContract(_DamageKit):
    """Subclass too when the store's columns do not enforce types: values of a wrong type."""

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("column", "value"), _UNTYPED_HEADER_DAMAGE, ids=_ids(_UNTYPED_HEADER_DAMAGE)
    )
    async def test_a_header_value_of_the_wrong_type_is_reported(
        self, backend: StateBackend, damage: Any, column: str, value: Any
    ) -> None:
        await self._header_is_reported(backend, damage, column, value)

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("column", "value"), _UNTYPED_STEP_DAMAGE, ids=_ids(_UNTYPED_STEP_DAMAGE)
    )
    async def test_a_step_value_of_the_wrong_type_is_reported(
        self, backend: StateBackend, damage: Any, column: str, value: Any
    ) -> None:
        await self._step_is_reported(backend, damage, column, value)
