"""The public names: ``flujo.__all__`` is pinned, and DESIGN.md's import block works."""

from __future__ import annotations

import importlib

import pytest

import flujo

EXPECTED_ALL = [
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

# The "public contract" block of DESIGN.md, verbatim: users write against these imports.
PUBLIC_CONTRACT = """
from flujo import Flujo, Pipeline, Step, step, StepConfig
from flujo import PipelineContext, ContextReference, StateProvider
from flujo import PipelineResult, StepResult, UsageLimits
from flujo.domain.models import PipelineContext, ContextReference, PipelineResult, StepResult
from flujo.domain.interfaces import StateProvider
from flujo.application.runner import Flujo
from flujo.application.core.factories import ExecutorFactory, BackendFactory
from flujo.application.core.executor_core import ExecutorCore
from flujo.containers import FlujoContainer
"""


def _contract_imports() -> list[tuple[str, str]]:
    pairs = []
    for line in PUBLIC_CONTRACT.strip().splitlines():
        module, names = line.removeprefix("from ").split(" import ")
        pairs.extend((module, name.strip()) for name in names.split(","))
    return pairs


def test_all_is_pinned() -> None:
    assert sorted(flujo.__all__) == sorted(EXPECTED_ALL)
    assert len(flujo.__all__) == len(set(flujo.__all__)), "duplicate names in __all__"


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_exported_name_exists(name: str) -> None:
    assert getattr(flujo, name) is not None


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from flujo import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED_ALL)


@pytest.mark.parametrize(
    ("module", "name"), _contract_imports(), ids=lambda v: v if isinstance(v, str) else None
)
def test_public_contract_name_is_importable(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is not None


def test_public_contract_block_runs() -> None:
    exec(PUBLIC_CONTRACT, {})


def test_top_level_and_module_paths_name_the_same_objects() -> None:
    from flujo.application.runner import Flujo
    from flujo.domain.interfaces import StateProvider
    from flujo.domain.models import ContextReference, PipelineContext, PipelineResult, StepResult

    assert flujo.Flujo is Flujo
    assert flujo.StateProvider is StateProvider
    assert flujo.PipelineContext is PipelineContext
    assert flujo.ContextReference is ContextReference
    assert flujo.PipelineResult is PipelineResult
    assert flujo.StepResult is StepResult


def test_errors_form_one_tree() -> None:
    assert issubclass(flujo.ConfigurationError, flujo.FlujoError)
    assert issubclass(flujo.FlujoError, Exception)
