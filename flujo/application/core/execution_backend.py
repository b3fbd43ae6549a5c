"""The default execution backend: steps run in this process, on the running event loop."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from flujo.application.core.executor_core import ExecutorCore
from flujo.domain.dsl.step import Step
from flujo.domain.models import PipelineContext, StepResult

__all__ = ["LocalExecutionBackend"]


class LocalExecutionBackend:
    """Hands each step to an ``ExecutorCore`` in-process."""

    __slots__ = ("executor",)

    def __init__(self, executor: ExecutorCore) -> None:
        self.executor = executor

    def for_run(self, executor: ExecutorCore) -> LocalExecutionBackend:
        """Return a backend running steps with ``executor`` (the run's own)."""
        return LocalExecutionBackend(executor)

    def execute_step(
        self,
        step: Step[Any, Any],
        data: Any,
        *,
        context: PipelineContext | None,
        resources: Any,
    ) -> Coroutine[Any, Any, StepResult]:
        """Run one step through the executor (its coroutine, awaited by the caller)."""
        return self.executor.execute(step, data, context=context, resources=resources)
