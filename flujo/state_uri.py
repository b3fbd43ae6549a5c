"""Reading a state URI (``state.uri``, ``$FLUJO_STATE_URI``) strictly: a known scheme, a sound rest.

The forms::

    memory://
    sqlite:///absolute/path/runs.db      (three slashes: the path is absolute)
    sqlite://relative/path/runs.db       (relative to the working directory)
    /absolute/path/runs.db               (a bare path: a SQLite file; ``~`` is expanded)
    postgresql://user:password@host:5432/database   (or postgres://...)

A known scheme with anything else after it — ``postgresql:/host/db`` with one
slash, ``sqlite:runs.db``, a port that is not a number, whitespace around the URI —
is a ``ConfigurationError`` that shows the expected form, never a SQLite file named
after the mistake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flujo.domain.errors import ConfigurationError

__all__ = ["StateBackendName", "StateURI", "parse_state_uri"]

StateBackendName = Literal["memory", "sqlite", "postgres"]
"""The run-state backends a profile can name."""

SCHEMES: dict[str, StateBackendName] = {
    "memory": "memory",
    "sqlite": "sqlite",
    "postgres": "postgres",
    "postgresql": "postgres",
}
"""URI schemes and the backend each selects."""

_EXPECTED: dict[StateBackendName, str] = {
    "memory": "memory:// (nothing after it)",
    "sqlite": (
        "sqlite:///absolute/path/runs.db (three slashes before an absolute path), "
        "sqlite://relative/path/runs.db, or a bare path"
    ),
    "postgres": "postgresql://user:password@host:5432/database",
}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.DOTALL)
_HOST_PORT = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::(.*))?", re.DOTALL)


@dataclass(frozen=True, slots=True)
class StateURI:
    """A parsed state URI: the backend, and the SQLite file or PostgreSQL DSN it names."""

    backend: StateBackendName
    path: Path | None = None
    """The SQLite file (``sqlite``)."""
    dsn: str | None = None
    """The DSN as given (``postgres``)."""


def parse_state_uri(uri: str, origin: str = "state.uri") -> StateURI:
    """Parse ``uri``; if malformed, ``ConfigurationError`` naming ``origin`` and the form."""
    if uri != uri.strip():
        raise ConfigurationError(
            f"{origin}: {uri!r} has spaces or line breaks around it; remove them"
        )
    match = _SCHEME.fullmatch(uri)
    if match is None or match.group(1).lower() not in SCHEMES:
        if match is not None and match.group(2).startswith("//"):
            supported = ", ".join(f"{s}://" for s in SCHEMES)
            raise ConfigurationError(
                f"{origin}: URI scheme {match.group(1)!r} is not supported; use one of {supported}"
            )
        return StateURI("sqlite", path=_sqlite_path(uri, uri, origin))  # a bare path
    scheme, rest = match.group(1), match.group(2)
    backend = SCHEMES[scheme.lower()]
    if not rest.startswith("//"):
        raise _malformed(uri, origin, backend, f"{scheme}: must be followed by '//'")
    rest = rest[2:]
    if backend == "memory":
        if rest:
            raise _malformed(uri, origin, backend, "nothing may follow memory://")
        return StateURI("memory")
    if backend == "sqlite":
        if not rest:
            raise _malformed(uri, origin, backend, "it names no file")
        return StateURI("sqlite", path=_sqlite_path(uri, rest, origin))
    why = _postgres_problem(rest)
    if why is not None:
        raise _malformed(uri, origin, backend, why)
    return StateURI("postgres", dsn=uri)


def _malformed(uri: str, origin: str, backend: StateBackendName, why: str) -> ConfigurationError:
    scheme = uri.partition(":")[0]
    return ConfigurationError(
        f"{origin}: {uri!r} is not a valid {scheme} URI: {why}; expected {_EXPECTED[backend]}"
    )


def _sqlite_path(uri: str, path: str, origin: str) -> Path:
    if path.endswith("/"):
        if path == uri:  # a bare path
            raise ConfigurationError(
                f"{origin}: {uri!r} names a folder, not a file; give the SQLite file's path"
            )
        raise _malformed(uri, origin, "sqlite", "it names a folder, not a file")
    if path == ":memory:":
        raise ConfigurationError(
            f"{origin}: {uri!r} would be a SQLite database that vanishes with its connection; "
            "use memory:// for run state kept in memory"
        )
    return Path(path).expanduser()


def _postgres_problem(rest: str) -> str | None:
    """Say what is wrong with the part after ``postgresql://`` (hosts, ports, whitespace)."""
    if not rest:
        return "it names no server or database"
    if any(c.isspace() for c in rest):
        return "it contains whitespace"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    hosts = authority.rpartition("@")[2]
    for host in hosts.split(",") if hosts else ():
        found = _HOST_PORT.fullmatch(host)
        port = found.group(2) if found is not None else None
        if found is None or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
            return f"{host!r} is not host:port with a port from 1 to 65535"
    return None
