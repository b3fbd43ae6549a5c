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


TESTING_ALL = [
    "DamagedStateContract",
    "FakeClock",
    "Faults",
    "FaultyAtomicBackend",
    "FaultyProvider",
    "FaultyStateBackend",
    "FaultyVersionedProvider",
    "FinalCheckpointContract",
    "InjectedFault",
    "Override",
    "ProviderOverrides",
    "RunLeaseContract",
    "RunnerFactory",
    "SequentialIds",
    "ShippingBackend",
    "StateBackendContract",
    "StateProviderContract",
    "UntypedDamagedStateContract",
    "VersionedStateProviderContract",
    "in_memory_container",
    "make_run",
    "make_step",
    "override_providers",
    "step_paths",
    "with_step",
]


def test_testing_all_is_pinned_and_every_name_loads() -> None:
    import flujo.testing

    assert flujo.testing.__all__ == TESTING_ALL  # sorted, no duplicates
    for name in TESTING_ALL:
        value = getattr(flujo.testing, name)
        assert value.__module__.startswith("flujo.testing."), name
    namespace: dict[str, object] = {}
    exec("from flujo.testing import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == TESTING_ALL
    with pytest.raises(AttributeError, match="no attribute 'Faulty'"):
        getattr(flujo.testing, "Faulty")  # noqa: B009  (the lazy lookup's own error)
    assert set(TESTING_ALL) <= set(dir(flujo.testing))


def test_no_testing_name_is_collected_by_pytest() -> None:
    # A user's test module imports these; pytest collects names starting with test/Test.
    assert not [n for n in TESTING_ALL if n.lower().startswith("test")]
