"""A versioned state provider in Redis through ``redis.asyncio`` (install the ``redis`` extra).

Each key is one Redis hash, ``{prefix}{namespace}:{key}``, with the fields ``v``
(the value as orjson bytes), ``n`` (its version) and ``w`` (the writer tag, absent
for a plain save). The braces are a hash tag: every key of a namespace lands in
one slot of a Redis Cluster, where a script may only touch keys of one slot.

Compare-and-swap is one Lua script per ``save_versioned`` call, not WATCH/MULTI.
Redis runs a script alone, so the script checks every write's version and only
then writes them all: one round trip, all or nothing, and a conflict is told by
the versions themselves. WATCH/MULTI needs a connection held across three round
trips (WATCH and reads, MULTI, EXEC), and EXEC fails when *anything* touched a
watched key, so under contention a caller retries without knowing whether it
lost to a real conflict; a lost race also could not name the winning writer
without another read.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from flujo.domain.errors import ConfigurationError, StateCorruptError, StateError
from flujo.domain.interfaces import Versioned, Write
from flujo.infra.loop_bound import PerLoop
from flujo.infra.providers.loop_end import LoopEnd
from flujo.infra.providers.stored import checked, conflict, encoded, stored_json
from flujo.infra.state.rows import Corrupt, count

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStateProvider"]

R = TypeVar("R")

# KEYS: the hashes written, in call order. ARGV[1]: the TTL in ms ("0": none); then four
# per write: expected version ("" = whatever is stored), "1" if it has a writer tag, the
# tag, the value. Every check runs before any write, so a conflict writes nothing. A
# version written earlier in the same call is what a later write of that key is
# compared with. Replies: {"ok", version...}, {"conflict", index, found, has_writer,
# writer} or {"corrupt", index, stored}.
_SAVE = """
local ttl = tonumber(ARGV[1])
local planned, tags, versions = {}, {}, {}
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 4
  local found, tag = planned[key], tags[key]
  if found == nil then
    local stored = redis.call('HMGET', key, 'n', 'w')
    if stored[1] then
      found = tonumber(stored[1])
      if found == nil or found < 1 or found % 1 ~= 0 then
        return {'corrupt', i, stored[1]}
      end
    else
      found = 0
    end
    tag = stored[2]
  end
  local expected = ARGV[at]
  if expected ~= '' and tonumber(expected) ~= found then
    if tag then return {'conflict', i, found, 1, tag} end
    return {'conflict', i, found, 0, ''}
  end
  planned[key] = found + 1
  if ARGV[at + 1] == '1' then tags[key] = ARGV[at + 2] else tags[key] = false end
  versions[i] = found + 1
end
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 4
  redis.call('HSET', key, 'v', ARGV[at + 3], 'n', versions[i])
  if ARGV[at + 1] == '1' then
    redis.call('HSET', key, 'w', ARGV[at + 2])
  else
    redis.call('HDEL', key, 'w')
  end
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
table.insert(versions, 1, 'ok')
return versions
"""

_SAVE_SHA = hashlib.sha1(_SAVE.encode()).hexdigest()


def _version(value: object) -> int:
    """Return a stored version: a whole number >= 1, as Redis gives it back (bytes)."""
    try:
        number = int(value) if isinstance(value, bytes) else None
    except ValueError:
        number = None
    if number is None or number < 1:
        raise Corrupt(value, "a whole number >= 1")
    return count(number)


def _writer(value: object) -> str | None:
    """Return a stored writer tag (UTF-8 bytes), or ``None`` when the hash has none."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            pass
    raise Corrupt(value, "UTF-8 text")


class RedisStateProvider:
    """Stores each value as JSON (orjson bytes, never pickle) in a Redis hash per key.

    Values come back as plain JSON data; pydantic models are stored as their JSON
    form. It is a ``VersionedStateProvider``: every save adds 1 to the key's version
    (0 when nothing is stored), and ``save_versioned`` checks and writes every write
    of one call in one Lua script, which Redis runs alone: all of them land or none.

    ``ttl_s`` (seconds) makes every save set the key to expire that long after it;
    an expired key is gone, value and version (back to 0). ``None``: keys never
    expire, and a save removes an expiry set before. ``namespace`` and ``prefix``
    keep providers sharing a server apart. A client belongs to the event loop that
    opened it, so each loop gets its own, opened lazily; ``close()`` closes the
    calling loop's.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "default",
        prefix: str = "flujo:state:",
        ttl_s: float | None = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ConfigurationError(
                "RedisStateProvider needs a Redis URL such as redis://127.0.0.1:6379/0, "
                f"got {url!r}"
            )
        if not isinstance(namespace, str) or not isinstance(prefix, str):
            raise ConfigurationError(
                f"namespace and prefix must be strings, got {namespace!r} and {prefix!r}"
            )
        if ttl_s is not None and (
            isinstance(ttl_s, bool)
            or not isinstance(ttl_s, int | float)
            or not math.isfinite(ttl_s)
            or ttl_s <= 0
        ):
            raise ConfigurationError(
                f"ttl_s must be a number of seconds > 0, or None for no expiry; got {ttl_s!r}"
            )
        self.url = url
        self.namespace = namespace
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._ttl_ms = 0 if ttl_s is None else max(1, round(ttl_s * 1000))
        self._where = f"Redis state provider (prefix {prefix!r})"
        self._clients: PerLoop[Redis] = PerLoop(self._open, _close_client)
        self._loop_end = LoopEnd(self._clients.close)

    def redis_key(self, key: str) -> str:
        """Return the Redis key a value's hash is stored under."""
        return f"{self.prefix}{{{self.namespace}}}:{key}"

    def describe(self) -> str:
        """Name this store in messages."""
        return self._where

    async def _open(self) -> Redis:
        try:
            from redis.asyncio import Redis
        except ImportError as exc:
            raise ConfigurationError(
                "RedisStateProvider needs the redis package: pip install 'flujo[redis]'"
            ) from exc
        client = Redis.from_url(self.url)
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            await client.aclose()
            raise ConfigurationError(
                f"{self._where}: the URL asks for decoded responses (decode_responses), but "
                "values are stored as bytes; remove decode_responses from the URL"
            )
        await self._loop_end.watch()  # closed as its loop ends, if nobody closed it before
        return client

    async def _run(self, what: str, fn: Callable[[Redis], Awaitable[R]]) -> R:
        try:
            return await fn(await self._clients.get())
        except (OSError, TimeoutError) as exc:
            raise StateError(f"{self._where}: {what} failed (unreachable): {exc}") from exc
        except Exception as exc:
            if not type(exc).__module__.startswith("redis"):
                raise
            from redis import exceptions

            if isinstance(exc, exceptions.ConnectionError | exceptions.TimeoutError):
                raise StateError(f"{self._where}: {what} failed (unreachable): {exc}") from exc
            if "WRONGTYPE" in str(exc):
                raise StateCorruptError(
                    f"{self._where}: {what} failed: a key it uses holds another kind of Redis "
                    f"value than the hash this provider writes ({exc})",
                    column="type",
                    found="not a hash",
                ) from exc
            raise StateError(f"{self._where}: {what} failed: {exc}") from exc

    async def load(self, key: str) -> Any | None:
        """Return the value stored under ``key``, or ``None``."""
        return (await self.load_versioned(key)).value

    async def load_versioned(self, key: str) -> Versioned[Any]:
        """Return the value, version and writer under ``key`` (version 0 if none)."""
        name = self.redis_key(key)
        found: list[Any] = await self._run(
            f"loading {key!r}", lambda c: c.hmget(name, ["v", "n", "w"])
        )
        value, version, writer = found
        if value is None and version is None:
            return Versioned(value=None, version=0)
        where, namespace = self._where, self.namespace
        return Versioned(
            value=stored_json(where, namespace, key, value),
            version=checked(where, namespace, key, "version", _version, version),
            writer=checked(where, namespace, key, "writer", _writer, writer),
        )

    async def save(self, key: str, data: Any) -> None:
        """Store ``data`` under ``key`` (``TypeError`` if it is not JSON-serializable)."""
        await self._save([(key, encoded(self._where, self.namespace, key, data), None, None)])

    async def save_versioned(self, writes: Sequence[Write[Any]]) -> list[int]:
        """Apply ``writes`` all or none, in one script; return the new versions in order.

        Raises ``StateConflictError`` naming the key, the expected and found versions
        and the found writer when a write's ``expected_version`` is not the stored one.
        """
        where, namespace = self._where, self.namespace
        rows = [
            (w.key, encoded(where, namespace, w.key, w.data), w.expected_version, w.writer)
            for w in writes
        ]
        return await self._save(rows) if rows else []

    async def _save(self, rows: Sequence[tuple[str, bytes, int | None, str | None]]) -> list[int]:
        keys = [self.redis_key(key) for key, _, _, _ in rows]
        args: list[Any] = [self._ttl_ms]
        for _, blob, expected, writer in rows:
            args += ["" if expected is None else expected, 1 if writer is not None else 0]
            args += [writer or "", blob]
        shown_keys = ", ".join(repr(key) for key, _, _, _ in rows)
        reply: list[Any] = await self._run(
            f"saving {shown_keys}", lambda c: _evaluate(c, keys, args)
        )
        outcome = reply[0]
        if outcome == b"ok":
            return [int(version) for version in reply[1:]]
        key, expected = rows[int(reply[1]) - 1][0], rows[int(reply[1]) - 1][2]
        if outcome == b"conflict":
            writer = reply[4].decode() if int(reply[3]) else None
            raise conflict(self._where, self.namespace, key, expected, int(reply[2]), writer)
        checked(self._where, self.namespace, key, "version", _version, reply[2])
        raise StateError(f"{self._where}: unexpected reply from the save script: {reply!r}")

    async def delete(self, key: str) -> None:
        """Remove the value under ``key``, if any (its version goes back to 0)."""
        name = self.redis_key(key)
        await self._run(f"deleting {key!r}", lambda c: c.delete(name))

    async def close(self) -> None:
        """Close the calling event loop's client (the next call opens a new one); others stay."""
        await self._clients.close()

    def __repr__(self) -> str:
        return (
            f"RedisStateProvider(prefix={self.prefix!r}, namespace={self.namespace!r}, "
            f"ttl_s={self.ttl_s!r})"
        )


async def _evaluate(client: Redis, keys: list[str], args: list[Any]) -> Any:
    """Run the save script by its SHA1; a server that does not know it yet gets its text."""
    from redis.exceptions import NoScriptError

    try:
        return await client.evalsha(_SAVE_SHA, len(keys), *keys, *args)
    except NoScriptError:  # a new or restarted server, or one whose scripts were flushed
        return await client.eval(_SAVE, len(keys), *keys, *args)


async def _close_client(client: Redis) -> None:
    await client.aclose()
