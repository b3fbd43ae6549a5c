"""blake3 content hashing."""

from __future__ import annotations

from blake3 import blake3

__all__ = ["Blake3Hasher"]


class Blake3Hasher:
    """Hex blake3 digests for cache keys and change detection."""

    __slots__ = ()

    def digest(self, data: bytes) -> str:
        """Return the hex blake3 digest of ``data``."""
        return blake3(data).hexdigest()
