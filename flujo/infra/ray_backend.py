"""``RayExecutionBackend``: leaf steps on a Ray cluster; the driver keeps the context and saves.

Every leaf step of a run (nested ones included) is shipped, by default to a pool
of leaf actors kept for all the backend's runs (``workers="actors"``,
``flujo.infra.ray_pool``), or as one Ray task each (``workers="tasks"``): the
step itself once per run (inline the first time, then by object reference), its
input, the context as JSON and each reference's value by object reference, so a
large value travels once per run, not once per step. The worker runs the step's
whole attempt pipeline (``flujo.infra.ray_worker``) and returns its result, the
context after it and the references it changed; the driver applies them through
the step's scope and is the only writer of checkpoints and provider saves.

A worker, actor or node lost while a step runs (Ray's ``WorkerCrashedError``,
``NodeDiedError``, ``OwnerDiedError``, ``ObjectLostError``, ``RayActorError``) is
retried up to ``worker_retries`` times when ``on_worker_lost="retry"``, else (or
then) the step fails with ``WorkerLostError``: never a hang. A step whose
``timeout_s`` budget for all its attempts is spent while it still runs is
stopped: its task cancelled (``ray.cancel(force=True)``), or its actor killed
(Ray cannot cancel a running call of a sync actor), since a sync step's thread
cannot be stopped any other way.

Ray is imported when the first step is shipped, so building a runner costs no
import; without ``address`` and with no ``ray.init`` done, ``ray.init()`` starts or
finds a local cluster as Ray does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from flujo.application.core.executor_core import ExecutorCore
from flujo.domain.dsl.step import Step
from flujo.domain.errors import ConfigurationError, WorkerLostError
from flujo.domain.leaf_work import LeafOutcome, LeafWork, RefKey
from flujo.domain.models import PipelineContext, StepResult
from flujo.infra.ray_pool import ActorPool, Slot

__all__ = ["OnWorkerLost", "RayExecutionBackend", "Workers"]

OnWorkerLost = Literal["retry", "fail"]
"""What a step whose worker or node died does: run again on another worker, or fail."""

Workers = Literal["actors", "tasks"]
"""Where leaf steps run: a pool of leaf actors kept across runs, or one Ray task each."""

_LOST = (
    "WorkerCrashedError",
    "NodeDiedError",
    "OwnerDiedError",
    "ObjectLostError",
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
)
"""Ray's exceptions for a step whose worker, actor, node or data went away."""

_GRACE_S = 5.0
"""Time past a step's own timeout budget before its task is cancelled from the driver."""


class RayExecutionBackend:
    """Runs each leaf step on a Ray cluster (see the module docstring); chosen by the container."""

    ships_steps = True
    """Steps are pickled for workers: a runner checks they can be (``application.travel``)."""

    def __init__(
        self,
        executor: ExecutorCore | None = None,
        *,
        address: str | None = None,
        on_worker_lost: OnWorkerLost = "retry",
        worker_retries: int = 2,
        num_cpus: float | None = None,
        workers: Workers = "actors",
        actors: int | None = None,
        pool: ActorPool | None = None,
    ) -> None:
        if on_worker_lost not in ("retry", "fail"):
            raise ConfigurationError(
                f"on_worker_lost must be 'retry' or 'fail', got {on_worker_lost!r}"
            )
        if worker_retries < 0:
            raise ConfigurationError(f"worker_retries must be >= 0, got {worker_retries}")
        if workers not in ("actors", "tasks"):
            raise ConfigurationError(f"workers must be 'actors' or 'tasks', got {workers!r}")
        if num_cpus is not None and num_cpus <= 0:
            raise ConfigurationError(f"num_cpus must be > 0, got {num_cpus}")
        self.address = address
        self.on_worker_lost: OnWorkerLost = on_worker_lost
        self.worker_retries = worker_retries
        self.num_cpus = num_cpus
        """CPUs a step holds (tasks: 1 when ``None``; actors: Ray's actor default when ``None``)."""
        self.workers: Workers = workers
        self.executor = executor
        self.pool = pool if pool is not None else ActorPool(size=actors, num_cpus=num_cpus)
        """The leaf actors (``workers="actors"``), shared with every run this backend serves."""
        self._task: Any = None
        self._steps: dict[int, tuple[Step[Any, Any], Any]] = {}
        """Each step shipped in this run: id -> (step, its object reference once put)."""
        self._values: dict[tuple[RefKey, int], tuple[Any, Any]] = {}
        """Each reference value shipped in this run, put once: (key, id) -> (value, ref)."""
        if executor is not None:
            executor.remote = self

    def for_run(self, executor: ExecutorCore) -> RayExecutionBackend:
        """Return this backend's settings, and its actor pool, serving the run of ``executor``."""
        return RayExecutionBackend(
            executor,
            address=self.address,
            on_worker_lost=self.on_worker_lost,
            worker_retries=self.worker_retries,
            num_cpus=self.num_cpus,
            workers=self.workers,
            pool=self.pool,
        )

    def close(self) -> None:
        """Kill the pool's leaf actors (they end with this process anyway); later steps make new."""
        self.pool.close()

    def execute_step(
        self,
        step: Step[Any, Any],
        data: Any,
        *,
        context: PipelineContext | None,
        resources: Any,
    ) -> Any:
        """Run a top-level step: control flow here, every leaf shipped to the cluster."""
        if self.executor is None:
            raise ConfigurationError("RayExecutionBackend serves a run once bound to its executor")
        return self.executor.execute(step, data, context=context, resources=resources)

    def _ray(self) -> Any:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False)
        if self._task is None and self.workers == "tasks":
            from flujo.infra.ray_worker import run_shipped

            self._task = ray.remote(num_cpus=self.num_cpus or 1.0, max_retries=0)(run_shipped)
        return ray

    async def run_leaf(self, work: LeafWork) -> LeafOutcome:
        """Ship ``work`` and await its outcome (a lost worker: retried or failed)."""
        ray = self._ray()
        step_ref = self._put_step(ray, work.step)
        values = {
            ident: (self._put_value(ray, ident, value), watch)
            for ident, (value, watch) in work.values.items()
        }
        light = {  # the step and the values travel by reference, beside the rest
            "data": work.data,
            "context_model": work.context_model,
            "context_json": work.context_json,
            "resources": work.resources,
            "pipeline_name": work.pipeline_name,
            "watch_in_place": work.watch_in_place,
        }
        lost = 0
        while True:
            start = time.perf_counter()
            slot = self.pool.take(ray) if self.workers == "actors" else None
            try:
                if slot is None:
                    task = self._task.remote(step_ref, light, values)
                else:
                    task = slot.actor.run.remote(step_ref, light, values)
                outcome: LeafOutcome = await self._answer(ray, task, work.step, slot)
                return outcome
            except Exception as exc:
                if type(exc).__name__ not in _LOST and not _lost_inside(exc):
                    raise
                if slot is not None:
                    if slot.killed:  # the pool killed its actor for another step: not lost
                        continue
                    self.pool.retire(ray, slot)
                lost += 1
                if self.on_worker_lost == "fail" or lost > self.worker_retries:
                    return _lost_outcome(work.step, exc, lost, time.perf_counter() - start, self)
            finally:
                if slot is not None:
                    self.pool.done(slot)

    async def _answer(
        self, ray: Any, task: Any, step: Step[Any, Any], slot: Slot | None
    ) -> LeafOutcome:
        """Await ``task``; past the step's timeout budget, stop it and fail the step."""
        budget = _budget(step)
        if budget is None:
            return await task  # type: ignore[no-any-return]
        waiting = asyncio.ensure_future(_awaited(task))
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), budget)
        except TimeoutError:
            # The stopped call still answers (ActorDiedError, TaskCancelledError) and
            # nothing awaits it any more: its answer is taken, so it is not reported.
            waiting.add_done_callback(_forget)
            if slot is None:
                ray.cancel(task, force=True)
                how = "its task was cancelled"
            else:
                self.pool.retire(ray, slot)
                how = "its actor was killed"
            result = StepResult.trusted(
                step.name,
                None,
                False,
                step.config.max_retries + 1,
                budget,
                f"StepTimeoutError: step {step.name!r} ran past {budget:.1f} s on its Ray "
                f"worker; {how}",
                0.0,
                0,
            )
            return LeafOutcome(result, None, {})

    def _put_step(self, ray: Any, step: Step[Any, Any]) -> Any:
        """Return the step inline its first time in a run, then its one object-store copy.

        A put costs about as much as a task (0.8 ms here), so a step that runs once
        travels inline with its task; one that runs again (a loop, a map) is put once
        and every later task gets it by reference.
        """
        known = self._steps.get(id(step))
        if known is None or known[0] is not step:
            self._steps[id(step)] = (step, None)
            return step
        if known[1] is None:
            known = self._steps[id(step)] = (step, ray.put(step))
        return known[1]

    def _put_value(self, ray: Any, ident: RefKey, value: Any) -> Any:
        key = (ident, id(value))
        known = self._values.get(key)
        if known is None or known[0] is not value:
            known = self._values[key] = (value, ray.put(value))
        return known[1]


async def _awaited(task: Any) -> Any:
    return await task


def _forget(done: asyncio.Future[Any]) -> None:
    """Take the outcome of a call the step gave up on (asyncio reports one never taken)."""
    if not done.cancelled():
        done.exception()


def _budget(step: Step[Any, Any]) -> float | None:
    """Return the longest a step's attempts may take on a worker (``None``: no timeout)."""
    config = step.config
    if config.timeout_s is None:
        return None
    attempts = config.max_retries + 1
    waits = sum(config.retry_delay(retry, lambda: 1.0) for retry in range(1, attempts))
    return config.timeout_s * attempts + waits + _GRACE_S


def _lost_outcome(
    step: Step[Any, Any], exc: BaseException, lost: int, latency: float, backend: Any
) -> LeafOutcome:
    """Return the failed outcome of a step whose worker was lost ``lost`` times."""
    error = WorkerLostError(
        f"step {step.name!r}: its Ray worker was lost ({type(exc).__name__}) after "
        f"{lost} try(s); on_worker_lost={backend.on_worker_lost!r}"
    )
    feedback = f"{type(error).__name__}: {error}"
    result = StepResult.trusted(step.name, None, False, lost, latency, feedback, 0.0, 0)
    return LeafOutcome(result, None, {})


def _lost_inside(exc: BaseException) -> bool:
    """Whether a wrapped Ray error says a worker or node went away."""
    cause = exc.__cause__ or getattr(exc, "cause", None)
    return cause is not None and type(cause).__name__ in _LOST
