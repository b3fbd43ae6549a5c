"""The container profiles shipped inside the package, found by name from any folder.

A profile is given either by **name** or by **path**:

- a ``str`` made only of letters, digits, ``-`` and ``_`` (no ``/``, no ``.``) names a
  shipped profile: ``"testing"`` is ``flujo/profiles/testing.yaml`` of the installed
  package, whatever the working directory;
- anything else — a ``pathlib.Path``, or a ``str`` holding a ``/`` or a ``.``
  (``"./testing"``, ``"ci.yaml"``, ``"conf/flujo.yml"``) — is a file path.

So a file of your own named like a shipped profile is reached by writing it as a
path (``./testing.yaml``); a bare name never looks in the working directory.
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from flujo.domain.errors import ConfigurationError

__all__ = ["is_profile_name", "locate_profile", "shipped_profiles"]

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SUFFIX = ".yaml"


def is_profile_name(profile: str | Path) -> bool:
    """Return whether ``profile`` names a shipped profile rather than a file path."""
    return isinstance(profile, str) and _NAME.fullmatch(profile) is not None


def shipped_profiles() -> list[str]:
    """Return the names of the profiles shipped with flujo, sorted."""
    return sorted(
        entry.name.removesuffix(_SUFFIX)
        for entry in files(__name__).iterdir()
        if entry.name.endswith(_SUFFIX) and entry.is_file()
    )


def locate_profile(profile: str | Path) -> Traversable:
    """Return the file ``profile`` names: a shipped profile by name, else the path itself.

    An unknown name is a ``ConfigurationError`` listing the shipped profiles. A path is
    returned as it is (relative to the working directory, as any path); whether it can
    be read shows when it is read.
    """
    if not is_profile_name(profile):
        return Path(profile)
    name = str(profile)
    resource = files(__name__) / f"{name}{_SUFFIX}"
    if not resource.is_file():
        shipped = ", ".join(shipped_profiles())
        raise ConfigurationError(
            f"no shipped container profile named {name!r}; the shipped profiles are "
            f"{shipped} (give a file of your own as a path: one holding '/' or '.', "
            f"e.g. ./{name}.yaml)"
        )
    return resource
