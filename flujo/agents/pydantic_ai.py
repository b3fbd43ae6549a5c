"""pydantic-ai agents as flujo steps (install the ``ai`` extra).

``agent_step(agent, name=...)`` returns a ``Step`` whose output is the agent's
output and whose ``StepResult`` carries the run's token usage and cost, which
also count toward ``UsageLimits``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Unpack

from pydantic import BaseModel

from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError
from flujo.domain.policies import StepOptions, StepOutput

__all__ = ["PydanticAIAgent", "agent_step"]

Pricing = Callable[[Any], float]
"""``(usage) -> cost in USD`` for one agent run; ``usage`` is pydantic-ai's ``RunUsage``."""


def _prompt(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, BaseModel):
        return data.model_dump_json()
    try:
        return json.dumps(data, default=str)
    except (TypeError, ValueError):
        return str(data)


class PydanticAIAgent:
    """Runs a pydantic-ai ``Agent`` on the step input; reports its tokens and cost.

    ``price`` turns the run's usage into dollars (pydantic-ai reports tokens, not
    prices); ``deps`` builds the agent's dependencies from ``(context, resources)``
    (default: the runner's resources).
    """

    def __init__(
        self,
        agent: Any,
        *,
        price: Pricing | None = None,
        deps: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        if not callable(getattr(agent, "run", None)):
            raise ConfigurationError(f"expected a pydantic-ai Agent, got {type(agent).__name__}")
        if price is not None and not callable(price):
            raise ConfigurationError(f"price must be callable, got {price!r}")
        if deps is not None and not callable(deps):
            raise ConfigurationError(f"deps must be callable (context, resources), got {deps!r}")
        self.agent = agent
        self._price = price
        self._deps = deps

    async def run(self, data: Any, *, context: Any = None, resources: Any = None) -> Any:
        """Run the agent once and return its output with usage as a ``StepOutput``."""
        deps = self._deps(context, resources) if self._deps is not None else resources
        result = await self.agent.run(_prompt(data), deps=deps)
        usage = result.usage  # a property in pydantic-ai 1.x+, a method before
        if not hasattr(usage, "total_tokens") and callable(usage):
            usage = usage()
        tokens = int(getattr(usage, "total_tokens", 0) or 0)
        cost = float(self._price(usage)) if self._price is not None else 0.0
        return StepOutput(result.output, cost_usd=cost, tokens=tokens)


def agent_step(
    agent: Any,
    *,
    name: str,
    price: Pricing | None = None,
    deps: Callable[[Any, Any], Any] | None = None,
    **options: Unpack[StepOptions],
) -> Step[Any, Any]:
    """Return a step that runs a pydantic-ai agent (with flujo's step options)."""
    return Step(name, agent=PydanticAIAgent(agent, price=price, deps=deps), **options)
