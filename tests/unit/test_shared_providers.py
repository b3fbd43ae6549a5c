"""PostgresStateProvider and RedisStateProvider without a server: imports, arguments, names.

Their behaviour against real servers is in ``tests/integration/test_postgres_provider.py``
and ``tests/integration/test_redis_provider.py``.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import flujo.providers
from flujo.domain.errors import ConfigurationError
from flujo.domain.interfaces import VersionedStateProvider
from flujo.providers import PostgresStateProvider, RedisStateProvider


def test_importing_flujo_and_its_providers_imports_neither_asyncpg_nor_redis() -> None:
    program = (
        "import sys\n"
        "import flujo, flujo.providers, flujo.state\n"
        "from flujo.providers import PostgresStateProvider, RedisStateProvider\n"
        "PostgresStateProvider('postgresql://u:p@127.0.0.1:1/db')\n"
        "RedisStateProvider('redis://127.0.0.1:1/0', ttl_s=5)\n"
        "flujo.state.PostgresBackend('postgresql://u:p@127.0.0.1:1/db').provider()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('asyncpg', 'redis'))\n"
        "assert loaded == [], loaded\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)


def test_both_are_exported_and_versioned() -> None:
    assert {"PostgresStateProvider", "RedisStateProvider"} <= set(flujo.providers.__all__)
    assert isinstance(PostgresStateProvider("postgresql://h/db"), VersionedStateProvider)
    assert isinstance(RedisStateProvider("redis://h/0"), VersionedStateProvider)


@pytest.mark.parametrize("dsn", ["", None, 5])
def test_a_postgres_provider_needs_a_dsn(dsn: Any) -> None:
    with pytest.raises(ConfigurationError, match="needs a DSN such as postgresql://"):
        PostgresStateProvider(dsn)


@pytest.mark.parametrize("url", ["", None])
def test_a_redis_provider_needs_a_url(url: Any) -> None:
    with pytest.raises(ConfigurationError, match="needs a Redis URL such as redis://"):
        RedisStateProvider(url)


def test_namespaces_must_be_text() -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        PostgresStateProvider("postgresql://h/db", namespace=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="namespace"):
        RedisStateProvider("redis://h/0", namespace=None)  # type: ignore[arg-type]


def test_messages_name_the_server_but_never_the_password() -> None:
    provider = PostgresStateProvider("postgresql://ada:s3cret@db.example:6543/kg", namespace="n")
    assert provider.describe() == "PostgreSQL state provider at db.example:6543/kg"
    assert "s3cret" not in repr(provider) and "db.example:6543/kg" in repr(provider)


def test_redis_keys_are_prefix_namespace_and_key() -> None:
    provider = RedisStateProvider("redis://h/0", prefix="app:", namespace="kg", ttl_s=1.5)
    assert provider.redis_key("user/1") == "app:{kg}:user/1"
    assert provider.ttl_s == 1.5
    assert repr(provider) == "RedisStateProvider(prefix='app:', namespace='kg', ttl_s=1.5)"
