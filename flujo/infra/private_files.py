"""Files only their owner can read: run state and provider files hold every run's data.

flujo creates the folders of a SQLite file with mode 0700 and the file with 0600,
through ``os.mkdir``/``os.open`` so the process umask still applies: a stricter
umask gives stricter modes, never looser ones. SQLite gives the file's ``-wal``
and ``-shm`` sidecars the file's own mode. A folder or file that already exists
keeps its mode: flujo does not change what it did not create.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FILE_MODE", "FOLDER_MODE", "prepare_private_file"]

FOLDER_MODE = 0o700
"""The mode of a folder flujo creates (before the umask)."""

FILE_MODE = 0o600
"""The mode of a file flujo creates (before the umask)."""


def prepare_private_file(path: Path) -> None:
    """Create ``path``'s missing folders (0700) and ``path`` itself, empty (0600), if missing."""
    _make_folders(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags, FILE_MODE)
    except FileExistsError:
        return  # made by someone else, perhaps another process just now: left as it is
    os.close(descriptor)


def _make_folders(folder: Path) -> None:
    missing: list[Path] = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        try:
            os.mkdir(made, FOLDER_MODE)
        except FileExistsError:
            if not made.is_dir():
                raise
