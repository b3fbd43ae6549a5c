"""Every built-in state backend and provider passes the conformance suites of flujo.testing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flujo.providers import InMemoryStateProvider, SQLiteStateProvider
from flujo.state import InMemoryBackend, SQLiteBackend
from flujo.testing import StateBackendContract, StateProviderContract


class TestInMemoryBackend(StateBackendContract):
    @pytest.fixture
    def backend(self) -> InMemoryBackend:
        return InMemoryBackend()


class TestSQLiteBackend(StateBackendContract):
    @pytest.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
        backend = SQLiteBackend(tmp_path / "nested" / "runs.db")
        yield backend
        await backend.close()


class TestInMemoryProvider(StateProviderContract):
    @pytest.fixture
    def provider(self) -> InMemoryStateProvider[Any]:
        return InMemoryStateProvider()


class TestSQLiteProvider(StateProviderContract):
    @pytest.fixture
    async def provider(self, tmp_path: Path) -> AsyncIterator[SQLiteStateProvider]:
        provider = SQLiteStateProvider(tmp_path / "state.db")
        yield provider
        await provider.close()
