"""Where run state goes: state URIs, $FLUJO_STATE_URI, the default file, the working directory."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flujo import ConfigurationError, Flujo, Step
from flujo.containers import FlujoContainer
from flujo.infra.state.memory import InMemoryBackend
from flujo.infra.state.postgres import PostgresBackend
from flujo.infra.state.sqlite import SQLiteBackend
from flujo.settings import STATE_URI_ENV, StateSettings, default_state_path, load_settings

ROOT = Path(__file__).resolve().parents[2]
TESTING_PROFILE = "testing"
DEFAULT_PROFILE = "default"
POSTGRES_PROFILE = "postgres"


@pytest.fixture(autouse=True)
def _no_state_uri_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_URI_ENV, raising=False)


def _container(state: dict[str, Any]) -> Any:
    container = FlujoContainer()
    container.config.from_dict({"state": state})
    return container


def _echo() -> Step[Any, Any]:
    return Step.from_callable(lambda x: x, name="echo")


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


def test_the_env_variable_is_flujo_state_uri() -> None:
    assert STATE_URI_ENV == "FLUJO_STATE_URI"


# --- URI schemes -----------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["memory://", "MEMORY://"])
def test_memory_uri_selects_the_in_memory_backend(uri: str) -> None:
    backend = _container({"uri": uri}).state_backend()
    assert isinstance(backend, InMemoryBackend)


def test_sqlite_uri_with_an_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "runs.db"
    backend = _container({"uri": f"sqlite://{path}"}).state_backend()
    assert isinstance(backend, SQLiteBackend)
    assert backend.path == path


def test_a_bare_path_names_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "bare.db"
    container = _container({"uri": str(path)})
    assert container.settings().state.resolved_backend == "sqlite"
    backend = container.state_backend()
    assert isinstance(backend, SQLiteBackend)
    assert backend.path == path


@pytest.mark.parametrize(
    "uri", ["postgresql://flujo:pw@127.0.0.1:5432/flujo", "postgres://flujo@localhost/db"]
)
def test_postgres_uri_selects_postgres_with_that_dsn(uri: str) -> None:
    backend = _container({"uri": uri}).state_backend()  # lazy: nothing connects yet
    assert isinstance(backend, PostgresBackend)
    assert backend.dsn == uri


@pytest.mark.parametrize("uri", ["redis://localhost:6379/0", "mysql://u@h/db", "ftp://x"])
def test_unknown_scheme_lists_the_supported_ones(uri: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        _container({"uri": uri}).settings()
    message = str(info.value)
    assert uri.split("://")[0] in message
    for scheme in ("memory://", "sqlite://", "postgresql://"):
        assert scheme in message


def test_unknown_scheme_fails_runner_construction() -> None:
    with pytest.raises(ConfigurationError, match="sqlite://"):
        Flujo(_echo(), container=_container({"uri": "bogus://here"}))


@pytest.mark.parametrize(
    ("backend", "uri"),
    [("memory", "sqlite:///tmp/x.db"), ("sqlite", "memory://"), ("postgres", "/tmp/bare.db")],
)
def test_backend_and_uri_that_disagree_are_an_error(backend: str, uri: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        _container({"backend": backend, "uri": uri}).settings()
    assert repr(backend) in str(info.value)


def test_a_misspelt_state_key_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="url"):
        _container({"url": "memory://"}).settings()


def test_backend_alone_needs_no_uri() -> None:
    assert isinstance(_container({"backend": "memory"}).state_backend(), InMemoryBackend)


def test_postgres_without_a_dsn_is_a_configuration_error_naming_the_env_variable() -> None:
    container = FlujoContainer.from_profile(POSTGRES_PROFILE)
    with pytest.raises(ConfigurationError, match="FLUJO_STATE_URI"):
        container.state_backend()


async def test_postgres_without_a_dsn_fails_the_run_before_any_step() -> None:
    ran: list[Any] = []
    runner = Flujo(
        Step.from_callable(ran.append, name="s"),
        container=FlujoContainer.from_profile(POSTGRES_PROFILE),
    )
    with pytest.raises(ConfigurationError, match="DSN"):
        await runner.run_async(1)
    assert ran == []


# --- $FLUJO_STATE_URI ------------------------------------------------------------------


async def test_env_uri_is_used_when_uri_is_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated_state_home: Path
) -> None:
    path = tmp_path / "from-env.db"
    monkeypatch.setenv(STATE_URI_ENV, f"sqlite://{path}")

    async with Flujo(_echo()) as runner:
        backend = runner.container.state_backend()
        assert isinstance(backend, SQLiteBackend) and backend.path == path
        result = await runner.run_async("hi")
        assert (await runner.get_run(result.run_id)).status == "completed"

    assert path.is_file()
    assert not (isolated_state_home / "flujo" / "runs.db").exists()


def test_env_memory_uri_selects_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_URI_ENV, "memory://")
    assert isinstance(FlujoContainer().state_backend(), InMemoryBackend)


def test_explicit_uri_beats_the_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(STATE_URI_ENV, "memory://")
    backend = _container({"uri": f"sqlite://{tmp_path / 'x.db'}"}).state_backend()
    assert isinstance(backend, SQLiteBackend)


async def test_explicit_backend_beats_the_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "env.db"
    monkeypatch.setenv(STATE_URI_ENV, f"sqlite://{path}")

    container = FlujoContainer.from_profile(TESTING_PROFILE)
    assert isinstance(container.state_backend(), InMemoryBackend)
    async with Flujo(_echo(), container=container) as runner:
        assert (await runner.run_async(1)).success
    assert not path.exists(), "the testing profile must not follow $FLUJO_STATE_URI to disk"


def test_explicit_sqlite_backend_ignores_an_env_uri_of_another_store(
    monkeypatch: pytest.MonkeyPatch, isolated_state_home: Path
) -> None:
    monkeypatch.setenv(STATE_URI_ENV, "memory://")
    backend = _container({"backend": "sqlite"}).state_backend()
    assert isinstance(backend, SQLiteBackend)
    assert backend.path == isolated_state_home / "flujo" / "runs.db"


def test_explicit_postgres_backend_does_not_take_a_sqlite_env_uri_as_its_dsn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The explicit backend wins over the environment, so the environment's SQLite URI is
    # not a DSN: the profile has none, which must be reported, not passed to asyncpg.
    monkeypatch.setenv(STATE_URI_ENV, f"sqlite://{tmp_path / 'x.db'}")
    container = FlujoContainer.from_profile(POSTGRES_PROFILE)
    with pytest.raises(ConfigurationError, match="DSN"):
        container.state_backend()


async def test_an_env_uri_with_an_unknown_scheme_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The default configuration takes its URI from the environment: a bad one must be
    # reported like a bad profile value, never as a bare ValueError.
    monkeypatch.setenv(STATE_URI_ENV, "redis://localhost:6379/0")
    with pytest.raises(ConfigurationError, match="sqlite://"):
        runner = Flujo(_echo())
        await runner.run_async(1)


def test_the_env_is_not_read_at_import_time() -> None:
    # A bad $FLUJO_STATE_URI must not break `import flujo.containers` (the CLI imports it
    # before it can print anything).
    env = {**os.environ, STATE_URI_ENV: "redis://localhost:6379/0"}
    done = subprocess.run(
        [sys.executable, "-c", "import flujo.containers, flujo.settings"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_an_empty_env_variable_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, isolated_state_home: Path
) -> None:
    monkeypatch.setenv(STATE_URI_ENV, "")
    backend = FlujoContainer().state_backend()
    assert isinstance(backend, SQLiteBackend)
    assert backend.path == isolated_state_home / "flujo" / "runs.db"


def test_env_is_read_when_settings_are_made_not_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = StateSettings()
    monkeypatch.setenv(STATE_URI_ENV, "memory://")
    assert settings.resolved_backend == "memory"
    assert load_settings({}).state.resolved_backend == "memory"


# --- the default file ------------------------------------------------------------------


def test_default_path_is_under_xdg_state_home(isolated_state_home: Path) -> None:
    assert default_state_path() == isolated_state_home / "flujo" / "runs.db"
    backend = FlujoContainer().state_backend()
    assert isinstance(backend, SQLiteBackend)
    assert backend.path == isolated_state_home / "flujo" / "runs.db"
    backend = FlujoContainer.from_profile(DEFAULT_PROFILE).state_backend()
    assert backend.path == isolated_state_home / "flujo" / "runs.db"


def test_default_path_without_xdg_state_home_is_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_path() == tmp_path / "home" / ".local" / "state" / "flujo" / "runs.db"


async def test_the_default_sqlite_file_is_made_on_first_run_in_wal_mode(
    isolated_state_home: Path,
) -> None:
    path = isolated_state_home / "flujo" / "runs.db"
    runner = Flujo(_echo())
    assert not path.exists(), "building a runner must not create the state file"
    async with runner:
        assert (await runner.run_async(1)).success
    assert path.is_file()
    conn = sqlite3.connect(path)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    assert mode.lower() == "wal"


# --- nothing in the working directory --------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


async def test_persist_state_false_writes_nothing_anywhere(
    workdir: Path, isolated_state_home: Path
) -> None:
    async with Flujo(_echo(), persist_state=False) as runner:
        for i in range(3):
            assert (await runner.run_async(i)).success
    assert _files_under(workdir) == []
    assert _files_under(isolated_state_home) == []


def test_sync_runs_without_persistence_write_nothing(
    workdir: Path, isolated_state_home: Path
) -> None:
    runner = Flujo(_echo() >> Step.human_in_the_loop("ok?"), persist_state=False)
    assert runner.run(1).status == "paused"
    assert _files_under(workdir) == []
    assert _files_under(isolated_state_home) == []


async def test_testing_profile_writes_nothing_to_disk(
    workdir: Path, isolated_state_home: Path
) -> None:
    runner = Flujo(_echo(), container=FlujoContainer.from_profile(TESTING_PROFILE))
    async with runner:
        done = await runner.run_async(1)
        assert (await runner.get_run(done.run_id)).status == "completed"
    assert _files_under(workdir) == []
    assert _files_under(isolated_state_home) == []


async def test_the_default_runner_writes_only_under_the_state_home(
    workdir: Path, isolated_state_home: Path
) -> None:
    async with Flujo(_echo()) as runner:
        assert (await runner.run_async(1)).success
    assert _files_under(workdir) == []
    assert (isolated_state_home / "flujo" / "runs.db").is_file()
