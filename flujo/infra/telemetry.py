"""Telemetry through the standard ``logging`` module, and a silent variant."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from flujo.domain.interfaces import AttributeValue, Span

__all__ = ["LoggingTelemetry", "NullTelemetry"]


class _LogSpan:
    __slots__ = ("_attributes", "_error", "_logger", "_name", "_start")

    def __init__(self, logger: logging.Logger, name: str, attributes: dict[str, AttributeValue]):
        self._logger = logger
        self._name = name
        self._attributes = attributes
        self._error: BaseException | None = None
        self._start = time.perf_counter()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._attributes[key] = value

    def record_exception(self, exc: BaseException) -> None:
        self._error = exc

    def end(self) -> None:
        elapsed_ms = (time.perf_counter() - self._start) * 1000
        if self._error is not None:
            self._logger.info(
                "%s failed after %.3f ms %s: %r",
                self._name,
                elapsed_ms,
                self._attributes,
                self._error,
            )
        elif self._logger.isEnabledFor(logging.DEBUG):
            self._logger.debug("%s %.3f ms %s", self._name, elapsed_ms, self._attributes)


class _NullSpan:
    __slots__ = ()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def record_exception(self, exc: BaseException) -> None:
        pass

    def end(self) -> None:
        pass


_NULL_SPAN = _NullSpan()


class LoggingTelemetry:
    """Spans as DEBUG log records (failures at INFO), warnings as WARNING."""

    def __init__(self, logger_name: str = "flujo") -> None:
        self._logger = logging.getLogger(logger_name)

    @property
    def records_spans(self) -> bool:
        """Whether a span would log anything now (the logger is enabled for INFO)."""
        return self._logger.isEnabledFor(logging.INFO)

    def start_span(self, name: str, attributes: Mapping[str, AttributeValue]) -> Span:
        """Open a span that logs its duration when it ends (a no-op span if nothing would log)."""
        if not self._logger.isEnabledFor(logging.INFO):
            return _NULL_SPAN
        return _LogSpan(self._logger, name, dict(attributes))

    def warning(self, message: str) -> None:
        """Log ``message`` at WARNING."""
        self._logger.warning(message)


class NullTelemetry:
    """Records nothing; warnings still reach the ``flujo`` logger."""

    records_spans = False
    """No spans: flujo does not open any for runs using it."""

    def start_span(self, name: str, attributes: Mapping[str, AttributeValue]) -> Span:
        """Return a span that does nothing."""
        return _NULL_SPAN

    def warning(self, message: str) -> None:
        """Log ``message`` at WARNING: a warning is never silenced."""
        logging.getLogger("flujo").warning(message)
