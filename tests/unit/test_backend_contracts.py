"""Every built-in state backend and provider passes the conformance suites of flujo.testing."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from flujo.providers import InMemoryStateProvider, SQLiteStateProvider
from flujo.state import InMemoryBackend, SQLiteBackend
from flujo.testing import (
    FinalCheckpointContract,
    StateBackendContract,
    VersionedStateProviderContract,
)


class TestInMemoryBackend(StateBackendContract, FinalCheckpointContract):
    @pytest.fixture
    def backend(self) -> InMemoryBackend:
        return InMemoryBackend()


class TestSQLiteBackend(StateBackendContract, FinalCheckpointContract):
    @pytest.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
        backend = SQLiteBackend(tmp_path / "nested" / "runs.db")
        yield backend
        await backend.close()

    @pytest.fixture
    def backend_factory(self, tmp_path: Path) -> Callable[[], SQLiteBackend]:
        return functools.partial(SQLiteBackend, tmp_path / "nested" / "runs.db")


class TestInMemoryProvider(VersionedStateProviderContract):
    @pytest.fixture
    def provider(self) -> InMemoryStateProvider[Any]:
        return InMemoryStateProvider()

    @pytest.fixture
    def provider_factory(self) -> None:
        return None  # values live in this process's memory


class TestSQLiteProvider(VersionedStateProviderContract):
    @pytest.fixture
    async def provider(self, tmp_path: Path) -> AsyncIterator[SQLiteStateProvider]:
        provider = SQLiteStateProvider(tmp_path / "state.db")
        yield provider
        await provider.close()

    @pytest.fixture
    def provider_factory(self, tmp_path: Path) -> Callable[[], SQLiteStateProvider]:
        return functools.partial(SQLiteStateProvider, tmp_path / "state.db")


class TestSQLiteBackendProvider(VersionedStateProviderContract):
    """A provider sharing the backend's connection; the racing processes open the file alone."""

    @pytest.fixture
    async def provider(self, tmp_path: Path) -> AsyncIterator[SQLiteStateProvider]:
        backend = SQLiteBackend(tmp_path / "runs.db")
        yield backend.provider(namespace="kit")
        await backend.close()

    @pytest.fixture
    def provider_factory(self, tmp_path: Path) -> Callable[[], SQLiteStateProvider]:
        return functools.partial(SQLiteStateProvider, tmp_path / "runs.db", namespace="kit")
