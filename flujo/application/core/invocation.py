"""How one attempt calls a step: inline, in a worker thread, or under a timeout."""

from __future__ import annotations

import inspect
from typing import Any

from flujo.domain.dsl.step import Step
from flujo.domain.errors import StepTimeoutError
from flujo.domain.policies import StepConfig

__all__ = ["asyncio_sleep", "describe", "guarded"]


async def asyncio_sleep(seconds: float) -> None:
    """Sleep on the running loop (the executor's default backoff sleep)."""
    import asyncio  # not at module level: see runner._run_sync

    await asyncio.sleep(seconds)


async def guarded(
    step: Step[Any, Any], data: Any, context: Any, resources: Any, config: StepConfig
) -> Any:
    """Run one attempt in a worker thread and/or under a timeout."""
    import asyncio

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


def describe(exc: BaseException) -> str:
    """Return ``str(exc)``, or a placeholder when the exception cannot print itself."""
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"
