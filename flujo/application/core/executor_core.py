"""``ExecutorCore``: runs one step through its attempts, fallback and managed state.

``ExecutorCore()`` with no arguments works (the spec drives it by hand): the
parts left out come from ``flujo.defaults``, the composition root's defaults
without the container, imported when first needed so the engine never imports
the container.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from pydantic import BaseModel

from flujo.application.core.attempt import run_step
from flujo.application.core.invocation import asyncio_sleep
from flujo.application.core.outcome import Attempts
from flujo.application.core.remote_leaf import drive_leaf
from flujo.application.core.session import MissingProviderPolicy, StateSession
from flujo.application.core.step_policies import cache_key
from flujo.domain.dsl.step import Step
from flujo.domain.errors import UncacheableInputError
from flujo.domain.interfaces import (
    CacheBackend,
    Hasher,
    Serializer,
    Span,
    StateProvider,
    Telemetry,
    UsageMeter,
)
from flujo.domain.leaf_work import LeafRunner
from flujo.domain.models import StepResult
from flujo.domain.policies import StepConfig

__all__ = ["ExecutorCore"]


class ExecutorCore:
    """Runs steps; every part is injected, and each one left out gets flujo's default.

    One executor serves one run: the container makes a new one per run, so its
    usage meter, state session and once-per-run warnings belong to that run.
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
        load_timeout_s: float | None = 30.0,
        save_timeout_s: float | None = 30.0,
        watch_in_place: bool = True,
        pipeline_name: str = "",
    ) -> None:
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
        # A telemetry that says it records no spans (logging below INFO, the null one) gets
        # none: building and ending do-nothing spans costs every step a few tenths of a µs.
        self.tracing = (
            enable_tracing and getattr(self.telemetry, "records_spans", True) is not False
        )
        """Whether this executor's run opens spans (asked of the telemetry once per run)."""
        self.pipeline_name = pipeline_name
        """Part of every cache key, so equally named steps of two pipelines never meet."""
        self._sleep = sleep if sleep is not None else asyncio_sleep
        self._random = random_source
        self._warned: set[str] = set()
        self.remote: LeafRunner | None = None
        """Where leaf steps run when not here: set by a remote execution backend for its run."""
        self.session = StateSession(
            dict(state_providers or {}),
            serializer=self.serializer,
            hasher=self.hasher,
            telemetry=self.telemetry,
            on_missing_provider=on_missing_provider,
            load_timeout_s=load_timeout_s,
            save_timeout_s=save_timeout_s,
            watch_in_place=watch_in_place,
        )

    @property
    def state_providers(self) -> Mapping[str, StateProvider[Any]]:
        """The provider registry this executor hydrates from and persists to."""
        return self.session.providers

    async def hydrate(self, context: BaseModel) -> None:
        """Load every reference of ``context`` that holds no value yet (all concurrently)."""
        await self.session.hydrate(context)

    async def finalize(self, context: BaseModel) -> None:
        """Save references set, or changed in place, since their last save (end of a run)."""
        owed = self.session.changed_in_place(context)
        self.session.staged.clear()
        if owed:
            await self.session.save(owed, writer="")
            for entry in owed:
                entry.read, entry.digest = False, None
                entry.publish()

    def execute(
        self,
        step: Step[Any, Any],
        data: Any,
        *,
        context: BaseModel | None = None,
        resources: Any = None,
    ) -> Coroutine[Any, Any, StepResult]:
        """Run ``step`` on ``data`` and return its result; failures in user code never raise.

        In order: references of ``context`` not yet hydrated are loaded; input
        processors run; a cached result is used if there is one; otherwise the
        step runs, retried with backoff, each attempt in its own scope with its
        output processed and validated; if it still failed, its fallback runs on
        the same input, from the state before the step. Driven by hand (not by a
        run), what the step ``set()`` is saved before this returns.
        """
        # A plain method handing back the step's coroutine: awaiting it costs one frame.
        if self.remote is not None and not step.composite:
            return drive_leaf(self, step, data, context, resources, self.remote)
        return run_step(self, step, data, context, resources)

    # -- what the attempt policies ask of the executor -------------------------------------

    def span(self, step: Step[Any, Any], attempt: int, *, cache_hit: bool) -> Span | None:
        """Open a span for one attempt (``None`` when tracing is off)."""
        if not self.tracing:
            return None
        return self.telemetry.start_span(
            "flujo.step",
            {"flujo.step.name": step.name, "flujo.attempt": attempt, "flujo.cache_hit": cache_hit},
        )

    async def backoff(self, config: StepConfig, attempts: int) -> None:
        """Wait before retry number ``attempts`` as the step's backoff says."""
        delay = config.retry_delay(attempts, self._random)
        if delay > 0:
            await self._sleep(delay)

    def cache_key(self, step: Step[Any, Any], data: Any, context: BaseModel | None) -> str | None:
        """Return the step's cache key, or ``None`` (with one warning) when it has none."""
        try:
            if (
                step.config.cache_key_fn is None
                and step.takes_context
                and self.session.manages(context)
            ):
                # Referenced data is not in the key, so only the user can say what identifies it.
                raise UncacheableInputError(
                    f"step {step.name!r} is cached and reads a context holding "
                    "ContextReferences, whose data is not part of the key: give it a cache_key_fn"
                )
            return cache_key(
                step,
                data,
                context,
                serializer=self.serializer,
                hasher=self.hasher,
                pipeline_name=self.pipeline_name,
            )
        except UncacheableInputError as exc:
            if step.config.cache == "strict":
                raise
            self.warn_once(f"cache:{step.name}", f"{exc}; it runs uncached")
            return None

    async def cache_lookup(self, step: Step[Any, Any], key: str, done: Attempts) -> bool:
        """Fill ``done`` from the cache and return ``True`` on a hit."""
        try:
            cached = await self.cache_backend.get(key)
        except Exception as exc:  # a cache is an optimisation: its failure must not fail
            self.warn_once(
                f"cache-get:{step.name}",
                f"cache read for step {step.name!r} failed ({type(exc).__name__}: {exc}); "
                "the step runs uncached",
            )
            return False
        if type(cached) is dict and "output" in cached:
            span = self.span(step, 0, cache_hit=True)
            if span is not None:
                span.end()
            done.output, done.cache_hit = cached["output"], True
            return True
        return False

    async def cache_store(self, step: Step[Any, Any], key: str, output: Any) -> None:
        """Store a successful output (a failing cache only warns)."""
        try:
            await self.cache_backend.set(key, {"output": output}, step.config.cache_ttl_s)
        except Exception as exc:
            self.warn_once(
                f"cache-set:{step.name}",
                f"caching the output of step {step.name!r} "
                f"failed ({type(exc).__name__}: {exc}); it was not cached",
            )

    def warn_once(self, key: str, message: str) -> None:
        """Report ``message`` the first time ``key`` is seen in this run."""
        if key not in self._warned:
            self._warned.add(key)
            self.telemetry.warning(message)
