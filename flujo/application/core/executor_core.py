"""``ExecutorCore``: runs one step with its policies, and keeps managed state."""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from flujo.application.core.invocation import asyncio_sleep, describe, guarded
from flujo.application.core.managed_state import ManagedState, MissingProviderPolicy
from flujo.application.core.references import reference_fields
from flujo.application.core.step_policies import apply_processors, cache_key, run_validators
from flujo.domain.dsl.step import Step
from flujo.domain.errors import (
    ConfigurationError,
    StateError,
    StepTimeoutError,
    UncacheableInputError,
    UsageLimitExceededError,
)
from flujo.domain.interfaces import (
    CacheBackend,
    Hasher,
    Serializer,
    Span,
    StateProvider,
    Telemetry,
    UsageMeter,
)
from flujo.domain.models import StepResult
from flujo.domain.policies import StepConfig, StepOutput

__all__ = ["ExecutorCore"]

_new_result = StepResult.trusted


@dataclass(slots=True)
class _Attempts:
    """How the attempts of one step ended."""

    output: Any = None
    error: Exception | None = None
    attempts: int = 0
    cache_hit: bool = False
    cost_usd: float = 0.0
    tokens: int = 0
    nested: list[StepResult] | None = None
    """Results of the steps a control-flow step ran (their usage is metered already)."""


class ExecutorCore:
    """Runs steps; every part is injected, and each one left out gets flujo's default.

    One executor serves one run: the container makes a new one per run, so its
    usage meter, managed state and once-per-run warnings belong to that run.
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
        sleep: Callable[[float], Awaitable[None]] | None = None,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        # The composition root owns the defaults; the application never names infra classes.
        defaults: Any = None
        if None in (serializer, hasher, cache_backend, telemetry, usage_meter):
            from flujo.defaults import default_parts

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
        self._sleep = sleep if sleep is not None else asyncio_sleep
        self._random = random_source
        self._warned: set[str] = set()
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

        In order: references of ``context`` not yet hydrated are loaded; input
        processors run; a cached result is used if there is one; otherwise the
        step runs, retried with backoff, each attempt's output processed and
        validated; references the step ``set()`` are saved; if it still failed,
        its fallback runs on the same input.
        """
        start = time.perf_counter()
        managed = context is not None and bool(reference_fields(type(context)))
        config = step.config
        if config.plain and not managed and not step.composite:
            # Fast path: one plain attempt, no state to keep; anything else takes the long way.
            span = self._span(step, 1, cache_hit=False) if self.enable_tracing else None
            try:
                out = step.invoke(data, context, resources)
                if step.is_async or inspect.isawaitable(out):
                    out = await out
            except Exception as exc:
                if span is not None:
                    span.record_exception(exc)
                    span.end()
                done = _Attempts(attempts=1, error=exc)
                if config.max_retries:
                    await self._before_retry(context, config, 1)
                    done = await self._attempts(step, data, context, resources, done)
                return await self._finish(step, data, context, resources, done, start)
            cost, tokens = 0.0, 0
            if type(out) is StepOutput:
                cost, tokens, out = out.cost_usd, out.tokens, out.value
                self.usage_meter.add(cost, tokens)
            if span is not None:
                span.set_attribute("flujo.cost_usd", cost)
                span.set_attribute("flujo.tokens", tokens)
                span.end()
            return _new_result(
                step.name, out, True, 1, time.perf_counter() - start, None, cost, tokens
            )
        if managed:
            assert context is not None
            try:
                await self._state.hydrate(context)
            except StateError as exc:
                return _new_result(
                    step.name, None, False, 0, 0.0, f"{type(exc).__name__}: {exc}", 0.0, 0
                )
        done = await self._attempts(step, data, context, resources)
        if done.cache_hit:
            # The step did not run: nothing was spent, changed or can fail after it.
            return _new_result(
                step.name, done.output, True, 0, time.perf_counter() - start, None, 0.0, 0, True
            )
        limits = step.config.usage_limits
        if done.error is None and limits is not None:
            # Checked before saving: a step over its own limit fails, and so keeps nothing.
            exceeded = limits.exceeded_by(done.cost_usd, done.tokens)
            if exceeded is not None:
                done.error = UsageLimitExceededError(f"step {step.name!r}: {exceeded}")
        if done.error is None and managed:
            assert context is not None
            try:
                await self._persist(context, step.config)
            except StateError as exc:
                done.error = exc
        return await self._finish(step, data, context, resources, done, start)

    async def _finish(
        self,
        step: Step[Any, Any],
        data: Any,
        context: BaseModel | None,
        resources: Any,
        done: _Attempts,
        start: float,
    ) -> StepResult:
        """Turn how the attempts ended into the step's result (with limits and fallback)."""
        managed = context is not None and bool(reference_fields(type(context)))
        if done.error is not None and managed:
            assert context is not None
            self._state.discard_changes(context)  # a failed step's changes never reach a provider
        if (done.cost_usd or done.tokens) and done.nested is None:
            self.usage_meter.add(done.cost_usd, done.tokens)
        if done.error is not None and step.fallback_step is not None:
            return await self._fallback(step, data, context, resources, done, start)
        if done.error is not None:
            # What failed attempts spent (an output a validator rejected) was still spent.
            return _new_result(
                step.name,
                None,
                False,
                done.attempts,
                time.perf_counter() - start,
                f"{type(done.error).__name__}: {describe(done.error)}",
                done.cost_usd,
                done.tokens,
                step_history=done.nested,
            )
        return _new_result(
            step.name,
            done.output,
            True,
            done.attempts,
            time.perf_counter() - start,
            None,
            done.cost_usd,
            done.tokens,
            done.cache_hit,
            step_history=done.nested,
        )

    async def _attempts(
        self,
        step: Step[Any, Any],
        data: Any,
        context: BaseModel | None,
        resources: Any,
        failed_first: _Attempts | None = None,
    ) -> _Attempts:
        config = step.config
        if failed_first is not None:
            # The fast path already made (and failed) the first attempt of a plain step.
            return await self._retry_loop(step, data, context, resources, failed_first, None)
        done = _Attempts()
        try:
            if config.input_processors:
                data = await apply_processors(config.input_processors, data, context)
            key = self._cache_key(step, data, context) if config.cache else None
        except Exception as exc:
            done.error, done.attempts = exc, 1
            return done
        if key is not None:
            try:
                cached = await self.cache_backend.get(key)
            except Exception as exc:  # a cache is an optimisation: its failure must not fail
                self._warn_once(
                    f"cache-get:{step.name}",
                    f"cache read for step {step.name!r} failed ({type(exc).__name__}: {exc}); "
                    "the step runs uncached",
                )
                cached = None
            if type(cached) is dict and "output" in cached:
                span = self._span(step, 0, cache_hit=True)
                if span is not None:
                    span.end()
                done.output, done.cache_hit = cached["output"], True
                return done
        return await self._retry_loop(step, data, context, resources, done, key)

    async def _retry_loop(
        self,
        step: Step[Any, Any],
        data: Any,
        context: BaseModel | None,
        resources: Any,
        done: _Attempts,
        key: str | None,
    ) -> _Attempts:
        config = step.config
        done.error = None
        while True:
            done.attempts += 1
            span = self._span(step, done.attempts, cache_hit=False)
            try:
                done.output = await self._attempt(step, data, context, resources, done)
            except Exception as exc:
                if span is not None:
                    span.record_exception(exc)
                    span.end()
                if done.attempts > config.max_retries or isinstance(exc, ConfigurationError):
                    done.error = exc
                    return done
                await self._before_retry(context, config, done.attempts)
                continue
            if span is not None:
                span.set_attribute("flujo.cost_usd", done.cost_usd)
                span.set_attribute("flujo.tokens", done.tokens)
                span.end()
            if key is not None:
                await self._cache_set(step, key, done.output)
            return done

    async def _cache_set(self, step: Step[Any, Any], key: str, output: Any) -> None:
        try:
            await self.cache_backend.set(key, {"output": output}, step.config.cache_ttl_s)
        except Exception as exc:
            self._warn_once(
                f"cache-set:{step.name}",
                f"caching the output of step {step.name!r} "
                f"failed ({type(exc).__name__}: {exc}); it was not cached",
            )

    async def _before_retry(
        self, context: BaseModel | None, config: StepConfig, attempts: int
    ) -> None:
        if context is not None and reference_fields(type(context)):
            # The retry starts from what was last saved, not from this attempt's changes.
            self._state.discard_changes(context)
            await self._state.hydrate(context)
        delay = config.retry_delay(attempts, self._random)
        if delay > 0:
            await self._sleep(delay)

    async def _attempt(
        self,
        step: Step[Any, Any],
        data: Any,
        context: BaseModel | None,
        resources: Any,
        done: _Attempts,
    ) -> Any:
        """One attempt: run the step, then its output processors and validators."""
        config = step.config
        if step.composite:
            return await self._composite(step, data, context, resources, done)
        if config.timeout_s is None and not config.run_in_thread:
            out = step.invoke(data, context, resources)
            if step.is_async or inspect.isawaitable(out):
                out = await out
        else:
            out = await guarded(step, data, context, resources, config)
        if type(out) is StepOutput:
            done.cost_usd += out.cost_usd
            done.tokens += out.tokens
            out = out.value
        if config.output_processors:
            out = await apply_processors(config.output_processors, out, context)
        if config.validators:
            await run_validators(step, config.validators, out, context)
        return out

    async def _composite(
        self,
        step: Step[Any, Any],
        data: Any,
        context: BaseModel | None,
        resources: Any,
        done: _Attempts,
    ) -> Any:
        from flujo.application.core.control_flow import run_composite
        from flujo.domain.dsl.control_flow import CompositeStep

        assert isinstance(step, CompositeStep)
        history: list[StepResult] = []
        run = run_composite(self, step, data, context, resources, history)
        try:
            if step.config.timeout_s is None:
                composite = await run
            else:
                import asyncio

                try:
                    async with asyncio.timeout(step.config.timeout_s):
                        composite = await run
                except TimeoutError as exc:
                    raise StepTimeoutError(
                        f"step {step.name!r} took longer than timeout_s={step.config.timeout_s}"
                    ) from exc
        finally:
            # However the construct ended, what its nested steps ran and spent is kept.
            self._take_nested(done, history)
        out = composite.output
        if step.config.output_processors:
            out = await apply_processors(step.config.output_processors, out, context)
        if step.config.validators:
            await run_validators(step, step.config.validators, out, context)
        return out

    @staticmethod
    def _take_nested(done: _Attempts, history: list[StepResult]) -> None:
        done.nested = history  # the last attempt's; every attempt's spending counts
        done.cost_usd += sum(r.cost_usd for r in history)
        done.tokens += sum(r.token_counts for r in history)

    def _span(self, step: Step[Any, Any], attempt: int, *, cache_hit: bool) -> Span | None:
        if not self.enable_tracing:
            return None
        return self.telemetry.start_span(
            "flujo.step",
            {"flujo.step.name": step.name, "flujo.attempt": attempt, "flujo.cache_hit": cache_hit},
        )

    def _cache_key(self, step: Step[Any, Any], data: Any, context: BaseModel | None) -> str | None:
        """Return the step's cache key, or ``None`` (with one warning) when it has none."""
        try:
            return self._make_key(step, data, context)
        except UncacheableInputError as exc:
            if step.config.cache == "strict":
                raise
            self._warn_once(f"cache:{step.name}", f"{exc}; it runs uncached")
            return None

    def _make_key(self, step: Step[Any, Any], data: Any, context: BaseModel | None) -> str:
        if (
            step.config.cache_key_fn is None
            and step.takes_context
            and context is not None
            and reference_fields(type(context))
        ):
            # Referenced data is not in the key, so only the user can say what identifies it.
            raise UncacheableInputError(
                f"step {step.name!r} is cached and reads a context holding ContextReferences, "
                "whose data is not part of the key: give it a cache_key_fn"
            )
        return cache_key(
            step, data, context, serializer=self.serializer, hasher=self.hasher, pipeline_name=""
        )

    async def _fallback(
        self,
        step: Step[Any, Any],
        data: Any,
        context: BaseModel | None,
        resources: Any,
        done: _Attempts,
        start: float,
    ) -> StepResult:
        assert step.fallback_step is not None and done.error is not None
        backup = await self.execute(step.fallback_step, data, context=context, resources=resources)
        reason = f"{type(done.error).__name__}: {describe(done.error)}"
        used = backup.fallback or step.fallback_step.name
        return _new_result(
            step.name,
            backup.output,
            backup.success,
            done.attempts + backup.attempts,
            time.perf_counter() - start,
            f"{reason}; fallback {step.fallback_step.name!r} "
            + ("succeeded" if backup.success else f"failed too: {backup.feedback}"),
            done.cost_usd + backup.cost_usd,  # both were spent
            done.tokens + backup.token_counts,
            backup.cache_hit,
            used if backup.success else None,
        )

    async def _persist(self, context: BaseModel, config: StepConfig) -> None:
        for attempt in range(config.max_retries + 1):
            try:
                await self._state.persist_changed(context)
                return
            except StateError:
                if attempt == config.max_retries:
                    raise
                delay = config.retry_delay(attempt + 1, self._random)
                if delay > 0:
                    await self._sleep(delay)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.telemetry.warning(message)
