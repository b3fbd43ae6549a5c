"""Run-state and provider files are the owner's alone: folders 0700, files (and sidecars) 0600.

They hold every run's inputs and outputs; they used to be created 0644 in a 0755
folder. The umask still applies, so a stricter one gives stricter modes; a file or
folder that already exists keeps its mode.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flujo import Flujo, Step
from flujo.infra.private_files import prepare_private_file
from flujo.providers import SQLiteStateProvider
from flujo.state import SQLiteBackend
from flujo.testing import make_run


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Run the test under the usual umask 022; it may set another with ``umask(value)``."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


async def test_the_backend_makes_its_folders_0700_and_its_files_0600(
    tmp_path: Path, umask: Callable[[int], int]
) -> None:
    path = tmp_path / "a" / "b" / "runs.db"
    before = mode(tmp_path)
    backend = SQLiteBackend(path)
    try:
        await backend.save_run(make_run("r1"))
        assert mode(tmp_path / "a") == 0o700 and mode(tmp_path / "a" / "b") == 0o700
        assert mode(path) == 0o600
        # SQLite gives its write-ahead log and shared-memory files the file's own mode.
        assert mode(Path(f"{path}-wal")) == 0o600 and mode(Path(f"{path}-shm")) == 0o600
    finally:
        await backend.close()
    assert mode(tmp_path) == before  # it existed: not flujo's to change


async def test_a_provider_file_is_0600_too(tmp_path: Path, umask: Callable[[int], int]) -> None:
    path = tmp_path / "values" / "state.db"
    provider = SQLiteStateProvider(path)
    try:
        await provider.save("k", [1])
        assert (mode(path.parent), mode(path)) == (0o700, 0o600)
        assert mode(Path(f"{path}-wal")) == 0o600
    finally:
        await provider.close()


def test_the_default_state_file_of_a_runner_is_private(
    isolated_state_home: Path, umask: Callable[[int], int]
) -> None:
    Flujo(Step.from_callable(lambda x: x, name="a")).run(1)
    folder = isolated_state_home / "flujo"
    assert mode(isolated_state_home) == 0o700  # made by flujo, like the XDG spec asks
    assert (mode(folder), mode(folder / "runs.db")) == (0o700, 0o600)


def test_a_stricter_umask_is_kept(tmp_path: Path, umask: Callable[[int], int]) -> None:
    umask(0o277)
    path = tmp_path / "strict" / "runs.db"
    prepare_private_file(path)
    assert (mode(path.parent), mode(path)) == (0o500, 0o400)


async def test_an_existing_file_and_folder_keep_their_modes(
    tmp_path: Path, umask: Callable[[int], int]
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o750)
    os.chmod(folder, 0o750)
    path = folder / "runs.db"
    path.touch()
    os.chmod(path, 0o640)  # shared with a group on purpose
    backend = SQLiteBackend(path)
    try:
        await backend.save_run(make_run("r1"))
        assert (mode(folder), mode(path)) == (0o750, 0o640)
        assert mode(Path(f"{path}-wal")) == 0o640  # the sidecars follow the file
    finally:
        await backend.close()


def test_a_file_made_meanwhile_by_another_process_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    prepare_private_file(path)
    assert mode(path) == 0o644
    prepare_private_file(path)  # and calling it twice is harmless
    assert path.read_bytes() == b""
