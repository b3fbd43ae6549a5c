"""Helpers for testing flujo plugins: conformance suites any implementation can run.

Subclass a contract in your test module and supply one fixture::

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

A versioned provider subclasses ``VersionedStateProviderContract`` instead of
``StateProviderContract`` and supplies a ``provider_factory`` fixture too (see
``flujo.testing.versioned_provider_contract``).

Requires pytest and pytest-asyncio (flujo's ``dev`` extra has both).
"""

from flujo.testing.damaged_state_contract import DamagedStateContract, UntypedDamagedStateContract
from flujo.testing.lease_contract import RunLeaseContract
from flujo.testing.provider_contract import StateProviderContract
from flujo.testing.state_backend_contract import StateBackendContract, make_run, make_step
from flujo.testing.versioned_provider_contract import VersionedStateProviderContract

__all__ = [
    "DamagedStateContract",
    "RunLeaseContract",
    "StateBackendContract",
    "StateProviderContract",
    "UntypedDamagedStateContract",
    "VersionedStateProviderContract",
    "make_run",
    "make_step",
]
