"""``ShippingBackend``: an execution backend that ships every leaf step through pickle, in process.

It runs each leaf step as a remote backend would — the step, its input and the
references' values pickled, the context as JSON, a worker-side executor of its
own, what the step changed pickled back and applied by the driver — but in this
process, on this event loop. A pipeline that passes under it travels: use it to
test that steps, inputs and outputs survive the trip, and that what a shipped
step changes lands exactly as it does in-process, without a cluster.
``shipped`` counts the leaf steps it ran.
"""

from __future__ import annotations

import pickle
from typing import Any

from flujo.application.core.executor_core import ExecutorCore
from flujo.application.core.leaf_worker import run_work
from flujo.domain.dsl.step import Step
from flujo.domain.leaf_work import LeafOutcome, LeafWork
from flujo.domain.models import PipelineContext

__all__ = ["ShippingBackend"]


class ShippingBackend:
    """Runs steps like a remote backend does, with pickle standing in for the network."""

    ships_steps = False
    """Not checked when a runner is built: what does not pickle fails the step, as a test wants."""

    def __init__(self, executor: ExecutorCore | None = None) -> None:
        self.shipped: list[str] = []
        """Names of the leaf steps shipped, in order (nested ones included)."""
        self.executor = executor
        if executor is not None:
            executor.remote = self

    def for_run(self, executor: ExecutorCore) -> ShippingBackend:
        """Serve the run of ``executor``; the names shipped are counted here too."""
        bound = ShippingBackend(executor)
        bound.shipped = self.shipped
        return bound

    def execute_step(
        self,
        step: Step[Any, Any],
        data: Any,
        *,
        context: PipelineContext | None,
        resources: Any,
    ) -> Any:
        """Run a top-level step (its leaves are shipped through ``run_leaf``)."""
        if self.executor is None:
            raise RuntimeError("ShippingBackend serves a run once bound with for_run(executor)")
        return self.executor.execute(step, data, context=context, resources=resources)

    async def run_leaf(self, work: LeafWork) -> LeafOutcome:
        """Pickle ``work``, run it on an executor of its own, and pickle the outcome back."""
        self.shipped.append(work.step.name)
        arrived: LeafWork = pickle.loads(pickle.dumps(work))
        outcome = await run_work(arrived)
        returned: LeafOutcome = pickle.loads(pickle.dumps(outcome))
        return returned
