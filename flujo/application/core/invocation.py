"""How one attempt calls a step: inline, in a worker thread, or under a timeout.

A sync step under a timeout runs on a daemon thread of its own: when the
timeout fires the attempt fails at once and ``run()`` does not wait for the
thread (asyncio's default executor would be joined when the loop closes). The
thread cannot be stopped, so it may still finish its own work in the outside
world; what it does to the context lands in its attempt's copy, which was
dropped with the attempt's scope.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import threading
from collections.abc import Awaitable
from typing import Any

from flujo.domain.dsl.step import Step
from flujo.domain.errors import StepTimeoutError
from flujo.domain.policies import StepConfig

__all__ = ["asyncio_sleep", "describe", "guarded", "within"]


async def asyncio_sleep(seconds: float) -> None:
    """Sleep on the running loop (the executor's default backoff sleep)."""
    import asyncio  # not at module level: see sync_door.run_sync

    await asyncio.sleep(seconds)


async def guarded(
    step: Step[Any, Any], data: Any, context: Any, resources: Any, config: StepConfig
) -> Any:
    """Run one attempt in a worker thread and/or under a timeout."""
    import asyncio

    if step.is_async:
        pending: Any = step.invoke(data, context, resources)
    elif config.timeout_s is not None:
        pending = _on_daemon_thread(step, data, context, resources)
    else:
        pending = asyncio.to_thread(_call_in_thread, step, data, context, resources)
    out = (
        await pending if config.timeout_s is None else await within(step, config.timeout_s, pending)
    )
    if inspect.isawaitable(out):
        out = await out
    return out


async def within(step: Step[Any, Any], seconds: float, pending: Awaitable[Any]) -> Any:
    """Await ``pending`` (and an awaitable it returns) for ``seconds`` at most."""
    import asyncio

    try:
        async with asyncio.timeout(seconds):
            out = await pending
            if inspect.isawaitable(out):
                out = await out
            return out
    except TimeoutError as exc:
        raise StepTimeoutError(f"step {step.name!r} took longer than timeout_s={seconds}") from exc


def _on_daemon_thread(step: Step[Any, Any], data: Any, context: Any, resources: Any) -> Any:
    """Start the call on a daemon thread; return a future of its result."""
    import asyncio

    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    # The thread sees this task's context variables: its references reach its own scope.
    run_in = contextvars.copy_context()

    def settle(outcome: Any, error: BaseException | None) -> None:
        if future.done():
            return  # timed out already: nobody waits for this result
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)

    def work() -> None:
        try:
            outcome, error = run_in.run(_call_in_thread, step, data, context, resources), None
        except BaseException as exc:  # handed to the awaiting task
            outcome, error = None, exc
        # RuntimeError: the loop has closed, the run ended without this thread.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome, error)

    threading.Thread(target=work, name=f"flujo-step-{step.name}", daemon=True).start()
    return future


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
