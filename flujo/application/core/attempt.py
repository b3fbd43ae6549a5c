"""One step's attempts, through its policies: input processing, cache, retry, scope, timeout.

Every step takes this one path; a policy the step does not configure costs a
test of its config and nothing more. In order, outside in:

- input processors, once;
- the cache: a hit returns the stored output and the step does not run;
- retry: attempts until one succeeds or ``max_retries`` are spent, with backoff;
- scope: each attempt runs in its own scope (``flujo.application.core.scope``),
  committed when it succeeds and dropped when it fails; isolating when
  something in this process runs after a failure (a retry, a fallback) or a
  timed-out thread could outlive the attempt;
- the attempt: the call (inline, in a thread, under a timeout, or a control-flow
  construct), output processors, validators and the step's own usage limits.

The fallback, and saving what a committed attempt staged, belong to the caller
(``ExecutorCore``): a fallback is a step of its own.
"""

from __future__ import annotations

import inspect
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.application.core.control_flow import run_composite
from flujo.application.core.invocation import guarded, within
from flujo.application.core.outcome import Attempts, ended, settle
from flujo.application.core.scope import LeanAccess, Scope
from flujo.application.core.session import StateSession
from flujo.application.core.step_policies import apply_processors, run_validators
from flujo.domain.dsl.control_flow import CompositeStep
from flujo.domain.dsl.step import Step
from flujo.domain.errors import (
    ConfigurationError,
    RunLeasedError,
    StateError,
    UsageLimitExceededError,
)
from flujo.domain.interfaces import Span
from flujo.domain.models import StepResult
from flujo.domain.policies import StepOutput
from flujo.domain.state_access import ACCESS

if TYPE_CHECKING:
    from flujo.application.core.executor_core import ExecutorCore

__all__ = ["Attempts", "isolates", "run_step"]

_new_result = StepResult.trusted

_FINAL = (ConfigurationError, UsageLimitExceededError, RunLeasedError)
"""Failures a retry cannot mend (a lost lease: the run is another process's now)."""

# What a sync step most often returns, told from an awaitable by one set lookup:
# inspect.isawaitable asks the Awaitable ABC about any other type (~1 µs after I/O).
_PLAIN = frozenset({type(None), bool, int, float, str, bytes, dict, list, tuple})


def isolates(step: Step[Any, Any]) -> bool:
    """Whether an attempt of ``step`` needs its changes kept apart until it succeeds."""
    config = step.config
    return (
        config.max_retries > 0
        or step.fallback_step is not None
        or (config.timeout_s is not None and not step.is_async and not step.composite)
    )


async def run_step(  # noqa: C901 - the attempt loop stays inline: one coroutine per step
    executor: ExecutorCore,
    step: Step[Any, Any],
    data: Any,
    context: BaseModel | None,
    resources: Any,
) -> StepResult:
    """Run ``step`` to its result (what ``ExecutorCore.execute`` documents)."""
    # One coroutine per step, from the run loop to the call: the attempts run inline here.
    start = time.perf_counter()
    session = executor.session
    isolate = isolates(step)
    if type(context) is session.plain_model:  # known after its first step: no references
        managed, parent, lean = False, None, None
    elif (
        type(access := ACCESS.get()) is LeanAccess
        and access.run_context is context
        and access.session is session
        and not session.new_refs
    ):
        # A step of the run's own context, every reference bound: the common case, inline.
        managed, parent = True, None
        lean = None if isolate or step.composite else access
    else:
        managed, parent, lean, unbound = _placement(session, step, context, isolate)
        if unbound:
            failed = await _hydrate(session, step, context)
            if failed is not None:
                return failed
    config = step.config
    done = Attempts()
    key = None
    given = data  # a fallback gets the input as given, not as processed
    if config.input_processors or config.cache:
        data, key, finished = await _before_attempts(executor, step, data, context, done)
        if finished:
            return ended(executor, step, done, start)
    scoped = managed or isolate
    plain = config.plain and not step.composite
    scope = token = None
    while True:
        done.attempts += 1
        if lean is not None:
            if lean.target is not context:  # LeanAccess.begin, inline: every managed step
                lean.begin(step.name, context)
        elif scoped:
            scope = Scope(session, parent, step.name, context, isolate=isolate)
            token = ACCESS.set(scope)
        span = executor.span(step, done.attempts, cache_hit=False)
        try:
            run_on = context if scope is None else scope.context
            if plain:
                # Nothing around the call: invoked here, one coroutine less per step.
                output = step.invoke(data, run_on, resources)
                if step.is_async or (type(output) not in _PLAIN and inspect.isawaitable(output)):
                    output = await output
                output = _spent(output, done)
            else:
                output = await _attempt(executor, step, data, run_on, resources, done)
        except Exception as exc:
            _dropped(lean, scope, span, exc, f"step {step.name!r}, which read it, failed")
            if done.attempts > config.max_retries or isinstance(exc, _FINAL):
                done.error = exc
                break
            await executor.backoff(config, done.attempts)
            continue
        except BaseException as exc:  # cancelled: what it changed in place is not the run's
            _dropped(lean, scope, span, exc, f"step {step.name!r}, which read it, was cancelled")
            raise
        finally:
            if token is not None:
                ACCESS.reset(token)
        _committed(lean, scope, span, done, output)
        if key is not None:
            await executor.cache_store(step, key, output)
        break
    by_hand = managed and parent is None and not session.deferred
    if done.error is None and not by_hand:
        return ended(executor, step, done, start)
    return await settle(executor, step, given, context, resources, done, start, by_hand)


def _placement(
    session: StateSession, step: Step[Any, Any], context: Any, isolate: bool
) -> tuple[bool, Scope | None, LeanAccess | None, bool]:
    """Say where the step runs: ``(managed, parent scope, lean scope, references to load)``.

    The parent is the scope of the branch, item or iteration the step runs in; the
    lean scope is the run's, for a step at the top that keeps nothing apart.
    """
    access = ACCESS.get()
    run_lean = access if type(access) is LeanAccess and access.session is session else None
    keeps_apart = isolate or step.composite
    if run_lean is not None and run_lean.run_context is context:
        # The run's own context, bound at its start: only references made since are unbound.
        return True, None, (None if keeps_apart else run_lean), session.new_refs
    if not session.manages(context):
        return False, None, None, False
    if type(access) is Scope and access.session is session:
        return True, access, None, False
    return True, None, (None if keeps_apart else run_lean), session.needs_hydration(context)


async def _hydrate(session: StateSession, step: Step[Any, Any], context: Any) -> StepResult | None:
    """Load the context's unbound references; a failed result if they cannot be loaded."""
    try:
        await session.hydrate(context)
    except StateError as exc:
        return _new_result(step.name, None, False, 0, 0.0, f"{type(exc).__name__}: {exc}", 0.0, 0)
    return None


def _dropped(
    lean: LeanAccess | None,
    scope: Scope | None,
    span: Span | None,
    exc: BaseException,
    reason: str,
) -> None:
    """End a failed attempt: its scope rolled back, its span told why."""
    if lean is not None:
        scope = lean.end()
    if scope is not None:
        scope.rollback(reason)
    if span is not None:
        span.record_exception(exc)
        span.end()


def _committed(
    lean: LeanAccess | None,
    scope: Scope | None,
    span: Span | None,
    done: Attempts,
    output: Any,
) -> None:
    """End a successful attempt: its scope committed, its span given what it spent."""
    if lean is not None and lean.touched:  # LeanAccess.end, inline: every managed step
        scope = lean.end()
    if scope is not None:
        scope.commit()
    if span is not None:
        span.set_attribute("flujo.cost_usd", done.cost_usd)
        span.set_attribute("flujo.tokens", done.tokens)
        span.end()
    done.output = output


async def _before_attempts(
    executor: ExecutorCore, step: Step[Any, Any], data: Any, context: Any, done: Attempts
) -> tuple[Any, str | None, bool]:
    """Process the input and look the cache up; return ``(data, key, finished)``."""
    config = step.config
    try:
        if config.input_processors:
            data = await apply_processors(config.input_processors, data, context)
        key = executor.cache_key(step, data, context) if config.cache else None
    except Exception as exc:
        done.error, done.attempts = exc, 1
        return data, None, True
    if key is not None and await executor.cache_lookup(step, key, done):
        return data, key, True
    return data, key, False


async def _attempt(
    executor: ExecutorCore,
    step: Step[Any, Any],
    data: Any,
    context: Any,
    resources: Any,
    done: Attempts,
) -> Any:
    """One attempt: the call, then output processors, validators and the step's limits."""
    config = step.config
    if step.composite:
        out = await _composite(executor, step, data, context, resources, done)
    elif config.timeout_s is None and not config.run_in_thread:
        out = step.invoke(data, context, resources)
        if step.is_async or (type(out) not in _PLAIN and inspect.isawaitable(out)):
            out = await out
    else:
        out = await guarded(step, data, context, resources, config)
    out = _spent(out, done)
    if config.output_processors:
        out = await apply_processors(config.output_processors, out, context)
    if config.validators:
        await run_validators(step, config.validators, out, context)
    limits = config.usage_limits
    if limits is not None:
        # Checked inside the attempt: a step over its own limit fails and keeps nothing.
        exceeded = limits.exceeded_by(done.cost_usd, done.tokens)
        if exceeded is not None:
            raise UsageLimitExceededError(f"step {step.name!r}: {exceeded}")
    return out


def _spent(out: Any, done: Attempts) -> Any:
    """Unwrap a ``StepOutput``, adding what it spent to the attempts."""
    if type(out) is StepOutput:
        done.cost_usd += out.cost_usd
        done.tokens += out.tokens
        return out.value
    return out


async def _composite(
    executor: ExecutorCore,
    step: Step[Any, Any],
    data: Any,
    context: Any,
    resources: Any,
    done: Attempts,
) -> Any:
    assert isinstance(step, CompositeStep)
    history: list[StepResult] = []
    run = run_composite(executor, step, data, context, resources, history)
    try:
        if step.config.timeout_s is None:
            return await run
        return await within(step, step.config.timeout_s, run)
    finally:
        # However the construct ended, what its nested steps ran and spent is kept.
        done.nested = history  # the last attempt's; every attempt's spending counts
        done.cost_usd += sum(r.cost_usd for r in history)
        done.tokens += sum(r.token_counts for r in history)
