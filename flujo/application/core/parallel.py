"""How a parallel step runs: every branch on its own copy, merged all-or-nothing in order.

A router runs the branches it chose the same way (``flujo.application.core.router_run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from flujo.application.core.merge import Merger
from flujo.application.core.nesting import all_or_nothing, call, current_scope, run_body, summary
from flujo.application.core.references import find_references
from flujo.application.core.scope import Scope, copy_context
from flujo.application.core.session import Key
from flujo.domain.dsl.control_flow import ParallelStep
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.router import RouterStep
from flujo.domain.errors import ControlFlowError
from flujo.domain.models import StepResult
from flujo.domain.state_access import ACCESS

if TYPE_CHECKING:
    from flujo.application.core.executor_core import ExecutorCore

__all__ = ["run_parallel"]


def _noun(step: ParallelStep | RouterStep) -> str:
    return "router" if isinstance(step, RouterStep) else "parallel"


def _read_only(
    step: ParallelStep | RouterStep, branch: str, context: BaseModel | None
) -> dict[Key, str]:
    """Return the references a branch may only read (all but its ``reference_writers``)."""
    if context is None:
        return {}
    denied: dict[Key, str] = {}
    for path, ref in find_references(context, with_paths=True):
        field_path = path.removeprefix("context.")
        if step.reference_writers.get(field_path) != branch:
            denied[(ref.provider_id, ref.key)] = (
                f"{_noun(step)} branch {branch!r} of {step.name!r} may only read {field_path}; "
                f"name it in reference_writers to let it write"
            )
    return denied


async def run_parallel(
    executor: ExecutorCore,
    step: ParallelStep | RouterStep,
    data: Any,
    context: BaseModel | None,
    resources: Any,
    history: list[StepResult],
    branches: Mapping[str, Pipeline[Any, Any]] | None = None,
) -> Any:
    """Run the branches (``branches``, else all the step's) concurrently; merge the successful."""
    branches = step.branches if branches is None else branches
    scope = current_scope()
    base = copy_context(context)
    children = {
        name: Scope(
            executor.session,
            scope,
            f"branch {name!r}",
            base,
            isolate=True,
            read_only=_read_only(step, name, context),
        )
        for name in branches
    }
    results: dict[str, StepResult] = {}

    async def one(name: str, body: Pipeline[Any, Any]) -> None:
        nested: list[StepResult] = []
        child = children[name]
        token = ACCESS.set(child)
        try:
            out = await run_body(
                executor, f"{step.name}.{name}", body, data, child.context, resources, nested
            )
        except ControlFlowError as exc:
            results[name] = summary(name, None, False, nested, str(exc))
            return
        finally:
            ACCESS.reset(token)
        results[name] = summary(name, out, True, nested, None)

    await all_or_nothing(one(name, body) for name, body in branches.items())
    history.extend(results[name] for name in branches)
    failures = [r for r in results.values() if not r.success]
    if failures and step.on_branch_failure == "fail":
        raise ControlFlowError(f"{_noun(step)} {step.name!r}: branch {failures[0].feedback}")
    succeeded = [name for name in branches if results[name].success]
    merger = Merger(step.name, "parallel", noun=_noun(step))
    # Every branch is checked before any is applied: a conflict leaves the context as it was.
    changes = [merger.prepare(name, children[name], base, scope) for name in succeeded]
    for change in changes:
        merger.apply(change, scope, context)
    outputs = {name: results[name].output for name in succeeded}
    return outputs if step.merge is None else await call(step.merge, outputs)
