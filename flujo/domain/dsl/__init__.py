"""What a pipeline is: steps and their composition (how it runs lives in application).

The ``@step`` decorator lives in ``flujo.domain.dsl.step`` (and ``flujo``); it is not
re-exported here, where it would hide that module.
"""

from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step

__all__ = ["Pipeline", "Step"]
