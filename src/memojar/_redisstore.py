"""Entries in a Redis server, for a cache shared between processes and machines.

Layout (``prefix`` defaults to ``memojar:``; ``<entry>`` is ``<prefix><function>:<key>``)::

    <entry>              the entry's bytes, or for entries over chunk_size a short pointer:
                         "MJCH 2 <gen> <chunks> <size> <signature>\\n" + the entry's header
    <entry>:c:<gen>      a hash of chunk number -> bytes, written once under a fresh <gen>
    <entry>:lock         the compute lock: a random token, PX 2 s, renewed while held
    <entry>:lock:ws      set: a member "<id>:<waiter>" per caller that waits for this
                         lock with the lock <id> behind it (held, or held by a caller that
                         waits for it; a lock-order cycle's check, ``_redislease``)
    <entry>:lock:w:<id>:<waiter>  that member's life: PX 2 s, renewed while it waits,
                         removed when the wait ends (a member without it is dropped)
    <prefix><function>:entries   set: the function's entry keys (what ``scan(function)`` reads)
    <prefix><function>:swept     the identity of the code that last swept old entries
    <prefix>lru          sorted set: entry key -> last read or write (epoch seconds)
    <prefix>sizes        hash: entry key -> size in bytes (what ``scan()`` reads)
    <prefix>total        the sum of the sizes
    <prefix>stats        hash: hits, misses and seconds saved per function (every process's)
    <prefix>merged:<id>  the nonce of a store's last merge into ``stats`` (PX MERGED_TTL), so
                         that a merge whose reply was lost is added once
    <prefix>deleted:<nonce>  what one call of deletes removed (PX DELETED_TTL), so that a
                         call whose reply was lost and which redis-py sends again says so

A chunked write puts its chunks under a new generation, then one Lua script switches the
pointer, drops the old generation and updates the index, so a reader that holds a pointer
reads chunks of exactly one write (a superseded generation is gone, not mixed: the reader
retries). The commit refuses a write whose chunk set is not whole: one removed while its
writer stalled (``cleanup`` reaps chunks silent for ``ORPHAN_AGE``, unless the entry's lock
is held) is made again by the writer's later chunks without its first ones. A pointer is
checked before anything is allocated for it: its size must fit its
chunk count, and with a secret its signature (HMAC-SHA256 over the entry key, generation,
count and size) must verify; the buffer then grows only with chunks actually read.

Every change to an entry and its index is one script, so the indexes and the total stay
consistent across clients; ``max_size`` evicts by the ``lru`` set, not by server
configuration. Removing a function's last entry removes its ``entries`` set and its sweep
note; removing the last entry of all removes ``total``: a cleared cache leaves no key.
Entries that Redis expires (``ttl`` and the stale window -> ``PX``) leave index members
behind until a listing, an eviction or ``cleanup`` drops them. The scripts name keys they
build, so the store needs a single server (or a replica set), not Redis Cluster.

A hit is one round trip (a GET; with ``max_size``, followed by a ZADD XX that stamps the
access, sent on a connection of its own whose replies nobody waits for, ``Stamps``: a
server paused for writes answers the hit at once) and takes no lock. A value computed
under a lock is stored only if the lock is still this caller's (checked by the commit
script): a stall of the server or of the process longer than the lock's lease lets
another caller compute the same key, and the late one's value is returned but not stored,
with a warning.

Every Redis error becomes an ``OSError`` (``ConnectionError``, ``TimeoutError``, ``ENOSPC``
for "OOM command not allowed"). After a connection fault or a timeout the store is down:
every call fails at once with that fault, and a background thread pings the server until it
answers again. So a call waits at most one ``socket_timeout`` for a stopped server in all,
however many round trips it makes (read, lock, write, release). After a timeout of a write
(which a server paused for writes gives while it answers reads) only writes fail at once:
hits still read, and the first read that times out too puts the server down whole. Writes
are up again when the server runs a script of the prober's (``lua.WRITE_PROBE``, which
touches no key), not when it answers a ping: a server paused for writes answers pings.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import hmac
import math
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import redis
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import _redislua as lua
from ._entry import Miss, header_length
from ._errors import UnknownOption, logger, raise_the_callers_within, unlink_map_frame
from ._redisconn import Stamps, connect, exhausted, sent
from ._redislease import LOCK_RENEW, LOCK_TTL, _RedisKeyLock
from ._redisurl import oserror, positive, redact, split_location
from ._store import (
    CONFIRM_SHARE,
    HEAD_BYTES,
    LEFTOVER_RETRY,
    Breaker,
    KeyLock,
    Renewer,
    Store,
    StoredEntry,
    lease_lost,
    pieces,
)

DEFAULT_PREFIX = "memojar:"
NOTE = "swept"  # <prefix><function>:swept, the code that last swept (see Store.read_note)
DEFAULT_SOCKET_TIMEOUT = 5.0  # seconds: no call waits longer than this for the server
DEFAULT_CHUNK_SIZE = 1 << 20  # entries above this are split into chunks of this size
INFLIGHT_TTL = 3600.0  # chunks not (yet) committed expire after this many seconds
ORPHAN_AGE = 600.0  # ``cleanup`` removes uncommitted chunks silent this long (lock not held)
PROBE_EVERY = 0.25  # seconds between pings of a server that is down
MAX_CHUNK = 512 << 20  # Redis's largest string: no chunk of a valid pointer is longer
_READ_BATCH = 8  # chunks fetched per round trip
_POINTER_ROOM = 128  # bytes: more than a chunk pointer's line (``_write_chunks``)
_ANY_AGE = int(INFLIGHT_TTL * 1000) + 1  # REAP's threshold (ms) that takes chunks of any age
_SCAN_COUNT = 1000  # keys SCAN looks at per call (and entries one DELETE script removes)
MERGED_TTL = 3600.0  # seconds a store's merge marker outlives its last merge of statistics
DELETED_TTL = 60.0  # seconds a delete's marker keeps its answer (for redis-py's one retry)
_POINTER = re.compile(
    rb"MJCH 2 ([0-9a-f]{16}) ([0-9]{1,9}) (?P<size>[0-9]{1,15}) ([0-9a-f]{32}|-)\n")
# an older memojar's pointer (formats 1 to 3): listed (its size, the entry's first bytes
# after it) so that prune and clear remove it with its chunks, never read
_OLD_POINTER = re.compile(rb"MJCH 1 [0-9a-f]{16} [0-9]{1,9} (?P<size>[0-9]{1,15})\n")
_POINTER_KEY = b"memojar redis chunk pointer\0"  # the pointer signature's own HMAC key prefix
_HEX32 = b"[0-9a-f]" * 32
_HEX16 = b"[0-9a-f]" * 16

class RedisStore(Store):
    """Entries in Redis. See the module docstring for the layout and its guarantees.

    ``location``: ``redis://[:PASSWORD@]HOST[:PORT][/DB]``, ``rediss://...`` (TLS) or
    ``unix:///path/to/socket?db=N``, with optional query options ``prefix``, ``password``,
    ``socket_timeout`` (seconds) and ``chunk_size`` (bytes); keyword arguments override
    them. ``secret`` signs chunk pointers (entries are signed above the store).
    """

    remote = True  # every call is a network round trip: async callers run it in a thread
    native_expiry = True  # ttl -> PX
    eviction = "index"  # the lru/sizes/total index, changed atomically by the Lua scripts
    reads_back = True  # a commit whose reply was lost or late is read back (``_holds``)
    kind, shared_with = "Redis", "the server"
    leftover = "partial value"  # the chunks of a writer that died before committing them

    def __init__(
        self,
        location: str,
        max_size: int | None = None,
        signed: bool = False,
        *,
        secret: bytes | None = None,
        prefix: str | None = None,
        password: str | None = None,
        socket_timeout: float | None = None,
        chunk_size: int | None = None,
    ) -> None:
        url, options = split_location(location)
        self.prefix = prefix if prefix is not None else options.get("prefix", DEFAULT_PREFIX)
        if not self.prefix:
            # Before, taken: the index keys were then 'lru', 'sizes', 'total' and 'stats',
            # names any application may use: its 'total' counted memojar's bytes (and prune
            # overwrote it), and clear removed the keys its 'sizes' hash named like entries.
            raise ValueError("prefix must not be empty: every key memojar writes, its "
                             "index's too ('<prefix>sizes', '<prefix>total'), begins with "
                             f"it (the default is {DEFAULT_PREFIX!r})")
        self.socket_timeout = positive(
            "socket_timeout", socket_timeout, options.get("socket_timeout"),
            DEFAULT_SOCKET_TIMEOUT, float,
        )
        self.chunk_size = int(positive(
            "chunk_size", chunk_size, options.get("chunk_size"), DEFAULT_CHUNK_SIZE, int
        ))
        if self.chunk_size > MAX_CHUNK:
            # Before, taken: every result above 512 MiB failed ("cannot reach the server":
            # Redis drops the connection of a longer string), and on a server that keeps
            # longer strings its chunks made a pointer no reader accepts: a miss each time.
            raise ValueError(f"chunk_size must be at most {MAX_CHUNK:,} bytes (Redis's "
                             f"largest string), got {self.chunk_size:,}")
        password = password if password is not None else options.get("password")
        self.location = redact(location)
        self.max_size = max_size
        self.signed = signed or secret is not None
        self._pointer_key = _POINTER_KEY + secret if secret is not None else None
        kwargs: dict[str, Any] = {}
        if password is not None:
            kwargs["password"] = password
        # for the client of the look at an entry whose write timed out (``_holds``)
        self._url, self._kwargs = url, kwargs
        self._checker_client: redis.Redis | None = None
        try:
            self._client = connect(url, self.socket_timeout, **kwargs)
        except UnknownOption as exc:  # (its kind kept: the command line's bad usage)
            raise UnknownOption(f"cache location {self.location!r} is not a valid Redis "
                                f"URL: {exc}", exc.option) from exc
        except ValueError as exc:
            raise ValueError(f"cache location {self.location!r} is not a valid Redis URL: "
                             f"{exc}") from exc
        pre = self.prefix.encode()
        self._pre = pre
        self._index = [pre + b"lru", pre + b"sizes", pre + b"total"]
        register = self._client.register_script
        self._commit = register(lua.COMMIT)
        self._delete = register(lua.DELETE)
        self._discard = register(lua.DISCARD)
        self._evict_script = register(lua.EVICT)
        self._forget = register(lua.FORGET)
        self._recount = register(lua.RECOUNT)
        self._reindex = register(lua.REINDEX)
        self._reap = register(lua.REAP)
        self._first_chunk = register(lua.FIRST_CHUNK)
        self._acquire = register(lua.ACQUIRE)
        self._release = register(lua.RELEASE)
        self._renew = register(lua.RENEW)
        self._note_wait = register(lua.NOTE_WAIT)
        self._renew_wait = register(lua.RENEW_WAIT)
        self._waiters = register(lua.WAITERS)
        self._note = register(lua.NOTE)
        self._merge = register(lua.MERGE)
        # a hit's access stamp, ZADD <lru> XX <score> <entry>: its first three arguments
        self._stamp_head = b"*5\r\n$4\r\nZADD\r\n$%d\r\n%s\r\n$2\r\nXX\r\n" % (
            len(self._index[0]), self._index[0])
        self._stamps = Stamps(self._client.connection_pool, PROBE_EVERY)
        self._closed = threading.Event()  # (``close``: connections used after it not kept)
        # releases the renewer finished after ``close``: their connection closed
        self._renewer = Renewer(LOCK_RENEW, "memojar-redis-locks", functools.partial(
            _close_idle_if, self._closed, self._client.connection_pool))
        # The probe of a server whose writes time out: a script (as every write of
        # memojar's is) that touches no key, on a client of its own, so that the prober,
        # held for socket_timeout at a time by a server paused for writes, takes none of
        # the connections (``max_connections``) the calls' hits read on
        self._probe_client = connect(url, self.socket_timeout, **kwargs)
        self._breaker = Breaker(
            self.location, PROBE_EVERY, functools.partial(_ping, self._client),
            "memojar-redis-probe", functools.partial(
                _write_probe, self._probe_client.register_script(lua.WRITE_PROBE),
                self._probe_client.connection_pool, self._closed))
        address = self._client.connection_pool.connection_kwargs
        self.server = (address.get("host"), address.get("port"), address.get("path"))
        self._pid = os.getpid()
        self._mutex = threading.RLock()  # guards _leases (reentrant: a signal handler's call)
        self._leases: dict[bytes, _RedisKeyLock] = {}  # entry key -> this process's lock on it
        self._names: dict[str, bytes] = {}  # function name -> b"<prefix><function>:"
        # function (None: all) -> the server's run_id and evicted_keys when its entries were
        # last put back into the index (``_complete_index``)
        self._reindexed: dict[str | None, str] = {}
        # the marker of a merge without a writer's (``merge_stats``): a dropped cache's
        self._merge_id = secrets.token_hex(8)

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r})"

    def unsigned_place(self) -> Any:
        """The server URL (without memojar's options), database and prefix."""
        return self._url, self.prefix

    def _name(self, function: str, key: str) -> bytes:
        base = self._names.get(function)
        if base is None:
            base = self._names[function] = self._pre + function.encode() + b":"
        return base + key.encode()

    # --- the hit path -------------------------------------------------------------------

    def _read(self, function: str, key: str) -> Any | None:
        name = self._name(function, key)
        stamped = self.max_size is not None  # (no eviction: no access order to keep)
        # The stamp pipelined with the GET (``Stamps`` not supported: a user the ACL refuses
        # CLIENT) is a write: its timeout puts writes down only, and while they are down
        # (``_breaker.down`` past ``check(read=True)``) the GET goes alone, the stamp
        # dropped. Before, a server paused for writes held the pipeline: down whole, up
        # again at the next ping, and every hit of the pause waited socket_timeout.
        piped = stamped and not self._stamps.supported and not self._breaker.down
        with self._errors("reading", read=not piped):
            if piped:
                pipe = self._client.pipeline(transaction=False)
                pipe.get(name)
                pipe.zadd(self._index[0], {name: time.time()}, xx=True)
                # an access stamp refused (out of memory) must not cost the hit
                value = pipe.execute(raise_on_error=False)[0]
            else:
                value = cast("bytes | None", self._client.get(name))
                if value is not None and stamped and self._stamps.supported:
                    # sent after the GET on a connection of its own, not waited for
                    # (``Stamps``): a server paused for writes answers the GET. ZADD XX
                    # stamps only an indexed entry; the score as redis-py sends a float
                    score = b"%r" % time.time()
                    self._stamps.send(b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                        self._stamp_head, len(score), score, len(name), name))
            if value is None or isinstance(value, Exception):
                return None
            if value[:5] == b"MJCH ":
                return self._read_chunks(name, value)
            return value

    def _read_chunks(self, name: bytes, pointer: bytes) -> bytes | bytearray | None:
        """Assemble a chunked entry; chunks are all of the generation the pointer names.

        A writer that replaces the entry meanwhile removes that generation: some chunk is
        then missing, and the reader follows the new pointer (a few times at most).
        """
        for _ in range(3):
            parsed = self._pointer(name, pointer)
            if parsed is None:
                logger.debug("%r: not a valid chunk pointer", name)
                return None
            gen, count, size = parsed
            chunks = name + b":c:" + gen
            data = _assemble(self._client, chunks, count, size)
            if data is not None:
                return data
            again = cast("bytes | None", self._client.get(name))
            if again is None or again == pointer:
                # the same pointer: its chunk is gone for good (evicted by the server's
                # maxmemory-policy, removed by hand), not replaced. Before, read twice more
                # in full (three times an entry's size, sent for a miss).
                return None
            if again[:5] != b"MJCH ":
                return again
            pointer = again
        return None

    def _pointer(self, name: bytes, pointer: bytes) -> tuple[bytes, int, int] | None:
        """A pointer's generation, chunk count and size, if its size fits its count and
        (with a secret) its signature verifies; else None. Nothing is allocated before."""
        match = _POINTER.match(pointer)
        if match is None:
            return None
        gen, count, size = match[1], int(match[2]), int(match[3])
        if not (count >= 1 and count <= size <= count * MAX_CHUNK):
            return None
        if self._pointer_key is not None and not hmac.compare_digest(
            self._sign(name, gen, count, size), match[4]
        ):
            return None
        return gen, count, size

    def _sign(self, name: bytes, gen: bytes, count: int, size: int) -> bytes:
        if self._pointer_key is None:
            return b"-"
        message = b"%s\0%s\0%d\0%d" % (name, gen, count, size)
        return hmac.new(self._pointer_key, message, hashlib.sha256).hexdigest()[:32].encode()

    # --- writing ----------------------------------------------------------------------

    def _write(
        self, function: str, key: str, views: list[memoryview], size: int,
        expires: float | None,
    ) -> None:
        name = self._name(function, key)
        px = 0
        if expires is not None:  # relative, so the hosts' clocks need not agree with Redis
            px = max(int((expires - time.time()) * 1000), 1)
        lease = self._leases.get(name)  # written under this process's lock: only if still ours
        # Chunks are named before any is written, so that whatever ends this early (a fault,
        # an interrupt at any point) drops them, unless the entry points to them already.
        chunks = b""
        if size > self.chunk_size:
            chunks = name + b":c:" + secrets.token_hex(8).encode()
        drop = functools.partial(self._drop_chunks, name, chunks)
        committing = False
        try:
            with self._errors("writing an entry"):  # no key named: see ``oserror``
                count = 0
                if not chunks:
                    value: Any = b"".join(views)
                else:
                    value, count = self._write_chunks(name, chunks, views, size)
                committing = True
                evicted = self._commit(
                    keys=[*self._index, name, lease.name if lease else name + b":lock"],
                    args=[value, px, chunks, size, time.time(), self.max_size or 0,
                          lease.token if lease else b"", count,
                          lease.seen if lease else b""],
                )
        except BaseException as exc:
            if chunks:  # after ``_errors`` marked a lost server down: not asked again
                try:
                    self._renewer.attempt(drop, LEFTOVER_RETRY)
                except BaseException:  # a second interrupt: the renewer's thread does it
                    self._renewer.finish(drop, LEFTOVER_RETRY)
                    raise
            if (committing and type(exc) is ConnectionError and exc.errno is not None
                    and sent(exc.__cause__)):
                # The commit was sent and its connection dropped, twice (redis-py's one
                # retry), or dropped and then refused: the server may have run it, so it
                # is read back (``Store.write``). Before, "not cached", though stored.
                raise ConnectionResetError(errno.ECONNRESET, exc.strerror) from exc
            raise
        if evicted < 0:
            if chunks:
                self._renewer.attempt(drop, LEFTOVER_RETRY)
            if evicted == -2:  # gone, and the entry changed since: perhaps no stall at all
                # Before, a lock the server evicted (a volatile-* maxmemory-policy takes the
                # keys nearest their expiry first: the 2 s leases) blamed a stall that never
                # was, on nearly every write of a server near its maxmemory.
                raise OSError(
                    errno.ENOLCK,
                    "this caller's lock on the key expired while it computed (the server or "
                    f"this process stalled for longer than the lock's {LOCK_TTL:g} s lease), "
                    "or the server removed it (evicted by a volatile-* maxmemory-policy, "
                    "which takes the keys nearest their expiry first; FLUSHALL; a restart "
                    "without persistence), and another caller stored or removed the entry "
                    "meanwhile: this value is returned, not stored over theirs",
                )
            raise lease_lost(LOCK_TTL)

    def _write_chunks(self, name: bytes, chunks: bytes, views: list[memoryview],
                      size: int) -> tuple[bytes, int]:
        """Write the chunks under the fresh generation ``chunks``; return the pointer and
        the number of chunks. Each batch renews their in-flight expiry: their age is the
        writer's silence, not the length of its upload."""
        gen = chunks[-16:]
        count = 0
        inflight = int(INFLIGHT_TTL * 1000)
        pipe = self._client.pipeline(transaction=False)
        for piece in pieces(views, self.chunk_size):
            if count == 0:  # the first chunk and its expiry, at once (``FIRST_CHUNK``)
                self._first_chunk(keys=[chunks], args=[piece, inflight])
                count += 1
                continue
            pipe.hset(chunks, str(count), piece)
            if count % _READ_BATCH == 0:
                pipe.pexpire(chunks, inflight)
                pipe.execute()
            count += 1
        pipe.execute()
        head = _first(views, HEAD_BYTES)
        try:  # the whole header, however long, so that ``scan`` finds it here
            head = _first(views, max(HEAD_BYTES, header_length(head)))
        except Miss:
            pass  # not an entry (a store-level test's bytes): the first bytes will do
        pointer = b"MJCH 2 %s %d %d %s\n" % (gen, count, size, self._sign(name, gen, count, size))
        return pointer + head, count

    def _holds(self, function: str, key: str, head: bytes, timed_out: bool) -> bool:
        """Whether the entry begins with ``head``: its first bytes, or those after its
        chunk pointer (a chunked entry keeps its whole header there). Asked although the
        store fails fast after the fault (``Store._confirm`` says why); after a timeout
        through a client that waits ``CONFIRM_SHARE`` of ``socket_timeout``."""
        name = self._name(function, key)
        client = self._checker() if timed_out else self._client
        try:
            with self._errors("reading the entry back", again=True, read=True):
                if not head:
                    return self._read_back(bool(client.exists(name)))
                value = cast("bytes", client.getrange(name, 0,
                                                      len(head) + _POINTER_ROOM - 1))
        except TimeoutError as exc:
            if not timed_out or exc.errno is None:  # (None: the caller's signal handler's)
                raise
            raise TimeoutError(exc.errno, "no answer within "
                               f"{self.socket_timeout * CONFIRM_SHARE:g} s either") from exc
        if value[:5] == b"MJCH ":
            value = value.partition(b"\n")[2]
        return self._read_back(value.startswith(head))

    def _read_back(self, held: bool) -> bool:
        """``held``, the answer of ``_holds``: a write that timed out found stored says the
        server runs writes (its reply was lost, not held: writes up again); one not found
        leaves writes down (a server paused for writes holds it: the write probe tells when
        it runs them)."""
        if held:
            self._breaker.answered()
        return held

    def _checker(self) -> redis.Redis:
        """The client of ``_holds`` after a timeout, made at first use."""
        checker = self._checker_client
        if checker is None:
            # (the URL's options checked against the store's socket_timeout, as when the
            # store was made: a socket_connect_timeout it took is cut to the share, where
            # before this client refused it, a ValueError out of the call)
            checker = self._checker_client = connect(
                self._url, self.socket_timeout, share=CONFIRM_SHARE, **self._kwargs)
        return checker

    def _drop_chunks(self, name: bytes, chunks: bytes) -> bool:
        """Remove the chunks of a write that did not complete, unless the entry ``name``
        points to them (the commit ran, and its reply was lost to an interrupt or a
        dropped connection). False if it is to be tried again: at the renewer's rounds for
        LEFTOVER_RETRY (``write``)."""
        if self._breaker.down:  # not waiting again for a server that is down: tried again
            # (a connection dropped a moment ago); the chunks expire anyway (INFLIGHT_TTL)
            return False
        try:
            self._reap(keys=[*self._index, name, chunks], args=[_ANY_AGE, "mine"])
        except RedisError as exc:  # uncommitted chunks expire anyway (INFLIGHT_TTL)
            logger.debug("cannot remove %r: %s", chunks, exc)
        return True

    def delete(self, function: str, key: str) -> bool:
        return any(self._delete_names([self._name(function, key)]))

    def discard(self, function: str, key: str, judged: Any) -> bool:
        """Delete the entry if it is still the one read as ``judged`` (its first bytes, the
        header, say so: one script compares and deletes), not a fresh one written since."""
        head = bytes(memoryview(judged).cast("B")[:HEAD_BYTES])
        with self._errors("deleting an entry"):
            return bool(self._discard(keys=[*self._index, self._name(function, key)],
                                      args=[head]))

    def _delete_names(self, names: Sequence[bytes]) -> list[bool]:
        """Delete entries with their index; for each name, whether it was there (also when
        the reply was lost and the script sent again: see ``lua.DELETE``)."""
        removed: list[bool] = []
        markers: list[bytes] = []
        with self._errors("deleting entries"):
            for start in range(0, len(names), _SCAN_COUNT):
                markers.append(self._pre + b"deleted:" + secrets.token_hex(8).encode())
                batch = names[start : start + _SCAN_COUNT]
                answer = cast("bytes", self._delete(keys=[*self._index, markers[-1], *batch],
                                                    args=[int(DELETED_TTL * 1000)]))
                removed += [c == ord("1") for c in answer]
        if markers:  # a round trip more, so that a cleared cache leaves no key
            try:
                with self._errors("removing the markers of deletes"):
                    self._client.unlink(*markers)
            except OSError as exc:  # they expire by themselves
                logger.debug("cannot remove %r now: %s", markers, exc)
        return removed

    def read_note(self, function: str) -> bytes | None:
        # ``<entry prefix>swept``: not 32 hex digits, so no listing takes it for an entry
        with self._errors("reading a note"):
            return cast("bytes | None", self._client.get(self._name(function, NOTE)))

    def write_note(self, function: str, note: bytes) -> None:
        with self._errors("writing a note"):
            self._note(keys=[self._name(function, "entries"), self._name(function, NOTE)],
                       args=[note])

    def lock(self, function: str, key: str) -> KeyLock:
        return _RedisKeyLock(self, self._name(function, key) + b":lock")

    # --- saved statistics: one hash, ``<prefix>stats``, fields ``<function>\0hits`` (and
    # ``misses``, ``saved``), added to by every process with one script (``lua.MERGE``) ------

    def read_stats(self) -> dict[str, Any]:
        with self._errors("reading statistics"):
            raw = cast("dict[bytes, bytes]", self._client.hgetall(self._pre + b"stats"))
        functions: dict[str, list[Any]] = {}
        for field, value in raw.items():
            name, _, what = field.decode("utf-8", "replace").rpartition("\0")
            slot = {"hits": 0, "misses": 1, "saved": 2}.get(what)
            if slot is not None:
                try:  # a value set by hand reads as none (before: ls failed on it)
                    number = float(value) if slot == 2 else int(value)
                except ValueError:
                    continue
                if 0 <= number < math.inf:
                    functions.setdefault(name, [0, 0, 0.0])[slot] = number
        return {"functions": functions}

    def merge_stats(self, functions: dict[str, tuple[int, int, float]],
                    recount: dict[str, tuple[int, int]] | None = None,
                    merge: tuple[str, str] | None = None) -> None:
        """Add the counts, each once: a merge sent again by redis-py's retry after its reply
        was lost is not added again (``lua.MERGE``). ``merge`` (writer, id): the script sets
        the writer's marker to the id with the counts, so ``merged`` tells whether a merge
        that raised (every reply lost, a timeout, an interrupt) ran. Without one (a dropped
        cache's last counts), this store's marker and a new nonce."""
        if not functions:
            return
        if merge is None:
            merge = (self._merge_id, secrets.token_hex(8))
        writer, merge_id = merge
        args: list[Any] = [merge_id.encode(), int(MERGED_TTL * 1000)]
        for name, (hits, misses, saved) in functions.items():
            field = name.encode() + b"\0"
            for what, amount in ((b"hits", hits), (b"misses", misses), (b"saved", saved)):
                if amount:
                    args += [field + what, repr(amount)]
        if len(args) > 2:
            try:
                with self._errors("saving statistics"):
                    self._merge(keys=[self._pre + b"stats", self._marker(writer)],
                                args=args)
            finally:
                # the statistics thread merges a closed cache's counts of the calls before
                # ``close``: before, that merge's connection stayed open, idle, for as long
                # as the closed cache was referenced
                _close_idle_if(self._closed, self._client.connection_pool)

    def merged(self, writer: str, merge_id: str) -> bool:
        try:
            with self._errors("reading statistics"):
                return bool(self._client.get(self._marker(writer)) == merge_id.encode())
        finally:  # (the statistics thread's too: ``merge_stats``)
            _close_idle_if(self._closed, self._client.connection_pool)

    def _marker(self, writer: str) -> bytes:
        return self._pre + b"merged:" + writer.encode()

    # --- listing and housekeeping ------------------------------------------------------

    def _list(self, function: str | None, heads: bool) -> Iterator[StoredEntry]:
        """The entries of the index: one function's ``entries`` set, or all of ``sizes``;
        never the whole keyspace. Members whose entry Redis expired are dropped on the way.
        Each entry's first bytes come in the same round trip as its size."""
        span = HEAD_BYTES + 96 if heads else 95  # 96 bytes cover a pointer's first line
        seen: set[bytes] = set()
        with self._errors("listing entries"):
            self._complete_index(function)
            for batch in self._index_members(function):
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
                gone = []
                for i, name in enumerate(names):
                    head, length, score = results[3 * i : 3 * i + 3]
                    if length == 0:
                        gone.append(name)
                    entry = self._stored(name, head, length, score, heads=heads)
                    if entry is not None:
                        yield entry
                if gone:
                    pipe = self._client.pipeline(transaction=False)
                    for name in gone:
                        self._forget(keys=[*self._index, name], client=pipe)
                    pipe.execute()

    def _complete_index(self, function: str | None) -> None:
        """Put back into the index the entries (of one function) a server evicting with an
        ``allkeys-*`` maxmemory-policy left out of it, if it evicted any key since this
        store last did so: the keyspace is scanned for the entries' names (``REINDEX``).
        Else (no eviction since, another policy, or INFO refused) nothing more than the
        INFO, in the listing's first round trip. Before, only ``cleanup`` (prune) did it:
        ``clear`` (and every listing) missed the entries the evicted index had listed, and
        they were read by later calls as if never cleared."""
        pipe = self._client.pipeline(transaction=False)
        for section in ("server", "memory", "stats"):
            pipe.info(section)
        try:
            server, memory, stats = pipe.execute()
        except ResponseError as exc:  # INFO refused (an ACL, rename-command): not known
            logger.debug("%s: cannot read INFO: %s", self.location, exc)
            return
        if not str(memory.get("maxmemory_policy", "")).startswith("allkeys"):
            return
        since = f"{server.get('run_id')}:{stats.get('evicted_keys')}"
        if since in (self._reindexed.get(None), self._reindexed.get(function)):
            return
        which = b"*" if function is None else _glob_escape(function.encode())
        self._reindex_keys(_glob_escape(self._pre) + which + b":" + _HEX32)
        self._reindexed[function] = since  # as read before the scan: one during it counts

    def _reindex_keys(self, pattern: bytes) -> None:
        """Put the entries named by ``pattern`` found in the keyspace but not in the index
        back into it (``REINDEX``); the total is recounted if any was."""
        reindexed = 0
        for batch in self._scan_keys(pattern):
            if batch:
                pipe = self._client.pipeline(transaction=False)
                for entry in batch:
                    self._reindex(keys=[*self._index, entry], args=[time.time(), self._pre],
                                  client=pipe)
                reindexed += sum(pipe.execute())
        if reindexed:
            logger.info("%s: %d entries were missing from the index (evicted by the "
                        "server's maxmemory-policy?)", self.location, reindexed)
            self._recount(keys=self._index)

    def _index_members(self, function: str | None) -> Iterator[list[bytes]]:
        cursor = 0
        while True:
            if function is None:
                cursor, found = self._client.hscan(self._index[1], cursor, count=_SCAN_COUNT)
            else:
                cursor, found = self._client.sscan(self._name(function, "entries"), cursor,
                                                   count=_SCAN_COUNT)
            yield cast("list[bytes]", list(found))  # replies are bytes: no decode_responses
            if cursor == 0:
                return

    def _scan_keys(self, pattern: bytes) -> Iterator[list[bytes]]:
        cursor = 0
        while True:
            cursor, names = self._client.scan(cursor, match=pattern, count=_SCAN_COUNT)
            yield cast("list[bytes]", names)
            if cursor == 0:
                return

    def _stored(
        self, name: bytes, head: Any, length: Any, score: Any, heads: bool
    ) -> StoredEntry | None:
        if not isinstance(head, bytes) or not head or not isinstance(length, int):
            return None  # removed since listed, or not a string: not an entry
        size = length
        match = _POINTER.match(head) or _OLD_POINTER.match(head)
        if match is not None:
            size = int(match["size"])
            head = head[match.end() :]
        try:
            function = name[len(self._pre) : -33].decode()
            key = name[-32:].decode("ascii")
        except UnicodeDecodeError:
            return None
        accessed = float(score) if isinstance(score, (int, float)) else 0.0
        return StoredEntry(
            function, key, size, accessed, head if heads else b"",
            f"{self.location}#{name.decode(errors='replace')}",
        )

    def _read_range(self, entry: StoredEntry, start: int, end: int) -> bytes | None:
        """Bytes of the entry, or of the header a chunk pointer holds (its whole header)."""
        name = self._name(entry.function_dir, entry.key)
        with self._errors("reading a header"):
            first = cast("bytes", self._client.getrange(name, 0, 4))
            if first != b"MJCH ":
                return cast("bytes", self._client.getrange(name, start, end - 1)) or None
            match = _POINTER.match(cast("bytes | None", self._client.get(name)) or b"")
            return match.string[match.end() :][start:end] if match else None

    def _unlink(self, entries: Sequence[StoredEntry]) -> list[StoredEntry]:
        done = self._delete_names([self._name(e.function_dir, e.key) for e in entries])
        return [entry for entry, removed in zip(entries, done, strict=True) if removed]

    def cleanup(self) -> int:
        """Remove orphaned chunks (of writers that died), index entries the index lost (a
        server evicting with an allkeys-* policy evicts the index's keys too), forget
        entries Redis expired and chunk pointers whose chunks are gone, recount the
        total. Returns the number of orphaned chunk sets removed."""
        removed = 0
        pattern = _glob_escape(self._pre) + b"*:" + _HEX32 + b":c:" + _HEX16
        threshold = int((INFLIGHT_TTL - ORPHAN_AGE) * 1000)
        with self._errors("cleaning up"):
            self._reindex_keys(_glob_escape(self._pre) + b"*:" + _HEX32)
            for batch in self._scan_keys(pattern):
                if not batch:
                    continue
                pipe = self._client.pipeline(transaction=False)
                for chunks in batch:
                    entry = chunks[:-19]
                    self._reap(keys=[*self._index, entry, chunks, entry + b":lock"],
                               args=[threshold], client=pipe)
                removed += sum(pipe.execute())
            # Entries Redis expired, as the index and its ``expiring`` list name them (an
            # older memojar's removals left the latter's members behind)
            for index in (self._index[0], self._pre + b"expiring"):
                cursor = 0
                while True:
                    cursor, members = self._client.zscan(index, cursor, count=_SCAN_COUNT)
                    if members:
                        pipe = self._client.pipeline(transaction=False)
                        for member, _ in cast("list[tuple[bytes, float]]", members):
                            self._forget(keys=[*self._index, member], client=pipe)
                        pipe.execute()
                    if cursor == 0:
                        break
            self._recount(keys=self._index)
        return removed

    def _evict(self, incoming: int) -> int:
        removed = 0
        with self._errors("evicting entries"):
            while True:
                # evict() calls this only with a max_size
                n: int = self._evict_script(keys=self._index,
                                            args=[cast("int", self.max_size), incoming,
                                                  time.time()])
                removed += n
                if n == 0:  # done: under max_size, or nothing left to evict
                    return removed

    @property
    def failing(self) -> bool:
        return self._breaker.down

    @property
    def silent(self) -> bool:
        return self._breaker.silent

    def close(self) -> None:
        # first: a probe under way, and the releases ``stop`` has the renewer finish, close
        # their connections as they end
        self._closed.set()
        self._breaker.close()
        self._renewer.stop()
        self._stamps.close()
        self._probe_client.connection_pool.disconnect(inuse_connections=False)
        # Idle connections only: one lent out is in use by a call of another thread (or
        # the renewer's), which closing it under them failed with redis-py's ValueError or
        # AttributeError, raised to the caller instead of its result. A later call
        # connects again.
        self._client.connection_pool.disconnect(inuse_connections=False)
        if self._checker_client is not None:
            self._checker_client.connection_pool.disconnect(inuse_connections=False)

    # --- faults -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, doing: str, again: bool = False, read: bool = False) -> Iterator[None]:
        """The one place Redis errors become ``OSError`` (``_redisurl.oserror``): fails at
        once while the server is down (``Breaker``), and marks a lost or silent server
        down until it answers a ping again (for writes only: until it runs a write,
        ``lua.WRITE_PROBE``). ``again``: the one request that learns what a
        write that timed out did (``_holds``), made although the server is down; answered,
        the server is up again. ``read``: a request that only reads (a hit's, ``_holds``),
        which a server paused for writes still answers (``CLIENT PAUSE WRITE``, as
        ``FAILOVER`` pauses it): only a read's timeout (or a connection fault) makes reads
        skip the server, not a write's. Before, a write timing out in such a pause (a
        miss's lock, the statistics thread's merge every 5 s) made every hit skip the
        server and compute its value again until a ping answered, and the lock of one of
        those computations then timed out in turn: hits computed again for as long as the
        pause lasted."""
        if not again:
            self._breaker.check(read)
        handled = sys.exc_info()[1]  # the caller's, if any (``callers_within``)
        try:
            yield
        except RedisError as exc:
            unlink_map_frame(exc)
            raise_the_callers_within(exc, handled)  # a signal handler's, in a socket call
            if (isinstance(exc, (RedisConnectionError, RedisTimeoutError))
                    and not exhausted(exc)):  # (this process's connections all in use)
                down = self._oserror(exc, "")
                # Writes only after a timeout of anything but a read: the server may be
                # paused for writes; a frozen one times out the next read too (one wait
                # more in all, never more than one a call)
                writes = isinstance(exc, RedisTimeoutError) and not read
                # A ConnectionError, also after a timeout: a call skipped while the server
                # is down sent nothing, so it did not time out (``Store.write`` reads back
                # a write that timed out, and must not for one never sent)
                self._breaker.trip(ConnectionError(
                    down.errno, f"{down.strerror}; " + (
                        "writes skip the server until it runs one" if writes else
                        "calls skip the server until it answers a ping")
                    + f" (tried every {PROBE_EVERY:g} s)",
                ), writes)
            # Raised without a name here: this frame (which holds the store) is in the
            # error's traceback, and a local naming the error would make a cycle that
            # keeps the store, its client and its prober until the cycle collector runs.
            raise self._oserror(exc, doing) from exc
        if again:
            self._breaker.answered(read)

    def _forked(self) -> None:
        """In a forked child, the parent's locks are not this process's."""
        if self._pid != os.getpid():
            self._pid, self._mutex, self._leases = os.getpid(), threading.RLock(), {}

    def _oserror(self, exc: RedisError, doing: str) -> OSError:
        return oserror(exc, doing, self.socket_timeout, self.prefix,
                       self._client.connection_pool.max_connections)


# --- helpers ---------------------------------------------------------------------------

def _assemble(client: redis.Redis, chunks: bytes, count: int, size: int) -> bytearray | None:
    """Read chunks 0..count-1 of one generation into one buffer; None if any is missing.

    The buffer grows with the chunks read, never ahead of them: a pointer that promises
    more than the server holds costs what the server holds, not what the pointer says."""
    data = bytearray()
    for start in range(0, count, _READ_BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(count, start + _READ_BATCH)):
            pipe.hget(chunks, str(i))
        for piece in pipe.execute():
            if not isinstance(piece, bytes) or len(data) + len(piece) > size:
                return None
            data += piece
    return data if len(data) == size else None



def _ping(client: redis.Redis) -> None:
    """The probe of a server that is down: any reply is an answer, also a refusal of PING
    itself (an ACL user without ``@connection``, ``rename-command PING ""``). Before, such a
    refusal kept the store down for the process's life: after one timeout, every call
    computed and stored nothing. A refused login is redis-py's ``ConnectionError``, not a
    ``ResponseError``: still down."""
    try:
        client.ping()
    except ResponseError:
        pass


def _write_probe(script: Script, pool: redis.ConnectionPool, closed: threading.Event
                 ) -> None:
    """The probe of a server down for writes only (``lua.WRITE_PROBE``): answered once the
    server runs a write. A refusal is an answer too, as ``_ping``'s: a user the ACL refuses
    scripts (every write of memojar's is one) has writes taken as up again at once, as with
    the ping before, never down for good. Ended after its store was ``closed``, its
    connection is closed: before, one that waited on a server paused for writes as the
    store closed stayed open for as long as the store was referenced."""
    try:
        script()
    except ResponseError:
        pass
    finally:
        _close_idle_if(closed, pool)


def _close_idle_if(closed: threading.Event, pool: redis.ConnectionPool) -> None:
    """After a request of the store's own threads (its prober's, its renewer's, the
    statistics thread's merge): if the store was closed meanwhile, the connection it used,
    given back, is closed (``close`` closed those idle then). Before, one stayed open,
    idle, for as long as the closed store was referenced (a release the renewer finished
    once a paused server ran it)."""
    if closed.is_set():
        pool.disconnect(inuse_connections=False)


def _first(views: list[memoryview], limit: int) -> bytes:
    return bytes(next(pieces(views, limit), b""))


def _glob_escape(raw: bytes) -> bytes:
    """``raw`` as a literal in a SCAN MATCH pattern."""
    return re.sub(rb"([\\*?\[\]])", rb"\\\1", raw)
