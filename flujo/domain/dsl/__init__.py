"""What a pipeline is: steps and their composition (how it runs lives in application).

The modules import one another in one direction only (tests/test_layering.py fails
on any import circle, function-level imports included)::

    identity   invoker   node        what a step runs, how it is called, what a pipeline holds
        pipeline                     Pipeline: a sequence of nodes
            step                     Step(Node), HumanStep, @step; ``>>`` builds a Pipeline
                control_flow         BranchStep, LoopStep, ParallelStep, MapStep (all Steps)
                    state_machine    StateMachineStep: named states and their transitions
                    router           RouterStep: branches chosen at run time, run in parallel
                    sub_pipeline     SubPipelineStep: another pipeline run as one step
                context_model        the context class a pipeline's callables declare
                    mermaid          a pipeline drawn as a Mermaid flowchart (from control_flow)
                    files            pipeline files: Pipeline.from_yaml, pipeline.to_yaml
                        flujo.domain.dsl  this package: binds Step's control-flow
                                          constructors and Pipeline's other faces

``Step.branch_on``/``loop_until``/``parallel``/``map_over``/``state_machine``/``router``
build subclasses of ``Step``, so they are defined beside those subclasses, and put on
``Step`` here, once: every import of a DSL module runs this package first, so no code
sees ``Step`` without them. ``step.py`` declares them for the type checker only.
``Pipeline.to_mermaid``, ``Pipeline.from_yaml`` and ``Pipeline.to_yaml`` are bound the
same way: drawing and writing need every kind of step. The last two import
``flujo.domain.dsl.files`` (and PyYAML) when first called, not with ``import flujo``.

The ``@step`` decorator lives in ``flujo.domain.dsl.step`` (and ``flujo``); it is not
re-exported here, where it would hide that module.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flujo.domain.dsl import control_flow as _control_flow
from flujo.domain.dsl import mermaid as _mermaid
from flujo.domain.dsl import router as _router
from flujo.domain.dsl import state_machine as _state_machine
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step

if TYPE_CHECKING:
    from flujo.domain.models import PipelineContext

__all__ = ["Pipeline", "Step"]


def _from_yaml(path: str | os.PathLike[str]) -> Pipeline[Any, Any]:
    """Return the pipeline of the pipeline file at ``path`` (``PipelineFileError`` if it is bad).

    Loading imports the modules the file names; see ``flujo.domain.dsl.files.from_yaml``.
    """
    from flujo.domain.dsl.files.loading import from_yaml

    return from_yaml(path)


def _to_yaml(
    pipeline: Pipeline[Any, Any] | Step[Any, Any],
    *,
    name: str | None = None,
    description: str | None = None,
    context_model: type[PipelineContext] | None = None,
    relative_to: str | os.PathLike[str] | None = None,
) -> str:
    """Return ``pipeline`` as a pipeline file's text; see ``flujo.domain.dsl.files.to_yaml``."""
    from flujo.domain.dsl.files.writing import to_yaml

    return to_yaml(
        pipeline,
        name=name,
        description=description,
        context_model=context_model,
        relative_to=relative_to,
    )


Step.branch_on = staticmethod(_control_flow._branch_on)
Step.loop_until = staticmethod(_control_flow._loop_until)
Step.parallel = staticmethod(_control_flow._parallel)
Step.map_over = staticmethod(_control_flow._map_over)
Step.state_machine = staticmethod(_state_machine._state_machine)
Step.router = staticmethod(_router._router)
Pipeline.to_mermaid = _mermaid.to_mermaid
Pipeline.from_yaml = staticmethod(_from_yaml)
Pipeline.to_yaml = _to_yaml
