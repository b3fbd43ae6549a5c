"""``Entry``: one referenced value of a run, shared by every reference to its key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flujo.domain.interfaces import StateProvider
from flujo.domain.models import ContextReference

if TYPE_CHECKING:
    from flujo.application.core.hydration import Hydrator

__all__ = ["Entry", "Key"]

Key = tuple[str, str]
"""``(provider_id, key)``: the identity of one referenced value."""


class Entry:
    """One referenced value of the run, shared by every reference to its key."""

    __slots__ = (
        "digest",
        "ident",
        "loaded",
        "path",
        "provider",
        "read",
        "reader",
        "refs",
        "session",
        "tainted",
        "value",
        "version",
        "watch",
    )

    def __init__(
        self, session: Hydrator, ident: Key, provider: StateProvider[Any], path: str
    ) -> None:
        self.session = session
        self.ident = ident
        self.provider = provider
        self.path = path
        self.value: Any = None
        self.version: int | None = None
        """The provider's version of ``value`` (versioned providers), else ``None``."""
        self.loaded = False
        self.digest: str | None = None
        self.read = False
        self.watch = True
        self.tainted: str | None = None
        """Why in-place changes of this value cannot be saved (a failed step read it)."""
        self.refs: list[ContextReference[Any]] = []
        self.reader: Any = None
        """The lean scope whose reads may take ``value`` as it is (see ``LeanAccess.read``)."""

    def publish(self) -> None:
        """Give every reference object bound to this entry the entry's value."""
        for ref in self.refs:
            private: Any = ref.__pydantic_private__
            private["_value"] = self.value
            private["_dirty"] = False

    def describe(self) -> str:
        """``path (provider 'p', key 'k')`` for messages."""
        return f"{self.path or 'a reference'} (provider {self.ident[0]!r}, key {self.ident[1]!r})"
