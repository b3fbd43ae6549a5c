"""Helpers for testing with flujo: doubles, deterministic parts, a pytest plugin, contracts.

For tests of pipelines (see docs/testing.md):

- ``FaultyProvider`` / ``FaultyStateBackend`` wrap any state provider / run-state
  backend and fail or hang the calls a ``Faults`` schedule names (``Faults.nth(2)``,
  ``Faults.first(3)``, ``Faults.always()``); a wrapped versioned provider stays versioned.
- ``FakeClock`` and ``SequentialIds`` give the container's ``clock`` and ``run_id``
  deterministic values; ``override_providers(container, clock=FakeClock())`` installs
  them, or any other part, until ``reset()``; ``in_memory_container()`` is a fresh
  container on the testing profile.
- ``with_step(pipeline, "name", replacement)`` swaps one step, nested ones included.
- ``ShippingBackend()`` (``Flujo(backend=ShippingBackend())``) ships every leaf step
  through pickle as a remote backend does, in process: a pipeline passing under it travels.
- The pytest plugin ``flujo.testing.pytest_plugin`` (registered as ``flujo``) has the
  ``flujo_container``, ``flujo_runner``, ``flujo_override``, ``flujo_clock`` and
  ``flujo_run_ids`` fixtures.

For plugin authors, conformance suites any implementation runs by subclassing a
contract in its test module and supplying one fixture::

    from flujo.testing import StateBackendContract

    class TestMyBackend(StateBackendContract):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(tmp_path / "runs")

``StateBackendContract`` includes ``RunLeaseContract`` (leases and run ids); a
``backend_factory`` fixture makes its racers two real processes (see
``flujo.testing.lease_contract``).

A backend's test may also subclass ``DamagedStateContract`` (and, when its columns
do not enforce types, ``UntypedDamagedStateContract``) and supply a ``damage``
fixture that writes a raw value into a stored column (see
``flujo.testing.damaged_state_contract``).

A backend that offers ``finish_run`` (``FinalCheckpoint``: the last step record and the
final header in one write) subclasses ``FinalCheckpointContract`` too (see
``flujo.testing.final_checkpoint_contract``).

A versioned provider subclasses ``VersionedStateProviderContract`` instead of
``StateProviderContract`` and supplies a ``provider_factory`` fixture too (see
``flujo.testing.versioned_provider_contract``).

The contracts and the plugin need pytest, the contracts pytest-asyncio too (flujo's
``dev`` extra has both); the other helpers need neither. Each name is imported when
first used, so importing this package (as pytest does for the plugin) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flujo.testing.damaged_state_contract import (
        DamagedStateContract,
        UntypedDamagedStateContract,
    )
    from flujo.testing.deterministic import FakeClock, SequentialIds
    from flujo.testing.faults import Faults, InjectedFault
    from flujo.testing.faulty_backend import FaultyAtomicBackend, FaultyStateBackend
    from flujo.testing.faulty_provider import FaultyProvider, FaultyVersionedProvider
    from flujo.testing.final_checkpoint_contract import FinalCheckpointContract
    from flujo.testing.lease_contract import RunLeaseContract
    from flujo.testing.overrides import ProviderOverrides, in_memory_container, override_providers
    from flujo.testing.provider_contract import StateProviderContract
    from flujo.testing.pytest_plugin import Override, RunnerFactory
    from flujo.testing.shipping_backend import ShippingBackend
    from flujo.testing.state_backend_contract import StateBackendContract, make_run, make_step
    from flujo.testing.step_override import step_paths, with_step
    from flujo.testing.versioned_provider_contract import VersionedStateProviderContract

_HOMES = {
    "DamagedStateContract": "damaged_state_contract",
    "FakeClock": "deterministic",
    "FaultyAtomicBackend": "faulty_backend",
    "FinalCheckpointContract": "final_checkpoint_contract",
    "FaultyProvider": "faulty_provider",
    "FaultyStateBackend": "faulty_backend",
    "FaultyVersionedProvider": "faulty_provider",
    "Faults": "faults",
    "InjectedFault": "faults",
    "Override": "pytest_plugin",
    "ProviderOverrides": "overrides",
    "RunLeaseContract": "lease_contract",
    "RunnerFactory": "pytest_plugin",
    "SequentialIds": "deterministic",
    "ShippingBackend": "shipping_backend",
    "StateBackendContract": "state_backend_contract",
    "StateProviderContract": "provider_contract",
    "UntypedDamagedStateContract": "damaged_state_contract",
    "VersionedStateProviderContract": "versioned_provider_contract",
    "in_memory_container": "overrides",
    "make_run": "state_backend_contract",
    "make_step": "state_backend_contract",
    "override_providers": "overrides",
    "step_paths": "step_override",
    "with_step": "step_override",
}
"""Each public name and the module of this package that defines it."""

__all__ = [
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


if not TYPE_CHECKING:  # the type checker sees the imports above, and no catch-all

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'flujo.testing' has no attribute {name!r}")
        value = getattr(importlib.import_module(f"flujo.testing.{home}"), name)
        globals()[name] = value  # found once; later lookups do not come here
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
