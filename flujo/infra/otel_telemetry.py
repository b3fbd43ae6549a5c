"""Telemetry as OpenTelemetry spans (install the ``otel`` extra)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flujo.domain.errors import ConfigurationError
from flujo.domain.interfaces import AttributeValue, Span

__all__ = ["OpenTelemetryTelemetry"]


class _OtelSpan:
    __slots__ = ("_span", "_token")

    def __init__(self, span: Any, token: Any) -> None:
        self._span = span
        self._token = token

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def record_exception(self, exc: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.record_exception(exc)
        self._span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    def end(self) -> None:
        from opentelemetry import context

        context.detach(self._token)
        self._span.end()


class OpenTelemetryTelemetry:
    """One span per run and per step attempt; a step's spans are children of its run's.

    Spans go to ``tracer_provider``, or to the global one OpenTelemetry is set up with.
    """

    def __init__(self, tracer_provider: Any = None, logger_name: str = "flujo") -> None:
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise ConfigurationError(
                "OpenTelemetry telemetry needs opentelemetry-api: pip install 'flujo[otel]'"
            ) from exc
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer("flujo")
        self._logger = logging.getLogger(logger_name)

    def start_span(self, name: str, attributes: Mapping[str, AttributeValue]) -> Span:
        """Start a span as a child of the current one and make it current until it ends."""
        from opentelemetry import context, trace

        span = self._tracer.start_span(name, attributes=dict(attributes))
        token = context.attach(trace.set_span_in_context(span))
        return _OtelSpan(span, token)

    def warning(self, message: str) -> None:
        """Log ``message`` at WARNING (warnings are not spans)."""
        self._logger.warning(message)
