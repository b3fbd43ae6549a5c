"""OpenTelemetry spans: one per run, one per step attempt, parented, with flujo's attributes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from dependency_injector import providers
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flujo import Flujo, Step, StepOutput
from flujo.containers import FlujoContainer
from flujo.infra.otel_telemetry import OpenTelemetryTelemetry
from tests.helpers import Flaky


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    return made


@pytest.fixture
def telemetry(provider: TracerProvider) -> OpenTelemetryTelemetry:
    return OpenTelemetryTelemetry(tracer_provider=provider)


def _runner(
    pipeline: Any, telemetry: OpenTelemetryTelemetry, **kwargs: Any
) -> Flujo[Any, Any, Any]:
    runner = Flujo(pipeline, persist_state=False, **kwargs)
    runner.container.telemetry.override(providers.Object(telemetry))
    return runner


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _priced(x: int) -> StepOutput[int]:
    return StepOutput(x + 1, cost_usd=0.25, tokens=9)


# --- the run span ------------------------------------------------------------------------


async def test_one_run_span_per_run_with_id_pipeline_and_status(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry
) -> None:
    runner = _runner(Step.from_callable(_priced, name="p"), telemetry, pipeline_name="billing")
    first = await runner.run_async(1)
    second = await runner.run_async(1)
    runs = _named(exporter, "flujo.run")
    assert len(runs) == 2
    assert [_attrs(s)["flujo.run_id"] for s in runs] == [first.run_id, second.run_id]
    for span in runs:
        attributes = _attrs(span)
        assert attributes["flujo.pipeline"] == "billing"
        assert attributes["flujo.status"] == "completed"
        assert attributes["flujo.cost_usd"] == 0.25
        assert attributes["flujo.tokens"] == 9


async def test_a_failed_run_span_says_failed(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry
) -> None:
    result = await _runner(Step.from_callable(Flaky(5), name="bad"), telemetry).run_async(1)
    assert not result.success
    (run,) = _named(exporter, "flujo.run")
    assert _attrs(run)["flujo.status"] == "failed"


# --- step spans --------------------------------------------------------------------------


async def test_one_step_span_per_attempt(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry
) -> None:
    s = Step.from_callable(Flaky(failures=2), name="flaky", max_retries=2)
    pipeline = s >> Step.from_callable(lambda x: x, name="next")
    result = await _runner(pipeline, telemetry).run_async(1)
    assert result.success
    steps = _named(exporter, "flujo.step")
    assert [(_attrs(sp)["flujo.step.name"], _attrs(sp)["flujo.attempt"]) for sp in steps] == [
        ("flaky", 1),
        ("flaky", 2),
        ("flaky", 3),
        ("next", 1),
    ]
    assert all(_attrs(sp)["flujo.cache_hit"] is False for sp in steps)


@pytest.mark.parametrize(
    "options",
    [{"validators": [lambda out: True]}, {}],
    ids=["policy-path", "plain-fast-path"],
)
async def test_step_span_carries_cost_and_tokens(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry, options: dict[str, Any]
) -> None:
    s = Step.from_callable(_priced, name="priced", **options)
    await _runner(s, telemetry).run_async(1)
    (span,) = _named(exporter, "flujo.step")
    attributes = _attrs(span)
    assert attributes["flujo.step.name"] == "priced"
    assert attributes["flujo.attempt"] == 1
    assert attributes["flujo.cache_hit"] is False
    assert attributes.get("flujo.cost_usd") == 0.25
    assert attributes.get("flujo.tokens") == 9


async def test_a_cache_hit_has_its_own_span(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry
) -> None:
    runner = _runner(Step.from_callable(lambda x: x, name="c", cache=True), telemetry)
    await runner.run_async(1)
    exporter.clear()
    await runner.run_async(1)
    (span,) = _named(exporter, "flujo.step")
    assert _attrs(span)["flujo.cache_hit"] is True
    assert _attrs(span)["flujo.step.name"] == "c"


async def test_step_spans_are_children_of_their_run_span(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry
) -> None:
    s = Step.from_callable(Flaky(failures=1), name="a", max_retries=1)
    await _runner(s >> Step.from_callable(_priced, name="b"), telemetry).run_async(1)
    (run,) = _named(exporter, "flujo.run")
    steps = _named(exporter, "flujo.step")
    assert len(steps) == 3
    assert run.parent is None
    for span in steps:
        assert span.parent is not None
        assert span.parent.span_id == run.context.span_id
        assert span.context.trace_id == run.context.trace_id


async def test_concurrent_runs_keep_their_spans_apart(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry
) -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    pipeline = Step.from_callable(slow, name="one") >> Step.from_callable(slow, name="two")
    runner = _runner(pipeline, telemetry)
    results = await asyncio.gather(*(runner.run_async(i) for i in range(3)))
    runs = {_attrs(s)["flujo.run_id"]: s for s in _named(exporter, "flujo.run")}
    assert set(runs) == {r.run_id for r in results}
    run_span_ids = {s.context.span_id for s in runs.values()}
    per_run: dict[int, int] = {}
    for span in _named(exporter, "flujo.step"):
        assert span.parent is not None and span.parent.span_id in run_span_ids
        per_run[span.parent.span_id] = per_run.get(span.parent.span_id, 0) + 1
    assert sorted(per_run.values()) == [2, 2, 2]


async def test_no_span_stays_current_after_a_run(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry
) -> None:
    before = trace.get_current_span()
    await _runner(Step.from_callable(Flaky(1), name="a", max_retries=1), telemetry).run_async(1)
    assert trace.get_current_span() is before
    assert all(s.end_time is not None for s in exporter.get_finished_spans())


async def test_a_user_span_around_the_run_is_the_run_span_parent(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("my-app")  # the application's own tracer, same provider
    with tracer.start_as_current_span("request") as outer:
        await _runner(Step.from_callable(lambda x: x, name="a"), telemetry).run_async(1)
    (run,) = _named(exporter, "flujo.run")
    assert run.parent is not None and run.parent.span_id == outer.get_span_context().span_id


# --- failures on spans -------------------------------------------------------------------


async def test_a_failed_attempt_span_has_error_status_and_an_exception_event(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry
) -> None:
    s = Step.from_callable(Flaky(failures=1, exc=KeyError), name="a", max_retries=1)
    await _runner(s, telemetry).run_async(1)
    failed, ok = _named(exporter, "flujo.step")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description is not None and "KeyError" in failed.status.description
    (event,) = [e for e in failed.events if e.name == "exception"]
    assert _attrs(event)["exception.type"] == "KeyError"  # type: ignore[arg-type]
    assert ok.status.status_code is not StatusCode.ERROR
    assert not [e for e in ok.events if e.name == "exception"]


async def test_a_timed_out_attempt_span_records_the_timeout(
    exporter: InMemorySpanExporter, telemetry: OpenTelemetryTelemetry
) -> None:
    async def stuck(x: int) -> int:
        await asyncio.sleep(10)
        return x

    await _runner(Step.from_callable(stuck, name="stuck", timeout_s=0.02), telemetry).run_async(1)
    (span,) = _named(exporter, "flujo.step")
    assert span.status.status_code is StatusCode.ERROR
    assert "StepTimeoutError" in (span.status.description or "")


# --- selection by the container ----------------------------------------------------------


async def test_the_container_selects_otel_from_config() -> None:
    container = FlujoContainer()
    container.config.from_dict({"telemetry": {"backend": "otel"}})
    assert isinstance(container.telemetry(), OpenTelemetryTelemetry)
    assert container.telemetry() is container.telemetry()
    assert isinstance(container.executor().telemetry, OpenTelemetryTelemetry)
    # With no SDK configured globally, spans go to OpenTelemetry's no-op provider: runs work.
    runner = Flujo(Step.from_callable(lambda x: x + 1, name="a"), container=container)
    async with runner:
        result = await runner.run_async(1)
    assert result.success and result.output == 2


def test_the_default_telemetry_is_logging() -> None:
    from flujo.infra.telemetry import LoggingTelemetry

    assert isinstance(FlujoContainer().telemetry(), LoggingTelemetry)


async def test_otel_warnings_go_to_the_logger(
    telemetry: OpenTelemetryTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flujo"):
        telemetry.warning("something to know")
    assert "something to know" in caplog.text
