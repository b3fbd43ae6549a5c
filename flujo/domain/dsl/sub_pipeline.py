"""``SubPipelineStep``: another pipeline run as one step, as a pipeline file's imports make.

``uses: imports.clarify`` in a pipeline file runs the file ``clarify`` names as one
step of the importing pipeline: its steps run in order on the run's context (shared,
not copied, with the run's references), and their results are kept in the step's
``StepResult.step_history``.

That is exactly what a one-branch ``Step.branch_on`` does, so ``SubPipelineStep`` is a
``BranchStep`` whose condition always picks its one branch: the engine runs it as a
branch, and the step knows where its pipeline came from (``source``), for
``to_yaml`` and ``to_mermaid``. Like a branch, it records no progress of its own: a
run resumed inside it runs it again from its first step. A human step cannot be in
it: a pause can only be resumed at the top level of a run.
"""

from __future__ import annotations

from typing import Any

from flujo.domain.dsl.control_flow import Body, BranchStep, as_pipeline

__all__ = ["SUB_PIPELINE_KEY", "SubPipelineStep"]

SUB_PIPELINE_KEY = "pipeline"
"""The key of a ``SubPipelineStep``'s one branch."""


def always_the_pipeline(data: Any, context: Any) -> str:
    """Pick a ``SubPipelineStep``'s one branch, whatever the input (its condition)."""
    return SUB_PIPELINE_KEY


class SubPipelineStep(BranchStep):
    """Runs ``body`` as one step, on the run's context, its results nested in this step's."""

    __slots__ = ("source",)

    source: str | None
    """The file the pipeline was read from (absolute), or ``None`` if built in Python."""

    def __init__(self, name: str, body: Body, source: str | None = None, **options: Any) -> None:
        # Checked here first, so that a human step in it is named as in a sub-pipeline.
        pipeline = as_pipeline(body, f"sub-pipeline {name!r}")
        super().__init__(name, always_the_pipeline, {SUB_PIPELINE_KEY: pipeline}, None, **options)
        self.source = source

    @property
    def body(self) -> Any:
        """The pipeline this step runs."""
        return self.branches[SUB_PIPELINE_KEY]
