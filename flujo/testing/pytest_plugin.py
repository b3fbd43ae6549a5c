"""flujo's pytest plugin: fixtures for tests of flujo pipelines, registered as ``flujo``.

Installed with flujo through the ``pytest11`` entry point. It only defines fixtures:
no hook, nothing autouse, so a test session that uses none of them runs as it would
without it; flujo's parts are imported when a fixture is first used. ``-p no:flujo``
turns it off.

- ``flujo_container``: a fresh ``FlujoContainer`` on the testing profile (in memory).
- ``flujo_runner``: ``flujo_runner(pipeline, **kwargs)`` builds a ``Flujo`` on that container.
- ``flujo_override``: ``flujo_override(state_backend=..., clock=...)`` swaps parts of that
  container until the test ends (see ``override_providers``).
- ``flujo_clock`` / ``flujo_run_ids``: a ``FakeClock`` / ``SequentialIds("run")`` installed
  as the container's ``clock`` / ``run_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from flujo.application.runner import Flujo
    from flujo.testing.deterministic import FakeClock, SequentialIds
    from flujo.testing.overrides import ProviderOverrides

__all__ = [
    "Override",
    "RunnerFactory",
    "flujo_clock",
    "flujo_container",
    "flujo_override",
    "flujo_run_ids",
    "flujo_runner",
]


class RunnerFactory(Protocol):
    """The ``flujo_runner`` fixture: builds a ``Flujo`` on the test's container."""

    def __call__(self, pipeline: Any, /, **kwargs: Any) -> Flujo[Any, Any, Any]:
        """Return ``Flujo(pipeline, container=<the test's container>, **kwargs)``."""
        ...


class Override(Protocol):
    """The ``flujo_override`` fixture: swaps parts of the test's container until it ends."""

    def __call__(self, **parts: Any) -> ProviderOverrides:
        """Override the parts named (see ``override_providers``); undone at teardown."""
        ...


@pytest.fixture
def flujo_container() -> Any:
    """Give a fresh ``FlujoContainer`` on the testing profile: cache and run state in memory."""
    from flujo.testing.overrides import in_memory_container

    return in_memory_container()


@pytest.fixture
def flujo_runner(flujo_container: Any) -> RunnerFactory:
    """``flujo_runner(pipeline, **kwargs)``: a ``Flujo`` on ``flujo_container`` unless given one."""
    from flujo.application.runner import Flujo

    def make(pipeline: Any, /, **kwargs: Any) -> Flujo[Any, Any, Any]:
        kwargs.setdefault("container", flujo_container)
        runner: Flujo[Any, Any, Any] = Flujo(pipeline, **kwargs)
        return runner

    return make


@pytest.fixture
def flujo_override(flujo_container: Any) -> Iterator[Override]:
    """``flujo_override(**parts)``: override parts of ``flujo_container``; undone at teardown."""
    from flujo.testing.overrides import override_providers

    made: list[ProviderOverrides] = []

    def override(**parts: Any) -> ProviderOverrides:
        overrides = override_providers(flujo_container, **parts)
        made.append(overrides)
        return overrides

    yield override
    for overrides in reversed(made):
        overrides.reset()


@pytest.fixture
def flujo_clock(flujo_override: Override) -> FakeClock:
    """Install a ``FakeClock`` as ``flujo_container``'s clock; move it with ``advance``."""
    from flujo.testing.deterministic import FakeClock

    clock = FakeClock()
    flujo_override(clock=clock)
    return clock


@pytest.fixture
def flujo_run_ids(flujo_override: Override) -> SequentialIds:
    """Install ``SequentialIds("run")`` as ``flujo_container``'s run ids: run-1, run-2, ..."""
    from flujo.testing.deterministic import SequentialIds

    ids = SequentialIds("run")
    flujo_override(run_id=ids)
    return ids
