"""What a pipeline is: steps and their composition (how it runs lives in application)."""

from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step, step

__all__ = ["Pipeline", "Step", "step"]
