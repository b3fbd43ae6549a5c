"""flujo: multi-step workflows over a typed, shared context, with durable runs and managed state.

PYTEST_DONT_REWRITE: this module holds no asserts. The marker tells pytest, which
loads flujo's plugin (``flujo.testing.pytest_plugin``) and so marks the package for
assertion rewriting, not to warn when a program imported flujo before running
pytest in-process; ``flujo.testing``'s contracts are still rewritten.
"""

from flujo.application.runner import Flujo
from flujo.domain.dsl.pipeline import Pipeline
from flujo.domain.dsl.step import Step, step
from flujo.domain.errors import ConfigurationError, FlujoError
from flujo.domain.interfaces import StateProvider
from flujo.domain.models import ContextReference, PipelineContext, PipelineResult, StepResult
from flujo.domain.policies import StepConfig, StepOutput, UsageLimits, ValidationResult

__all__ = [
    "ConfigurationError",
    "ContextReference",
    "Flujo",
    "FlujoError",
    "Pipeline",
    "PipelineContext",
    "PipelineResult",
    "StateProvider",
    "Step",
    "StepConfig",
    "StepOutput",
    "StepResult",
    "UsageLimits",
    "ValidationResult",
    "step",
]

__version__ = "0.1.0"
