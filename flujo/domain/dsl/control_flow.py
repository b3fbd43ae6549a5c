"""Control-flow steps: branch, loop, parallel and map over nested steps or pipelines.

These say *what* runs; ``flujo.application.core.control_flow`` says how. Each is a
``Step``, so retries, caching, validators, fallbacks and telemetry apply to the
whole construct, and its nested results are kept in ``StepResult.step_history``.

``Step.branch_on``, ``loop_until``, ``parallel`` and ``map_over`` are the functions at
the end of this module. They live here, beside the classes they build, because those
classes derive from ``Step``: ``step.py`` cannot import this module back without an
import circle. The ``flujo.domain.dsl`` package binds them onto ``Step`` once, when it
is imported, before anything can use ``Step``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, Unpack

from flujo.domain.dsl.invoker import StepInvoker
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import HumanStep, Step
from flujo.domain.errors import ConfigurationError
from flujo.domain.policies import StepOptions

__all__ = [
    "BranchStep",
    "CompositeStep",
    "LoopStep",
    "MapStep",
    "ParallelStep",
    "as_pipeline",
]

Body = Step[Any, Any] | Pipeline[Any, Any]
"""What a control-flow step runs: one step or a pipeline."""


def as_pipeline(body: Any, what: str) -> Pipeline[Any, Any]:
    """Return ``body`` as a pipeline, or raise ``ConfigurationError`` naming ``what``."""
    if not isinstance(body, Step | Pipeline):
        raise ConfigurationError(f"{what} must be a Step or a Pipeline, got {type(body).__name__}")
    pipeline = Pipeline.of(body)
    for step in pipeline.steps:
        if isinstance(step, HumanStep):
            # A pause can only be resumed at the top level of a run.
            raise ConfigurationError(
                f"{what}: human step {step.name!r} cannot run inside a control-flow step; "
                "put it in the top-level pipeline"
            )
    return pipeline


def _check_callable(value: Any, what: str) -> None:
    if not callable(value):
        raise ConfigurationError(f"{what} must be callable, got {value!r}")


def _branches(kind: str, name: str, branches: Any) -> dict[str, Pipeline[Any, Any]]:
    """Check a ``{key: step or pipeline}`` mapping and return it as pipelines."""
    if not isinstance(branches, Mapping) or not branches:
        raise ConfigurationError(f"{kind} {name!r} needs a non-empty dict of branches")
    made = {}
    for key, body in branches.items():
        if not isinstance(key, str):
            raise ConfigurationError(f"{kind} {name!r}: branch keys must be strings, got {key!r}")
        made[key] = as_pipeline(body, f"branch {key!r} of {name!r}")
    return made


def _composite_invoker(name: str) -> StepInvoker:
    def invoke(data: Any, context: Any, resources: Any) -> Any:
        raise ConfigurationError(
            f"step {name!r} is a control-flow step: run it through ExecutorCore or Flujo"
        )

    return invoke


class CompositeStep(Step[Any, Any]):
    """Base of the control-flow steps: the executor runs their nested steps."""

    __slots__ = ()

    composite: ClassVar[bool] = True

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.invoke = _composite_invoker(name)
        self.takes_context = True  # conditions and nested steps see the context

    @classmethod
    def construct_slots(cls) -> tuple[str, ...]:
        """Return the slots the control-flow classes of ``cls`` declare: settings and bodies.

        A subclass of a construct (``SubPipelineStep`` of ``BranchStep``) adds its own
        first; ``Step``'s slots (name, config, ...) are not among them.
        """
        return tuple(
            slot
            for klass in cls.__mro__
            if issubclass(klass, CompositeStep)
            for slot in vars(klass).get("__slots__", ())
        )

    def _code(self) -> tuple[object, ...]:
        # The construct's own callables and settings, and each nested step's identity.
        return tuple((slot, _nested(getattr(self, slot))) for slot in self.construct_slots())


def _nested(value: Any) -> Any:
    if isinstance(value, Pipeline):
        return tuple((s.name, s.identity) for s in value.steps)
    if isinstance(value, Mapping):
        return {key: _nested(item) for key, item in value.items()}
    return value


class BranchStep(CompositeStep):
    """Runs one of several branches, chosen by ``condition(input, context)``."""

    __slots__ = ("branches", "condition", "default")

    def __init__(
        self,
        name: str,
        condition: Callable[..., Any],
        branches: Mapping[str, Body],
        default: Body | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        _check_callable(condition, f"branch_on {name!r}: condition")
        self.condition = condition
        self.branches = _branches("branch_on", name, branches)
        self.default = None if default is None else as_pipeline(default, f"default of {name!r}")


class LoopStep(CompositeStep):
    """Runs ``body`` again on its own output until ``exit_condition(output, context)``."""

    __slots__ = ("body", "exit_condition", "max_loops", "on_max_loops")

    def __init__(
        self,
        name: str,
        body: Body,
        exit_condition: Callable[..., Any],
        max_loops: int,
        on_max_loops: Literal["fail", "return"] = "fail",
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        _check_callable(exit_condition, f"loop_until {name!r}: exit_condition")
        if isinstance(max_loops, bool) or not isinstance(max_loops, int) or max_loops <= 0:
            raise ConfigurationError(
                f"loop_until {name!r}: max_loops must be > 0, got {max_loops!r}"
            )
        if on_max_loops not in ("fail", "return"):
            raise ConfigurationError(
                f"loop_until {name!r}: on_max_loops must be 'fail' or 'return', "
                f"got {on_max_loops!r}"
            )
        self.body = as_pipeline(body, f"body of {name!r}")
        self.exit_condition = exit_condition
        self.max_loops = max_loops
        self.on_max_loops = on_max_loops


class ParallelStep(CompositeStep):
    """Runs branches concurrently, each on its own copy of the context, then merges them."""

    __slots__ = ("branches", "merge", "on_branch_failure", "reference_writers")

    def __init__(
        self,
        name: str,
        branches: Mapping[str, Body],
        merge: Callable[[dict[str, Any]], Any] | None = None,
        on_branch_failure: Literal["fail", "collect"] = "fail",
        reference_writers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.branches = _branches("parallel", name, branches)
        if merge is not None:
            _check_callable(merge, f"parallel {name!r}: merge")
        if on_branch_failure not in ("fail", "collect"):
            raise ConfigurationError(
                f"parallel {name!r}: on_branch_failure must be 'fail' or 'collect', "
                f"got {on_branch_failure!r}"
            )
        writers = dict(reference_writers or {})
        for field, branch in writers.items():
            if branch not in branches:
                raise ConfigurationError(
                    f"parallel {name!r}: reference {field!r} is given to branch {branch!r}, "
                    f"which is not one of {sorted(branches)}"
                )
        self.merge = merge
        self.on_branch_failure = on_branch_failure
        self.reference_writers = writers


class MapStep(CompositeStep):
    """Runs ``body`` once per item, at most ``concurrency`` at a time; outputs keep input order."""

    __slots__ = ("body", "concurrency", "items_from")

    def __init__(
        self,
        name: str,
        body: Body,
        items_from: str | Callable[..., Any] | None = None,
        concurrency: int = 1,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency <= 0:
            raise ConfigurationError(
                f"map_over {name!r}: concurrency must be > 0, got {concurrency!r}"
            )
        if items_from is not None and not isinstance(items_from, str):
            _check_callable(items_from, f"map_over {name!r}: items_from")
        self.body = as_pipeline(body, f"body of {name!r}")
        self.items_from = items_from
        self.concurrency = concurrency


# --- Step's constructors of the classes above (bound onto Step by flujo.domain.dsl) ----


def _branch_on(
    condition: Callable[..., Any],
    branches: Mapping[str, Body],
    default: Body | None = None,
    *,
    name: str = "branch",
    **options: Unpack[StepOptions],
) -> Step[Any, Any]:
    """Run the branch whose key ``condition(input, context)`` returns (else ``default``)."""
    return BranchStep(name, condition, branches, default, **options)


def _loop_until(
    body: Body,
    exit_condition: Callable[..., Any],
    *,
    max_loops: int,
    on_max_loops: Literal["fail", "return"] = "fail",
    name: str = "loop",
    **options: Unpack[StepOptions],
) -> Step[Any, Any]:
    """Run ``body`` on its own output until ``exit_condition(output, context)`` is true."""
    return LoopStep(name, body, exit_condition, max_loops, on_max_loops, **options)


def _parallel(
    branches: Mapping[str, Body],
    *,
    merge: Callable[[dict[str, Any]], Any] | None = None,
    on_branch_failure: Literal["fail", "collect"] = "fail",
    reference_writers: Mapping[str, str] | None = None,
    name: str = "parallel",
    **options: Unpack[StepOptions],
) -> Step[Any, Any]:
    """Run branches concurrently on copies of the context and merge what they changed.

    The output is ``{branch: output}``, or ``merge`` of it. References stay shared and
    read-only in branches, except those ``reference_writers`` (field path -> branch)
    give to one branch.
    """
    return ParallelStep(name, branches, merge, on_branch_failure, reference_writers, **options)


def _map_over(
    body: Body,
    *,
    items_from: str | Callable[..., Any] | None = None,
    concurrency: int = 1,
    name: str = "map",
    **options: Unpack[StepOptions],
) -> Step[Any, list[Any]]:
    """Run ``body`` for each item, ``concurrency`` at a time; outputs keep the items' order.

    The items are the input, the context field named by ``items_from``, or what
    ``items_from(input, context)`` returns.
    """
    return MapStep(name, body, items_from, concurrency, **options)
