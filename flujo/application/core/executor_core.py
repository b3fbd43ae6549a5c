"""``ExecutorCore``: runs one step with its retries and timeout, and keeps managed state."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from flujo.application.core.managed_state import ManagedState, MissingProviderPolicy
from flujo.application.core.references import reference_fields
from flujo.domain.dsl.step import Step
from flujo.domain.errors import StateError, StepTimeoutError
from flujo.domain.interfaces import (
    CacheBackend,
    Hasher,
    Serializer,
    StateProvider,
    Telemetry,
    UsageMeter,
)
from flujo.domain.models import StepConfig, StepOutput, StepResult

__all__ = ["ExecutorCore"]

_new_result = StepResult.trusted


class ExecutorCore:
    """Runs steps; every part is injected, and each one left out gets flujo's default.

    One executor serves one run: the container makes a new one per run, so its
    usage meter and managed state belong to that run alone.
    """

    def __init__(
        self,
        *,
        serializer: Serializer | None = None,
        hasher: Hasher | None = None,
        cache_backend: CacheBackend | None = None,
        telemetry: Telemetry | None = None,
        usage_meter: UsageMeter | None = None,
        state_providers: Mapping[str, StateProvider[Any]] | None = None,
        on_missing_provider: MissingProviderPolicy = "error",
        enable_tracing: bool = True,
    ) -> None:
        # The composition root owns the defaults; the application never names infra classes.
        defaults: Any = None
        if None in (serializer, hasher, cache_backend, telemetry, usage_meter):
            from flujo.containers import default_parts

            defaults = default_parts()
        self.serializer: Serializer = serializer if serializer is not None else defaults.serializer
        self.hasher: Hasher = hasher if hasher is not None else defaults.hasher
        self.cache_backend: CacheBackend = (
            cache_backend if cache_backend is not None else defaults.cache_backend
        )
        self.telemetry: Telemetry = telemetry if telemetry is not None else defaults.telemetry
        self.usage_meter: UsageMeter = (
            usage_meter if usage_meter is not None else defaults.usage_meter
        )
        self.enable_tracing = enable_tracing
        self._state = ManagedState(
            dict(state_providers or {}),
            serializer=self.serializer,
            hasher=self.hasher,
            telemetry=self.telemetry,
            on_missing_provider=on_missing_provider,
        )

    @property
    def state_providers(self) -> Mapping[str, StateProvider[Any]]:
        """The provider registry this executor hydrates from and persists to."""
        return self._state.providers

    async def hydrate(self, context: BaseModel) -> None:
        """Load every reference of ``context`` that holds no value yet (all concurrently)."""
        await self._state.hydrate(context)

    async def finalize(self, context: BaseModel) -> None:
        """Save references set, or changed in place, since their last save (end of a run)."""
        await self._state.persist_mutated(context)

    async def execute(
        self,
        step: Step[Any, Any],
        data: Any,
        *,
        context: BaseModel | None = None,
        resources: Any = None,
    ) -> StepResult:
        """Run ``step`` on ``data`` and return its result; failures in user code never raise.

        References of ``context`` not yet hydrated are loaded first; those the step
        ``set()`` are saved after it (retried like the step) before this returns.
        """
        managed = context is not None and bool(reference_fields(type(context)))
        config = step.config
        span = (
            self.telemetry.start_span("flujo.step", {"step.name": step.name})
            if self.enable_tracing
            else None
        )
        start = time.perf_counter()
        attempts = 0
        out: Any = None
        try:
            if managed:
                assert context is not None
                await self._state.hydrate(context)
            while True:
                attempts += 1
                try:
                    if config.timeout_s is None and not config.run_in_thread:
                        out = step.invoke(data, context, resources)
                        if step.is_async or inspect.isawaitable(out):
                            out = await out
                    else:
                        out = await _guarded(step, data, context, resources, config)
                    break
                except Exception as exc:
                    if managed:
                        assert context is not None
                        self._state.discard_changes(context)
                    if attempts <= config.max_retries:
                        if managed:
                            assert context is not None
                            await self._state.hydrate(context)  # the retry starts from saved state
                        continue
                    return self._failed(step, exc, attempts, start, span)
            if managed:
                assert context is not None
                await self._persist(context, config)
        except StateError as exc:
            if managed:
                assert context is not None
                self._state.discard_changes(context)
            return self._failed(step, exc, attempts, start, span)
        cost, tokens = 0.0, 0
        if type(out) is StepOutput:
            cost, tokens, out = out.cost_usd, out.tokens, out.value
            self.usage_meter.add(cost, tokens)
        if span is not None:
            span.set_attribute("step.attempts", attempts)
            span.end()
        return _new_result(
            name=step.name,
            output=out,
            success=True,
            attempts=attempts,
            latency_s=time.perf_counter() - start,
            feedback=None,
            cost_usd=cost,
            token_counts=tokens,
        )

    async def _persist(self, context: BaseModel, config: StepConfig) -> None:
        for attempt in range(config.max_retries + 1):
            try:
                await self._state.persist_changed(context)
                return
            except StateError:
                if attempt == config.max_retries:
                    raise

    def _failed(
        self, step: Step[Any, Any], exc: Exception, attempts: int, start: float, span: Any
    ) -> StepResult:
        feedback = f"{type(exc).__name__}: {_describe(exc)}"
        if span is not None:
            span.set_attribute("step.attempts", attempts)
            span.record_exception(exc)
            span.end()
        return _new_result(
            name=step.name,
            output=None,
            success=False,
            attempts=attempts,
            latency_s=time.perf_counter() - start,
            feedback=feedback,
            cost_usd=0.0,
            token_counts=0,
        )


async def _guarded(
    step: Step[Any, Any], data: Any, context: Any, resources: Any, config: StepConfig
) -> Any:
    """Run one attempt in a worker thread and/or under a timeout."""
    if step.is_async:
        pending: Any = step.invoke(data, context, resources)
    else:
        # A sync callable cannot be interrupted inline, so a timeout needs a thread.
        pending = asyncio.to_thread(_call_in_thread, step, data, context, resources)
    if config.timeout_s is None:
        out = await pending
    else:
        try:
            async with asyncio.timeout(config.timeout_s):
                out = await pending
                if inspect.isawaitable(out):
                    out = await out
        except TimeoutError as exc:
            raise StepTimeoutError(
                f"step {step.name!r} took longer than timeout_s={config.timeout_s}"
            ) from exc
    if inspect.isawaitable(out):
        out = await out
    return out


def _call_in_thread(step: Step[Any, Any], data: Any, context: Any, resources: Any) -> Any:
    try:
        return step.invoke(data, context, resources)
    except StopIteration as exc:
        # A StopIteration cannot cross into a future (asyncio would never resolve it).
        raise RuntimeError(f"step {step.name!r} raised StopIteration") from exc


def _describe(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"
