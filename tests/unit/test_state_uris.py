"""State URIs are read strictly: a known scheme with a malformed rest is an error showing the form.

``postgresql:/localhost/flujo`` (one slash) used to be taken for a bare path and
become a SQLite file of that name in the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flujo import ConfigurationError, Flujo, Step
from flujo.containers import FlujoContainer
from flujo.settings import STATE_URI_ENV, StateSettings
from flujo.state_uri import StateURI, parse_state_uri

MALFORMED = [
    ("postgresql:/localhost/flujo", "postgresql://user:password@host:5432/database"),
    ("postgres:localhost/flujo", "postgresql://user:password@host:5432/database"),
    ("POSTGRESQL:/localhost/flujo", "postgresql://user:password@host:5432/database"),
    ("postgresql://", "names no server"),
    ("postgresql://localhost:port/flujo", "port from 1 to 65535"),
    ("postgresql://localhost:99999/flujo", "port from 1 to 65535"),
    ("postgresql://u:p@h1:5432,h2:x/flujo", "'h2:x'"),
    ("postgresql://local host/flujo", "whitespace"),
    ("sqlite:runs.db", "sqlite:///absolute/path/runs.db"),
    ("sqlite:/tmp/runs.db", "sqlite:///absolute/path/runs.db"),
    ("sqlite://", "names no file"),
    ("sqlite:///tmp/folder/", "names a folder"),
    ("sqlite://:memory:", "use memory://"),
    ("memory:", "memory://"),
    ("memory://runs", "nothing may follow memory://"),
    ("postgresql://localhost/flujo\n", "line breaks"),
    (" memory://", "spaces"),
    ("runs/", "names a folder"),
]


@pytest.mark.parametrize(("uri", "shown"), MALFORMED)
def test_a_malformed_uri_is_an_error_showing_the_expected_form(uri: str, shown: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_state_uri(uri)
    message = str(caught.value)
    assert message.startswith("state.uri: ") and repr(uri) in message
    assert shown in message


@pytest.mark.parametrize(("uri", "shown"), MALFORMED)
def test_settings_with_a_malformed_uri_are_refused(uri: str, shown: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        StateSettings(uri=uri)
    assert shown in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("memory://", StateURI("memory")),
        ("MEMORY://", StateURI("memory")),
        (
            "sqlite:///var/lib/flujo/runs.db",
            StateURI("sqlite", path=Path("/var/lib/flujo/runs.db")),
        ),
        ("sqlite://relative/runs.db", StateURI("sqlite", path=Path("relative/runs.db"))),
        ("/var/lib/flujo/runs.db", StateURI("sqlite", path=Path("/var/lib/flujo/runs.db"))),
        ("runs.db", StateURI("sqlite", path=Path("runs.db"))),
        ("C:runs.db", StateURI("sqlite", path=Path("C:runs.db"))),  # not a known scheme
        ("postgresql://u:p@db.example:5432/flujo", None),
        ("postgres://u@db.example/flujo?sslmode=require", None),
        ("postgresql://h1:5432,h2:5433/flujo", None),
        ("postgresql://[::1]:5432/flujo", None),
        ("postgresql:///flujo?host=/var/run/postgresql", None),
    ],
)
def test_the_documented_forms_parse(uri: str, parsed: StateURI | None) -> None:
    expected = parsed if parsed is not None else StateURI("postgres", dsn=uri)
    assert parse_state_uri(uri) == expected


def test_a_home_path_is_expanded() -> None:
    assert parse_state_uri("sqlite://~/runs.db").path == Path.home() / "runs.db"
    assert parse_state_uri("~/runs.db").path == Path.home() / "runs.db"


def test_an_unknown_scheme_still_lists_the_supported_ones() -> None:
    with pytest.raises(ConfigurationError, match="'redis' is not supported; use one of memory://"):
        parse_state_uri("redis://localhost:6379/0")


def test_one_slash_in_the_environment_writes_no_sqlite_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(STATE_URI_ENV, "postgresql:/localhost/flujo")
    with pytest.raises(ConfigurationError) as caught:
        Flujo(Step.from_callable(lambda x: x, name="a")).run(1)
    assert f"${STATE_URI_ENV}" in str(caught.value)
    assert "postgresql://user:password@host:5432/database" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_a_malformed_environment_uri_fails_when_the_backend_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = FlujoContainer()
    container.settings()  # resolved before the variable is set
    monkeypatch.setenv(STATE_URI_ENV, "sqlite:runs.db")
    with pytest.raises(ConfigurationError, match=r"\$FLUJO_STATE_URI: 'sqlite:runs.db'"):
        container.state_backend()


def test_an_explicit_backend_still_refuses_a_malformed_environment_uri(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The memory backend ignores another store's URI, but not a broken one: it is a mistake.
    monkeypatch.setenv(STATE_URI_ENV, "postgresql:/localhost/flujo")
    with pytest.raises(ConfigurationError, match="must be followed by '//'"):
        StateSettings(backend="memory")
