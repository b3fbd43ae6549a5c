"""PostgresBackend against a real server: the backend contract and a durable run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import Field

from flujo import Flujo, PipelineContext, Step
from flujo.containers import FlujoContainer
from flujo.state import PostgresBackend
from flujo.testing import StateBackendContract
from tests.integration.postgres import postgres_dsn


class TestPostgresBackend(StateBackendContract):
    @pytest.fixture
    async def backend(self) -> AsyncIterator[PostgresBackend]:
        backend = PostgresBackend(await postgres_dsn())  # each call starts from empty tables
        yield backend
        await backend.close()


class Counter(PipelineContext):
    seen: list[str] = Field(default_factory=list)


def note(data: int, *, context: Counter) -> int:
    context.seen.append(f"step{data}")
    return data + 1


def boom(data: int) -> int:
    raise RuntimeError("crash here")


async def test_run_fails_then_resumes_from_postgres() -> None:
    dsn = await postgres_dsn()
    container = FlujoContainer()
    container.config.from_dict({"state": {"uri": dsn}})
    failing = Step.from_callable(note, name="a") >> Step.from_callable(boom, name="b")
    first = Flujo(failing, context_model=Counter, container=container, pipeline_name="pg")
    result = await first.run_async(0)
    assert result.status == "failed"
    await first.aclose()

    fixed = Step.from_callable(note, name="a") >> Step.from_callable(note, name="b")
    container2 = FlujoContainer()
    container2.config.from_dict({"state": {"uri": dsn}})
    second = Flujo(fixed, context_model=Counter, container=container2, pipeline_name="pg")
    resumed = await second.resume_async(result.run_id)
    assert resumed.status == "completed"
    assert resumed.output == 2
    assert resumed.final_pipeline_context is not None
    assert resumed.final_pipeline_context.seen == ["step0", "step1"]
    info = await second.get_run(result.run_id)
    assert info.status == "completed" and [s.name for s in info.step_history] == ["a", "b"]
    await second.aclose()


async def test_state_uri_selects_postgres_backend() -> None:
    container = FlujoContainer()
    container.config.from_dict({"state": {"uri": await postgres_dsn()}})
    assert isinstance(container.state_backend(), PostgresBackend)
