"""How a step calls what it wraps: ``AgentLike``, ``StepInvoker`` and the signature checks.

A callable or an agent's ``run`` gets the step input first, then ``context`` and
``resources`` only if it declares them; the invoker made here is fixed once per step,
so the executor calls every step the same way, ``invoke(data, context, resources)``.
Nothing here knows ``Step``: ``step.py`` builds on it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from flujo.domain.errors import ConfigurationError

__all__ = [
    "AgentLike",
    "StepInvoker",
    "accepted_keywords",
    "invoker_of",
    "is_async_callable",
    "make_invoker",
]

StepInvoker = Callable[[Any, Any, Any], Any]
"""``(data, context, resources) -> value or awaitable``: how the executor calls a step."""


class AgentLike(Protocol):
    """Any object with ``async run(data, ...)``.

    Its ``run`` gets ``context`` and ``resources`` keywords when it declares them
    (or ``**kwargs``).
    """

    @property
    def run(self) -> Callable[..., Awaitable[Any]]:
        """The coroutine function producing the step's output from its input."""
        ...


def accepted_keywords(fn: Callable[..., Any]) -> tuple[bool, bool, bool]:
    """Return (takes ``context``, takes ``resources``, takes ``**kwargs``) for ``fn``.

    The first positional parameter is the step input; a callable without one is a
    ``ConfigurationError``.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature take only the input
        return False, False, False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise ConfigurationError(
            f"{getattr(fn, '__qualname__', fn)!r} takes no positional parameter; a step "
            "callable receives the step input as its first argument"
        )
    if positional:
        params.remove(positional[0])
    names = {p.name: p.kind for p in params}
    keyword_kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    return names.get("context") in keyword_kinds, names.get("resources") in keyword_kinds, var_kw


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns an awaitable (a coroutine function or async object)."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    return call is not None and inspect.iscoroutinefunction(call)


def make_invoker(fn: Callable[..., Any], with_context: bool, with_resources: bool) -> StepInvoker:
    """Return ``invoke(data, context, resources)`` passing ``fn`` only what it declares."""
    # Each shape gets its own closure so the hot path does no branching per call.
    if with_context and with_resources:
        return lambda data, context, resources: fn(data, context=context, resources=resources)
    if with_context:
        return lambda data, context, resources: fn(data, context=context)
    if with_resources:
        return lambda data, context, resources: fn(data, resources=resources)
    return lambda data, context, resources: fn(data)


def invoker_of(fn: Callable[..., Any] | None, agent: Any) -> StepInvoker | None:
    """Return the invoker of a step wrapping ``fn``, or running ``agent`` (``None``: neither).

    What ``Step.from_callable`` and ``Step(name, agent=...)`` make, made again for a
    step that arrived by pickle (an invoker is a closure and does not travel).
    """
    if fn is not None:
        with_context, with_resources, _ = accepted_keywords(fn)
        return make_invoker(fn, with_context, with_resources)
    if agent is not None:
        run = agent.run
        with_context, with_resources, var_kw = accepted_keywords(run)
        return make_invoker(run, with_context or var_kw, with_resources or var_kw)
    return None
