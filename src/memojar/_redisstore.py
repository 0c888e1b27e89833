"""Entries in a Redis server, for a cache shared between processes and machines.

Layout (``prefix`` defaults to ``memojar:``; ``<entry>`` is ``<prefix><function>:<key>``)::

    <entry>              the entry's bytes, or for entries over chunk_size a short pointer:
                         "MJCH 1 <gen> <chunks> <size>\\n" + the entry's first 4 KiB
    <entry>:c:<gen>      a hash of chunk number -> bytes, written once under a fresh <gen>
    <entry>:lock         the compute lock: a random token, PX 2 s, renewed while held
    <prefix><function>:swept   the identity of the code that last swept old entries
    <prefix>lru          sorted set: entry key -> last read or write (epoch seconds)
    <prefix>sizes        hash: entry key -> size in bytes
    <prefix>total        the sum of the sizes

A chunked write puts its chunks under a new generation, then one Lua script switches the
pointer, drops the old generation and updates the index, so a reader that holds a pointer
reads chunks of exactly one write (a superseded generation is gone, not mixed: the reader
retries). Every change to an entry and its index is one script, so the index and the total
stay consistent across clients; ``max_size`` evicts by the ``lru`` set, not by server
configuration. Entries that Redis expires (``ttl`` -> ``PX``) leave index members behind
until an eviction or ``cleanup`` drops them. The scripts name keys they build, so the store
needs a single server (or a replica set), not Redis Cluster.

A hit is one round trip (a GET; with ``max_size``, pipelined with a ZADD XX that stamps the
access) and takes no lock.
Every Redis error becomes an ``OSError`` (``ConnectionError``, ``TimeoutError``, ``ENOSPC``
for "OOM command not allowed"); after a connection fault the store fails fast for a second
rather than making every call wait for the socket timeout again.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ._entry import Miss, header_length
from ._errors import logger, warn
from ._store import KeyLock, Store, StoredEntry

DEFAULT_PREFIX = "memojar:"
NOTE = "swept"  # <prefix><function>:swept, the code that last swept (see Store.read_note)
DEFAULT_SOCKET_TIMEOUT = 5.0  # seconds: no call waits longer than this for the server
DEFAULT_CHUNK_SIZE = 1 << 20  # entries above this are split into chunks of this size
HEAD_BYTES = 4096  # what ``scan`` returns of each entry: the header and then some
LOCK_TTL = 2.0  # seconds a lock outlives its holder's last renewal
LOCK_RENEW = 0.5  # seconds between renewals of held locks
LOCK_POLL_MAX = 0.05  # seconds, the longest sleep between tries of a held lock
EVICT_TO = 0.9  # eviction frees room down to this fraction of max_size, so it runs rarely
EVICT_LIMIT = 1000  # entries one script call evicts at most (bounds how long it blocks)
INFLIGHT_TTL = 3600.0  # chunks not (yet) committed expire after this many seconds
ORPHAN_AGE = 600.0  # ``cleanup`` removes uncommitted chunks older than this
FAULT_BACKOFF = 1.0  # seconds of failing fast after a connection fault
_READ_BATCH = 8  # chunks fetched per round trip
_SCAN_COUNT = 1000  # keys SCAN looks at per call (and commands per pipeline)
_POINTER = re.compile(rb"MJCH 1 ([0-9a-f]{16}) ([0-9]{1,9}) ([0-9]{1,15})\n")
_HEX32 = b"[0-9a-f]" * 32
_HEX16 = b"[0-9a-f]" * 16
_OPTIONS = ("prefix", "password", "socket_timeout", "chunk_size")

# --- Lua: every change to an entry together with its index ------------------------------
# KEYS[1..3] are always lru, sizes, total. A script's first write is the one Redis may
# refuse when out of memory (later writes of the same script run), so each script does its
# memory-hungry write first and leaves the index consistent whichever way it ends.

_LUA_COMMON = """
local lru, sizes, total = KEYS[1], KEYS[2], KEYS[3]
local function chunks_of(entry)
  local head = redis.pcall('GETRANGE', entry, 0, 31)
  if type(head) ~= 'string' then return nil end
  local gen = string.match(head, '^MJCH 1 (%x+) ')
  if gen then return entry .. ':c:' .. gen end
  return nil
end
local function size_of(entry)
  return tonumber(redis.call('HGET', sizes, entry) or 0) or 0
end
local function drop(entry)
  local chunks = chunks_of(entry)
  if chunks then redis.call('UNLINK', chunks) end
  local existed = redis.call('UNLINK', entry)
  local size = size_of(entry)
  redis.call('HDEL', sizes, entry)
  redis.call('ZREM', lru, entry)
  if size ~= 0 then redis.call('DECRBY', total, size) end
  return existed, size
end
-- Evict least-recently-used entries (never `keep`) until `incoming` more bytes fit
-- max_size, down to the EVICT_TO fraction. `used` excludes `keep`'s own size.
local function make_room(max_size, incoming, keep, kept, used)
  local removed, steps = 0, 0
  if used + incoming <= max_size then return 0 end
  local target = math.max(math.floor(max_size * EVICT_TO) - incoming, 0)
  while used > target and steps < EVICT_LIMIT do
    local oldest = redis.call('ZRANGE', lru, 0, 1)
    local victim = oldest[1]
    if victim == keep then victim = oldest[2] end
    if not victim then  -- nothing left to evict: the total had drifted; now it is known
      redis.pcall('SET', total, kept)  -- (refused when out of memory: then drifted still)
      break
    end
    local existed, size = drop(victim)
    used = used - size
    removed = removed + existed
    steps = steps + 1
  end
  return removed
end
""".replace("EVICT_TO", repr(EVICT_TO)).replace("EVICT_LIMIT", str(EVICT_LIMIT))

# KEYS[4] entry; ARGV value, px (0: none), chunks key ('' : none), size, now, max_size (0)
_LUA_COMMIT = _LUA_COMMON + """
local entry = KEYS[4]
local value, px, chunks = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local size, now, max_size = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
if chunks ~= '' and redis.call('EXISTS', chunks) == 0 then
  return redis.error_reply('the chunks of this write expired before they were committed')
end
local before = size_of(entry)
local evicted = 0
if max_size > 0 then
  local used = (tonumber(redis.call('GET', total) or 0) or 0) - before
  evicted = make_room(max_size, size, entry, before, used)
end
local old = chunks_of(entry)
if px > 0 then
  redis.call('SET', entry, value, 'PX', px)
else
  redis.call('SET', entry, value)
end
if old and old ~= chunks then redis.call('UNLINK', old) end
if chunks ~= '' then
  if px > 0 then redis.call('PEXPIRE', chunks, px) else redis.call('PERSIST', chunks) end
end
redis.call('HSET', sizes, entry, size)
redis.call('INCRBY', total, size - before)
redis.call('ZADD', lru, now, entry)
-- entries Redis expired leave index members: drop one stale member per write
local oldest = redis.call('ZRANGE', lru, 0, 0)[1]
if oldest and oldest ~= entry and redis.call('EXISTS', oldest) == 0 then drop(oldest) end
return evicted
"""

# KEYS[4] entry -> 1 if it existed
_LUA_DELETE = _LUA_COMMON + """
local existed = drop(KEYS[4])
return existed
"""

# ARGV max_size, incoming -> entries evicted
_LUA_EVICT = _LUA_COMMON + """
local used = tonumber(redis.call('GET', total) or 0) or 0
return make_room(tonumber(ARGV[1]), tonumber(ARGV[2]), '', 0, used)
"""

# KEYS[4] entry: drop its index members if Redis expired it -> 1 if dropped
_LUA_FORGET = _LUA_COMMON + """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
drop(KEYS[4])
return 1
"""

# -> sets the total to the sum of the recorded sizes
_LUA_RECOUNT = _LUA_COMMON + """
local sum = 0
for _, size in ipairs(redis.call('HVALS', sizes)) do sum = sum + (tonumber(size) or 0) end
redis.pcall('SET', total, sum)  -- refused when out of memory and nothing was freed
return sum
"""

# KEYS[4] entry, KEYS[5] one of its chunk hashes; ARGV pttl below which an uncommitted
# hash is orphaned -> 1 if removed. A hash the entry points to is never removed.
_LUA_REAP = _LUA_COMMON + """
if chunks_of(KEYS[4]) == KEYS[5] then return 0 end
local pttl = redis.call('PTTL', KEYS[5])
if pttl == -1 or (pttl >= 0 and pttl < tonumber(ARGV[1])) then
  return redis.call('UNLINK', KEYS[5])
end
return 0
"""

_LUA_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_LUA_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class RedisStore(Store):
    """Entries in Redis. See the module docstring for the layout and its guarantees.

    ``location``: ``redis://[:PASSWORD@]HOST[:PORT][/DB]``, ``rediss://...`` (TLS) or
    ``unix:///path/to/socket?db=N``, with optional query options ``prefix``, ``password``,
    ``socket_timeout`` (seconds) and ``chunk_size`` (bytes); keyword arguments override
    them.
    """

    def __init__(
        self,
        location: str,
        max_size: int | None = None,
        signed: bool = False,
        *,
        prefix: str | None = None,
        password: str | None = None,
        socket_timeout: float | None = None,
        chunk_size: int | None = None,
    ) -> None:
        url, options = _split_location(location)
        self.prefix = prefix if prefix is not None else options.get("prefix", DEFAULT_PREFIX)
        self.socket_timeout = _positive(
            "socket_timeout", socket_timeout, options.get("socket_timeout"),
            DEFAULT_SOCKET_TIMEOUT, float,
        )
        self.chunk_size = int(_positive(
            "chunk_size", chunk_size, options.get("chunk_size"), DEFAULT_CHUNK_SIZE, int
        ))
        password = password if password is not None else options.get("password")
        self.location = _redact(location)
        self.max_size = max_size
        self._signed = signed
        self._warned_unsigned = False
        kwargs: dict[str, Any] = {}
        if password is not None:
            kwargs["password"] = password
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_timeout,
                # one immediate retry after a dropped connection (a restarted server, an
                # idle connection the server closed); never after a timeout, so nothing
                # waits longer than one socket_timeout
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                **kwargs,
            )
        except ValueError as exc:
            raise ValueError(f"cache location {self.location!r} is not a valid Redis URL: "
                             f"{exc}") from exc
        pre = self.prefix.encode()
        self._pre = pre
        self._index = [pre + b"lru", pre + b"sizes", pre + b"total"]
        register = self._client.register_script
        self._commit = register(_LUA_COMMIT)
        self._delete = register(_LUA_DELETE)
        self._evict = register(_LUA_EVICT)
        self._forget = register(_LUA_FORGET)
        self._recount = register(_LUA_RECOUNT)
        self._reap = register(_LUA_REAP)
        self._release = register(_LUA_RELEASE)
        self._renew = register(_LUA_RENEW)
        self._renewer = _Renewer()
        self._down_until = 0.0  # fail fast until then (monotonic), after _last_fault
        self._last_fault = ""
        self._names: dict[str, bytes] = {}  # function name -> b"<prefix><function>:"

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r})"

    def _name(self, function: str, key: str) -> bytes:
        base = self._names.get(function)
        if base is None:
            base = self._names[function] = self._pre + function.encode() + b":"
        return base + key.encode()

    # --- the hit path -------------------------------------------------------------------

    def read(self, function: str, key: str) -> Any | None:
        if not self._warned_unsigned:
            self._warn_unsigned()
        name = self._name(function, key)
        try:
            self._check_up()
            if self.max_size is None:  # no eviction, so no access order to keep: one GET
                value = self._client.get(name)
            else:
                pipe = self._client.pipeline(transaction=False)
                pipe.get(name)
                pipe.zadd(self._index[0], {name: time.time()}, xx=True)
                # an access stamp refused (out of memory) must not cost the hit
                value = pipe.execute(raise_on_error=False)[0]
            if value is None or isinstance(value, Exception):
                return None
            if value[:5] == b"MJCH ":
                return self._read_chunks(name, value)
            return value
        except (RedisError, OSError) as exc:
            self._fault(exc)
            logger.debug("read of %r from %s failed: %s", name, self.location, exc)
            return None

    def _read_chunks(self, name: bytes, pointer: bytes) -> bytearray | None:
        """Assemble a chunked entry; chunks are all of the generation the pointer names.

        A writer that replaces the entry meanwhile removes that generation: some chunk is
        then missing, and the reader follows the new pointer (a few times at most).
        """
        for _ in range(3):
            match = _POINTER.match(pointer)
            if match is None:
                return None
            gen, count, size = match[1], int(match[2]), int(match[3])
            chunks = name + b":c:" + gen
            data = _assemble(self._client, chunks, count, size)
            if data is not None:
                return data
            pointer = self._client.get(name)
            if pointer is None:
                return None
            if pointer[:5] != b"MJCH ":
                return pointer
        return None

    def _warn_unsigned(self) -> None:
        self._warned_unsigned = True
        if not self._signed:
            warn(
                f"Redis cache {self.location} has no secret: its entries are not "
                "authenticated, and anyone who can write to the server can make this "
                "process unpickle (run) code of their choosing. Give every user of the "
                "cache the same secret= (or $MEMOJAR_SECRET) so entries are signed and "
                "checked."
            )

    # --- writing ----------------------------------------------------------------------

    def write(
        self, function: str, key: str, chunks: Sequence[Any], expires: float | None = None
    ) -> int:
        name = self._name(function, key)
        views = [memoryview(c).cast("B") for c in chunks]
        size = sum(v.nbytes for v in views)
        px = 0
        if expires is not None:  # relative, so the hosts' clocks need not agree with Redis
            px = max(int((expires - time.time()) * 1000), 1)
        self._check_up()
        hash_key = b""
        try:
            try:
                if size <= self.chunk_size:
                    value: Any = b"".join(views)
                else:
                    hash_key, value = self._write_chunks(name, views, size)
                self._commit(
                    keys=[*self._index, name],
                    args=[value, px, hash_key, size, time.time(), self.max_size or 0],
                )
            except BaseException:
                if hash_key:
                    self._unlink_quietly(hash_key)
                raise
        except RedisError as exc:
            self._fault(exc)
            raise self._oserror(exc, f"writing {name!r}") from exc
        return size

    def _write_chunks(self, name: bytes, views: list[memoryview], size: int) -> tuple[bytes,
                                                                                     bytes]:
        """Write the chunks under a fresh generation; return its key and the pointer."""
        gen = secrets.token_hex(8).encode()
        hash_key = name + b":c:" + gen
        count = 0
        pipe = self._client.pipeline(transaction=True)  # the first chunk and its expiry
        for piece in _pieces(views, self.chunk_size):
            pipe.hset(hash_key, str(count), piece)  # type: ignore[arg-type]
            if count == 0:
                pipe.pexpire(hash_key, int(INFLIGHT_TTL * 1000))
                pipe.execute()
                pipe = self._client.pipeline(transaction=False)
            elif count % _READ_BATCH == 0:
                pipe.execute()
            count += 1
        pipe.execute()
        head = _head(views, HEAD_BYTES)
        try:  # the whole header, however long, so that ``scan`` finds it here
            head = _head(views, max(HEAD_BYTES, header_length(head)))
        except Miss:
            pass  # not an entry (a store-level test's bytes): the first bytes will do
        return hash_key, b"MJCH 1 %s %d %d\n" % (gen, count, size) + head

    def _unlink_quietly(self, key: bytes) -> None:
        try:
            self._client.unlink(key)
        except RedisError as exc:  # uncommitted chunks expire anyway (INFLIGHT_TTL)
            logger.debug("cannot remove %r: %s", key, exc)

    def delete(self, function: str, key: str) -> bool:
        return self._delete_names([self._name(function, key)]) > 0

    def _delete_names(self, names: Sequence[bytes]) -> int:
        removed = 0
        try:
            self._check_up()
            for start in range(0, len(names), _SCAN_COUNT):
                pipe = self._client.pipeline(transaction=False)
                for name in names[start : start + _SCAN_COUNT]:
                    self._delete(keys=[*self._index, name], client=pipe)
                removed += sum(pipe.execute())
        except RedisError as exc:
            self._fault(exc)
            raise self._oserror(exc, "deleting entries") from exc
        return removed

    def read_note(self, function: str) -> bytes | None:
        # ``<entry prefix>swept``: not 32 hex digits, so no listing takes it for an entry
        try:
            self._check_up()
            return self._client.get(self._name(function, NOTE))
        except RedisError as exc:
            self._fault(exc)
            raise self._oserror(exc, "reading a note") from exc

    def write_note(self, function: str, note: bytes) -> None:
        try:
            self._check_up()
            self._client.set(self._name(function, NOTE), note)
        except RedisError as exc:
            self._fault(exc)
            raise self._oserror(exc, "writing a note") from exc

    def lock(self, function: str, key: str) -> KeyLock:
        return _RedisKeyLock(self, self._name(function, key) + b":lock")

    # --- listing and housekeeping ------------------------------------------------------

    def scan(self, function: str | None = None, heads: bool = True) -> Iterator[StoredEntry]:
        if function is not None:
            pattern = _glob_escape(self._pre + function.encode() + b":") + _HEX32
        else:
            pattern = _glob_escape(self._pre) + b"*:" + _HEX32
        span = HEAD_BYTES + 64 if heads else 63  # 64 bytes cover a pointer's first line
        seen: set[bytes] = set()
        try:
            self._check_up()
            for batch in self._scan_keys(pattern):
                names = [n for n in batch if n not in seen]
                seen.update(names)
                if not names:
                    continue
                pipe = self._client.pipeline(transaction=False)
                for name in names:
                    pipe.getrange(name, 0, span)
                    pipe.strlen(name)
                    pipe.zscore(self._index[0], name)
                results = pipe.execute(raise_on_error=False)
                for i, name in enumerate(names):
                    entry = self._stored(name, *results[3 * i : 3 * i + 3], heads=heads)
                    if entry is not None:
                        yield entry
        except RedisError as exc:
            self._fault(exc)
            raise self._oserror(exc, "listing entries") from exc

    def _scan_keys(self, pattern: bytes) -> Iterator[list[bytes]]:
        cursor = 0
        while True:
            cursor, names = self._client.scan(cursor, match=pattern, count=_SCAN_COUNT)
            yield names
            if cursor == 0:
                return

    def _stored(
        self, name: bytes, head: Any, length: Any, score: Any, heads: bool
    ) -> StoredEntry | None:
        if not isinstance(head, bytes) or not head or not isinstance(length, int):
            return None  # removed since listed, or not a string: not an entry
        size = length
        match = _POINTER.match(head)
        if match is not None:
            size = int(match[3])
            head = head[match.end() :]
        try:
            function = name[len(self._pre) : -33].decode()
            key = name[-32:].decode("ascii")
        except UnicodeDecodeError:
            return None
        accessed = float(score) if isinstance(score, (int, float)) else 0.0
        head = self._whole_header(name, head, match is not None) if heads else b""
        return StoredEntry(
            function, key, size, accessed, head,
            f"{self.location}#{name.decode(errors='replace')}",
        )

    def _whole_header(self, name: bytes, head: bytes, chunked: bool) -> bytes:
        """``head``, read on when the header runs past it (8 bytes a buffer: a result of
        many arrays); a pointer holds its entry's whole header."""
        try:
            need = header_length(head)
        except Miss:  # not an entry: whoever reads the head says so
            return head
        if need <= len(head):
            return head
        if not chunked:
            return self._client.getrange(name, 0, need - 1)
        match = _POINTER.match(self._client.get(name) or b"")
        return match.string[match.end() :] if match else head

    def remove(self, entries: Sequence[StoredEntry]) -> int:
        names = [self._name(e.function_dir, e.key) for e in entries]
        removed = self._delete_names(names)
        for entry in entries:
            logger.debug("evict %s %s (%d bytes)", entry.function_dir, entry.key, entry.size)
        return removed

    def cleanup(self) -> int:
        """Remove orphaned chunks (of writers that died), forget entries Redis expired,
        recount the total. Returns the number of orphaned chunk sets removed."""
        removed = 0
        pattern = _glob_escape(self._pre) + b"*:" + _HEX32 + b":c:" + _HEX16
        threshold = int((INFLIGHT_TTL - ORPHAN_AGE) * 1000)
        try:
            self._check_up()
            for batch in self._scan_keys(pattern):
                if not batch:
                    continue
                pipe = self._client.pipeline(transaction=False)
                for chunks in batch:
                    self._reap(keys=[*self._index, chunks[:-19], chunks], args=[threshold],
                               client=pipe)
                removed += sum(pipe.execute())
            cursor = 0
            while True:
                cursor, members = self._client.zscan(self._index[0], cursor, count=_SCAN_COUNT)
                if members:
                    pipe = self._client.pipeline(transaction=False)
                    for member, _ in members:
                        self._forget(keys=[*self._index, member], client=pipe)
                    pipe.execute()
                if cursor == 0:
                    break
            self._recount(keys=self._index)
        except RedisError as exc:
            self._fault(exc)
            raise self._oserror(exc, "cleaning up") from exc
        return removed

    def evict(self, incoming: int = 0) -> int:
        if self.max_size is None:
            return 0
        removed = 0
        try:
            self._check_up()
            while True:
                n = self._evict(keys=self._index, args=[self.max_size, incoming])
                removed += n
                if n == 0:  # done: under max_size, or nothing left to evict
                    return removed
        except RedisError as exc:
            self._fault(exc)
            raise self._oserror(exc, "evicting entries") from exc

    def close(self) -> None:
        self._renewer.stop()
        self._client.close()

    # --- faults -----------------------------------------------------------------------

    def _fault(self, exc: BaseException) -> None:
        """After a lost or silent server, fail fast for a moment instead of waiting again."""
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
            self._down_until = time.monotonic() + FAULT_BACKOFF
            self._last_fault = f"{type(exc).__name__}: {exc}"

    def _check_up(self) -> None:
        if time.monotonic() < self._down_until:
            raise ConnectionError(
                errno.ECONNREFUSED,
                f"the server failed a moment ago ({self._last_fault}); not trying again "
                f"for {FAULT_BACKOFF:g} s",
            )

    def _oserror(self, exc: RedisError, doing: str) -> OSError:
        """The ``OSError`` for a Redis error: callers catch ``OSError`` alone."""
        if isinstance(exc, RedisTimeoutError):
            return TimeoutError(
                errno.ETIMEDOUT,
                f"no answer within socket_timeout={self.socket_timeout:g} s ({exc})",
            )
        if isinstance(exc, RedisConnectionError):
            return ConnectionError(errno.ECONNREFUSED, f"cannot reach the server ({exc})")
        if isinstance(exc, OutOfMemoryError) or str(exc).startswith("OOM "):
            return OSError(
                errno.ENOSPC,
                f"the server is out of memory (maxmemory): {exc}; give it more memory, "
                "a maxmemory-policy that evicts, or set max_size",
            )
        return OSError(errno.EIO, f"{doing} failed: {type(exc).__name__}: {exc}")


class _RedisKeyLock(KeyLock):
    """``SET NX PX`` with a random token; released only by its holder (compare-and-delete),
    renewed while held, and expired LOCK_TTL seconds after a holder that died."""

    def __init__(self, store: RedisStore, name: bytes) -> None:
        self.store = store
        self.name = name
        self.token = b""

    def acquire(self, blocking: bool = True) -> bool:
        store = self.store
        token = secrets.token_hex(16).encode()
        delay = 0.002
        while True:
            try:
                store._check_up()
                taken = store._client.set(self.name, token, nx=True,
                                          px=int(LOCK_TTL * 1000))
            except RedisError as exc:
                store._fault(exc)
                raise store._oserror(exc, "locking") from exc
            if taken:
                self.token = token
                store._renewer.add(self)
                return True
            if not blocking:
                return False
            time.sleep(delay)
            delay = min(delay * 2, LOCK_POLL_MAX)

    def release(self) -> None:
        """Give the lock back; never raises (a lock that cannot be released expires)."""
        if not self.token:
            return
        self.store._renewer.discard(self)
        try:
            self.store._release(keys=[self.name], args=[self.token])
        except RedisError as exc:
            logger.debug("cannot release %r (it expires by itself): %s", self.name, exc)
        self.token = b""

    def renew(self) -> bool:
        """Extend the lock; False if it is no longer ours (it expired and was taken)."""
        token = self.token
        if not token:
            return False
        try:
            return bool(self.store._renew(keys=[self.name],
                                          args=[token, int(LOCK_TTL * 1000)]))
        except RedisError as exc:  # keep trying until the lock expires
            logger.debug("cannot renew %r: %s", self.name, exc)
            return True


class _Renewer:
    """One daemon thread per store and process, renewing the locks held, while any are."""

    def __init__(self) -> None:
        self._held: dict[int, _RedisKeyLock] = {}
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stopped = threading.Event()

    def add(self, lock: _RedisKeyLock) -> None:
        with self._mutex:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._pid, self._thread, self._held = os.getpid(), None, {}
            self._held[id(lock)] = lock
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="memojar-redis-locks", daemon=True
                )
                self._thread.start()

    def discard(self, lock: _RedisKeyLock) -> None:
        with self._mutex:
            self._held.pop(id(lock), None)

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(LOCK_RENEW):
            with self._mutex:
                locks = list(self._held.values())
                if not locks:
                    self._thread = None
                    return
            for lock in locks:
                if not lock.renew():
                    logger.warning("lock %r expired while held: another caller may compute "
                                   "the same value", lock.name)
                    self.discard(lock)


# --- helpers ---------------------------------------------------------------------------

def _assemble(client: redis.Redis, chunks: bytes, count: int, size: int) -> bytearray | None:
    """Read chunks 0..count-1 of one generation into one buffer; None if any is missing."""
    data = bytearray(size)
    at = 0
    with memoryview(data) as view:
        for start in range(0, count, _READ_BATCH):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(count, start + _READ_BATCH)):
                pipe.hget(chunks, str(i))
            for piece in pipe.execute():
                if not isinstance(piece, bytes) or at + len(piece) > size:
                    return None
                view[at : at + len(piece)] = piece
                at += len(piece)
    return data if at == size else None


def _pieces(views: list[memoryview], size: int) -> Iterator[Any]:
    """The bytes of ``views`` in pieces of ``size`` (the last one shorter), copying only
    where a piece spans two views."""
    buf = bytearray()
    for view in views:
        while view.nbytes:
            if not buf and view.nbytes >= size:
                yield view[:size]
                view = view[size:]
                continue
            take = size - len(buf)
            buf += view[:take]
            view = view[take:]
            if len(buf) == size:
                yield bytes(buf)
                buf = bytearray()
    if buf:
        yield bytes(buf)


def _head(views: list[memoryview], limit: int) -> bytes:
    out = bytearray()
    for view in views:
        out += view[: limit - len(out)]
        if len(out) >= limit:
            break
    return bytes(out)


def _glob_escape(raw: bytes) -> bytes:
    """``raw`` as a literal in a SCAN MATCH pattern."""
    return re.sub(rb"([\\*?\[\]])", rb"\\\1", raw)


def _split_location(location: str) -> tuple[str, dict[str, str]]:
    """The URL for redis-py, and memojar's own options taken out of its query string."""
    base, _, query = location.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    options = {k: v for k, v in pairs if k in _OPTIONS}
    rest = urlencode([(k, v) for k, v in pairs if k not in _OPTIONS], safe="/:")
    return (f"{base}?{rest}" if rest else base), options


def _redact(location: str) -> str:
    """The location without its password, for messages and ``Cache.directory``."""
    base, _, query = location.partition("?")
    base = re.sub(r"^([a-z]+://[^:@/]*):[^@/]*@", r"\1:***@", base)
    pairs = [(k, "***" if k == "password" else v)
             for k, v in parse_qsl(query, keep_blank_values=True)]
    return f"{base}?{urlencode(pairs, safe='/:*')}" if pairs else base


def _positive(
    name: str, given: float | None, in_url: str | None, default: float, kind: type
) -> float:
    if given is None and in_url is None:
        return default
    try:
        value = kind(given if given is not None else in_url)
    except (TypeError, ValueError):
        value = -1
    if not value > 0:
        raise ValueError(
            f"{name} must be a positive {'whole ' if kind is int else ''}number, "
            f"got {given if given is not None else in_url!r}"
        )
    return value
