"""The store: where entries live, as opaque bytes, and the policy every backend shares.

A store reads, writes, locks, lists and deletes entries addressed by (function, key). It
never looks inside an entry beyond its header (``_entry`` parses it) and never imports the
decorator. ``Store`` owns the policy once, as filelock's ``BaseFileLock`` owns the acquire
loop and cachetools' ``Cache`` owns the one eviction loop:

- the hit's trust check (the warn-once warning of a cache without a secret) and turning a
  failed read into a miss, logged (``read``);
- refusing entries larger than ``max_size`` (``write``), and reading back a write whose
  answer a dropped connection lost or that timed out (``_confirm``: stored, it succeeded);
- listing with whole headers (``scan``: the backend's listing, its first bytes read on with
  ``complete_head``);
- the least-recently-used decision and size accounting (``evict``): by the ledger
  (``_ledger``, for backends with a shared total), by listings alone for one without
  (``evict_listed``: the ledger's eviction counting a listing, the ``EVICT_BATCH`` oldest
  held at a time), or by a backend's own atomic index;
- logging and accounting removals (``remove``);
- for remote stores, failing fast after a lost server (``Breaker``) and renewing held
  leases (``Renewer``); the waiting loop of every lock (``KeyLock.acquire_within``, by
  ``poll``: a waiter reads the holder's value before each try, and stops once it is there).

A backend writes only primitives (see the README's "Development" section):

    _read(function, key)                   the whole entry, or None (the hit)
    _write(function, key, views, size, expires)   store it atomically
    delete(function, key)                  remove one entry; True if there was one
    _list(function, heads)                 entries with size and access time (StoredEntry)
    _read_range(entry, start, end)         bytes start..end of a listed entry (its header)
    _unlink(entries)                       remove listed entries; the ones removed
    lock(function, key)                    a KeyLock shared by processes (a lock or lease:
                                           it writes ``_try`` and ``release``)
    _holds(function, key, head, timed_out) whether the entry begins with ``head`` (with
                                           ``reads_back``: writes that can lose their answer)
    cleanup(), close(), notes, statistics  optional

and declares its capabilities (``remote``, ``native_expiry``, ``eviction``,
``maps_memory``, ``reads_back``, ``shared_with``). The file store also writes its own
``read``: its hit path is a few system calls, and its trust rule is the file's owner.
"""

from __future__ import annotations

import abc
import errno
import functools
import itertools
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from . import _entry
from ._entry import Miss, header_length
from ._errors import PartlyRemoved, logger, warn
from ._ledger import Ledger, Oldest, Refusals, evict_listed, least_recent


class StoredEntry(NamedTuple):
    """One entry as a store lists it: where it is and its first bytes (its header)."""

    function_dir: str  # the store's own name for the function's namespace
    key: str
    size: int
    accessed: float  # when it was last read or written (seconds since the epoch)
    head: bytes  # at least the entry's header, when the listing asked for heads
    location: str  # a path or URL, for messages
    # Whose the entry's file is, where the listing learnt it at no cost (the file store's
    # ``stat``): in a sticky folder only its owner (or the folder's) may remove it.
    owner: int | None = None
    # The object's ETag as the listing gave it (S3): a removal leaves an object that is
    # not the one listed any more (rewritten since), "" where the store has none.
    etag: str = ""


def complete_head(head: bytes, read_more: Callable[[int, int], bytes]) -> bytes:
    """``head`` (an entry's first bytes), read on with ``read_more(start, end)`` when the
    entry's header runs past it (8 bytes a buffer: a result of many arrays). Bytes that
    are not an entry are returned as they are: whoever reads the head says so."""
    try:
        need = header_length(head)
    except Miss:
        return head
    while len(head) < need:
        more = read_more(len(head), need)
        if not more:
            break
        head += more
    return head


def pieces(views: Sequence[memoryview], size: int) -> Iterator[Any]:
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


def _span(views: Sequence[memoryview], start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` (fewer at its end) of the entry made of ``views``."""
    out = bytearray()
    at = 0
    for view in views:
        if at >= end:
            break
        if at + view.nbytes > start:
            out += view[max(start - at, 0) : end - at]
        at += view.nbytes
    return bytes(out)


class Unconfirmed(ConnectionResetError):
    """A write whose answer was lost (``errno`` ECONNRESET: the connection dropped) or
    never came (ETIMEDOUT: the write timed out), and which could not be read back (its
    message says why): perhaps stored."""

    @property
    def timed_out(self) -> bool:
        return self.errno == errno.ETIMEDOUT


def _reader(store: Store, entry: StoredEntry) -> Callable[[int, int], bytes]:
    """``read_more`` for ``complete_head``: ranged reads of one listed entry."""
    return lambda start, end: store._read_range(entry, start, end) or b""


def worth_reading(head: bytes) -> bool:
    """False if an entry's first ``HEAD_BYTES`` show it unusable by anyone, so that the
    rest of it need not be transferred (a remote store's hit on a large entry): not an
    entry, stale, or written by another Python."""
    try:
        header = _entry.read_header(head)
    except Miss:
        return len(head) >= HEAD_BYTES  # a header longer than HEAD_BYTES: read on
    return not header.stale(time.time()) and header.incompatible() is None


class Removal:
    """How far a ``remove_listed`` got, for its caller's progress and for an interrupt: the
    entries taken from the listing, those it removed (not those another process removed
    first) and their bytes, and whether a batch is being removed (an interrupt then may
    have removed some of it too)."""

    __slots__ = ("busy", "freed", "removed", "taken")
    taken: int
    removed: int
    freed: int
    busy: bool

    def __init__(self) -> None:
        self.taken = self.removed = self.freed = 0
        self.busy = False


def header_of(stored: StoredEntry) -> _entry.Header | None:
    """A listed entry's header, or None if it is unreadable or not the length it promises."""
    try:
        header = _entry.read_header(stored.head)
    except Miss:
        return None
    return header if header.size == stored.size else None


HEAD_BYTES = 4096  # what ``scan`` reads first of each entry: the header and then some
REMOVE_BATCH = 1000  # entries ``remove_listed`` holds before removing them
SECRET_ADVICE = ("the same secret= (or $MEMOJAR_SECRET) so entries are signed and "
                 "checked.")
# of a remote store's timeout: how long the look at an entry whose write timed out waits
# for the server (``_confirm``), so that a frozen server costs a call one timeout and a
# quarter, not two
CONFIRM_SHARE = 0.25
WAIT_ID_BITS = 31  # bits of a lock's id in the notes of waits (``KeyLock.wait_id``)
POLL_MAX = 0.02  # seconds: the longest pause between tries of a held lock (by default)
# seconds a remote store keeps trying to remove what a failed write left behind (uncommitted
# chunks, a multipart upload) while the server that failed a moment ago does not answer
LEFTOVER_RETRY = 60.0


class KeyLock(abc.ABC):
    """A lock on one key, held while its value is computed and stored."""

    __slots__ = ()  # a lock of the file store is made per miss: no dict for it
    poll_max = POLL_MAX  # the longest pause between tries (``acquire``, ``acquire_within``)

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False at once if it is held.

        The base owns the loop, as filelock's ``BaseFileLock.acquire`` does: a lock writes
        ``_try`` (one attempt) and may say how long to pause before the next (``_pause``);
        pauses double up to ``poll_max``."""
        pause = 0.001
        while not self._try():
            if not blocking:
                return False
            time.sleep(self._pause(pause))
            pause = min(pause * 2, self.poll_max)
        return True

    def _try(self) -> bool:
        """One attempt to take the lock (needed unless the lock writes its own ``acquire``)."""
        raise NotImplementedError

    def _pause(self, pause: float) -> float:
        """Seconds to wait before the next try; the loop's own backoff by default."""
        return pause

    def _due(self) -> bool:
        """Whether the next try will ask (a lock with a backoff of its own, such as a
        remote lease, says no while it backs off): ``poll``'s look at what the waiter waits
        for is made only then, at the lock's pace."""
        return True

    def poll(self, meanwhile: Callable[[], bool] | None = None) -> bool | None:
        """One step of a wait for the lock held by another: if a try is due, ``meanwhile``
        first, and None if it returns True (the waiter has what it waited for: the value
        the holder stored); then one try, True if the lock is taken.

        ``acquire_within`` waits by these steps; a caller that cannot block (a coroutine)
        makes them itself, with pauses of its own between them."""
        if meanwhile is not None and self._due() and meanwhile():
            return None
        return self.acquire(blocking=False)

    def acquire_within(self, timeout: float, tried: bool = False,
                       meanwhile: Callable[[], bool] | None = None) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds; False if it is still held.

        The decorator waits through this (``Cache(lock_timeout=...)``), so a lock held by a
        stuck or foreign process costs a delay, never a hang. The default tries
        ``acquire(blocking=False)`` with pauses growing to ``poll_max``; a store whose lock
        has a timed wait of its own may override it (and may ignore ``meanwhile``).
        Exceptions raised while waiting (a signal handler's ``TimeoutError``) propagate,
        with the lock not held.

        ``tried``: the caller has just tried once and found the lock held, so the wait
        starts with a pause, not with another try (a request, on a remote store).
        ``meanwhile``: looked at before each later try that will ask (``poll``); if it
        returns True the wait ends there, False returned and the lock not taken, so that
        no waiter takes the lock in turn just to read the value its holder stored.
        """
        deadline = time.monotonic() + timeout
        pause = 0.001
        if not tried and self.acquire(blocking=False):
            return True
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, self.poll_max)
            taken = self.poll(meanwhile)
            if taken is None:  # what it waited for is there: no need of the lock
                return False
            if taken:
                return True

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock back."""

    # A lock-order cycle between processes (one's ``f(a)`` calls ``g(b)`` while the other's
    # ``g(b)`` calls ``f(a)``; or a ring of three or more): a caller about to wait for a
    # lock while it holds others notes, where that lock's holder can see it, the ids
    # (``wait_id``) of the locks it holds and of those whose holders wait, directly or
    # through others, for one of them (``waiters``), its "behind" set (``note_waiting``).
    # Then it looks again at its held locks' waiters: the wait closes a cycle if the lock
    # it waits for is behind it. It looks again while it waits (a ring closed by callers
    # noting at once is seen a round later, ``_decorator.NOTE_AGAIN``). Of two callers
    # closing a cycle at once, each notes before it looks, so at least one sees the other's
    # note. A store whose locks cannot say (the default) leaves such a cycle to
    # ``lock_timeout``. Ids are 31 bits (``WAIT_ID_BITS``): two locks of the same id make a
    # cycle seen where there is none, an extra computation, never a wrong value.

    def wait_id(self) -> int | None:
        """The lock's id for the notes of waits (held: ``waiters``; waited for: after
        ``note_waiting``), the same in every process that names it however it is spelled;
        None if this store's locks cannot say."""
        return None

    def note_waiting(self, behind: Collection[int], ends: list[Callable[[], None]]) -> None:
        """Note, until the callables put in ``ends`` are called, that callers holding the
        locks ``behind`` (ids) wait for this one; called again during the wait with more
        ids (those noted already stay). Nothing if this store's locks cannot say."""
        return

    def waiters(self) -> Collection[int]:
        """Held by the caller: the ids noted as behind a wait for this lock (by its
        waiters, each with the locks it holds and those behind it)."""
        return ()

    def __enter__(self) -> KeyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# Where this process warned that entries are not authenticated: (store kind, place).
_UNSIGNED_WARNED: set[tuple[str, Any]] = set()


class Store(abc.ABC):
    """Bytes in, bytes out, addressed by function name and key: the policy over a backend's
    primitives (a subclass is a backend; see the module docstring)."""

    location: str
    max_size: int | None
    # Whether entries are signed above the store (the cache has a secret): then the
    # signature decides what is trusted, and the store neither refuses entries of other
    # users nor warns that entries are unauthenticated. The cache sets it.
    signed: bool = False
    # Capabilities a backend declares.
    # Whether calls wait on the network: coroutine functions then run every call of the
    # store in a worker thread, so the event loop never waits for a server.
    remote: bool = False
    native_expiry = False  # drops entries when ``expires`` passes (the header still decides)
    # How ``max_size`` is kept: "listing" (evict by a listing before each write: enough for
    # a backend that keeps no total), "ledger" (a total shared under a lock, ``_ledger``;
    # the backend reserves room in ``_write``), or "index" (the backend's own atomic index,
    # ``_evict``, which also evicts on write).
    eviction = "listing"
    maps_memory = False  # ``read`` may return an mmap of a large entry
    # Whether a write that timed out or lost its answer is read back (``_confirm``, by the
    # backend's ``_holds``): a server's, which may have stored it. A file system's timeout
    # is a failure; a dropped connection without a look is ``Unconfirmed``.
    reads_back = False
    # Who else can write entries, for the warning of a cache without a secret ("the server");
    # None: nobody but this user (no warning), or the backend judges trust itself.
    shared_with: str | None = None
    kind = "this"  # the backend's name in messages ("Redis")
    # What ``cleanup`` counts, in words a user knows: the leftovers of interrupted writes.
    leftover = "temporary file"
    # Whether objects memojar did not write may sit at entries' names (an S3 prefix shares a
    # bucket): a listing without heads holds them, and only their first bytes tell (``scan``
    # with heads leaves them out); removals read those first and leave them.
    names_shared = False
    # The server that other stores of this process may share (a Redis server's address):
    # one found silent by a store's merge of statistics at the exit is not asked again by
    # the others (``_cache._Flusher.merge_all``). None: none shared (a directory).
    server: object = None
    _warned = False  # the trust warning was given (once per store)

    @property
    def failing(self) -> bool:
        """Whether requests fail fast now (a remote store's server lost, ``Breaker``)."""
        return False

    @property
    def silent(self) -> bool:
        """Whether requests fail fast now after one got no answer within the timeout (a
        frozen or unreachable server), not after a refused connection (``Breaker.silent``)."""
        return False

    # --- the hit path -----------------------------------------------------------------

    def read(self, function: str, key: str) -> Any | None:
        """The whole entry as a buffer (bytes-like or mmap), or None if there is none.

        Never raises for a missing or unreadable entry, nor for a backend fault (logged):
        all are None. This is the hit path."""
        if not self._warned:
            self._warn_unsigned()
        try:
            return self._read(function, key)
        except OSError as exc:
            if exc.errno is None:  # not the backend's: the caller's signal handler's
                raise  # (before, a SIGALRM handler's TimeoutError was a miss: the call
                # computed on past the caller's deadline)
            logger.debug("read of %s %s from %s failed: %s", function, key, self.location, exc)
            return None

    def look(self, function: str, key: str) -> Any | None:
        """``read``, for a look at the entry that is no use of it (``cache_contains``,
        ``cache_explain``): the mark of a use its read left, if any, is taken back
        (``unstamp``). A store whose read marks it in a way it can skip overrides this."""
        data = self.read(function, key)
        if data is not None:
            self.unstamp(function, key)
        return data

    def unstamp(self, function: str, key: str) -> None:  # noqa: B027 - optional
        """The entry this thread just read (``read``) was not used (its reader rejected it)
        and is still there: the mark of a use its read left in the least-recently-used
        order, if any, is taken back. Nothing by default."""

    def maybe_stored(self, function: str, key: str) -> bool:
        """False only if there is certainly no entry for ``key``, told more cheaply than by
        ``read`` (the re-check of a miss under the key's lock); True: read to know."""
        return True

    def held_here(self) -> str | None:
        """What lock of the store's own (not a key's) this thread holds, if any: a signal
        handler's call made while its thread holds it must not wait for another thread,
        which may be waiting for that lock (``_Memo._lock``). None by default."""
        return None

    def unread(self, function: str, key: str) -> str | None:
        """Why ``read`` found no entry it would load for ``key``, when one may be there (for
        ``cache_explain``); None: there is none. Not on any call's path. Here: the backend's
        fault, read again (a server down or frozen fails fast after the first one). Before,
        "no entry for these arguments" of a server that could not be asked."""
        try:
            self._read(function, key)
        except OSError as exc:
            if exc.errno is None:  # not the backend's: the caller's signal handler's
                raise
            return f"the store could not be asked ({exc})"
        return None

    def _read(self, function: str, key: str) -> Any | None:
        """The backend's read of a whole entry (None if missing); raises ``OSError``."""
        raise NotImplementedError

    def _warn_unsigned(self) -> None:
        """Warn that entries others can write are not authenticated (no secret): once per
        place (``unsigned_place``) in this process, not per store: a ``Cache`` made per
        request or per task repeated it at each one's first read."""
        if self.signed or self.shared_with is None:
            self._warned = True
            return
        place = (self.kind, self.unsigned_place())
        if place in _UNSIGNED_WARNED:  # (no lock: at worst two threads both warn)
            self._warned = True
            return
        _UNSIGNED_WARNED.add(place)
        self._untrusted(
            f"{self.kind} cache {self.location} has no secret: its entries are not "
            f"authenticated, and anyone who can write to {self.shared_with} can make this "
            "process unpickle (run) code of their choosing. Give every user of the cache "
            + SECRET_ADVICE
        )

    def unsigned_place(self) -> Any:
        """Where entries are not authenticated, for the warning's once (the location)."""
        return self.location

    def _untrusted(self, message: str) -> None:
        """Warn, once per store, that entries are not trusted (another user's, or
        unauthenticated); the hit path checks ``_warned`` before calling."""
        if not self._warned:
            self._warned = True
            warn(message)

    # --- writing ----------------------------------------------------------------------

    def write(
        self, function: str, key: str, chunks: Sequence[Any], expires: float | None = None
    ) -> int:
        """Store the entry made of ``chunks`` (bytes or one-dimensional byte views, as
        ``_entry.encode`` makes them) atomically; return its size.

        Readers see the old entry or the new one, never a part. ``expires`` (seconds since
        the epoch) lets a store with its own expiry drop the entry then; the entry's header
        says the same, and is what decides. Raises ``OSError`` on failure (a store turns its
        backend's errors into ``OSError``), leaving no partial entry behind; ``EFBIG`` for
        an entry larger than ``max_size``, which no eviction could make room for.
        """
        views = [memoryview(c).cast("B") for c in chunks]
        size = sum(v.nbytes for v in views)
        if self.max_size is not None:
            if size > self.max_size:
                raise OSError(
                    errno.EFBIG,
                    f"the entry ({size:,} bytes) is larger than the cache's max_size "
                    f"({self.max_size:,} bytes)",
                )
            if self.eviction == "listing":  # make room first: the new entry fits
                self.evict(size)
        try:
            self._write(function, key, views, size, expires)
        except (ConnectionResetError, TimeoutError) as exc:
            if exc.errno is None:  # not the backend's: the caller's signal handler's
                raise
            if isinstance(exc, TimeoutError) and not self.reads_back:
                raise  # a backend that cannot look (a file system's timeout): failed
            self._confirm(function, key, views, exc)
        return size

    def _confirm(self, function: str, key: str, views: list[memoryview],
                 exc: OSError) -> None:
        """After a write whose answer was lost (the connection dropped once it was sent)
        or never came (it timed out: a slow server answering late, a proxy losing the
        answer), either way perhaps stored, return if the entry is the one written, else
        raise: ``exc`` if it is not, ``Unconfirmed`` if that cannot be told. The entry's
        first bytes are its header, whose creation time and checksum (of every byte after
        it) are this write's alone; read back, they tell without loading anything.

        The look is made although the store fails fast after the fault (``Breaker``): it
        is the one request that tells whether the user's result was stored, and answered,
        it shows the server up again. After a timeout it waits ``CONFIRM_SHARE`` of the
        timeout, not all of it (``timed_out``): a server that answers a small read at once
        (the write's answer was lost on the way, or came late) tells; a frozen one costs
        the call a quarter of a timeout more, not a second timeout, and the next calls
        fail fast as after any fault."""
        timed_out = isinstance(exc, TimeoutError)
        head = complete_head(_span(views, 0, HEAD_BYTES),
                             functools.partial(_span, views))
        try:
            stored = self._holds(function, key, head, timed_out)
        except OSError as look:
            if look.errno is None:  # the caller's signal handler's, while it looked
                raise
            raise Unconfirmed(errno.ETIMEDOUT if timed_out else errno.ECONNRESET,
                              look.strerror or str(look)) from exc
        if not stored:
            try:
                raise exc
            finally:  # this frame is in its traceback: no cycle through the call's frames
                del exc
        logger.debug("stored %s %s (its write's answer %s; read back)", function, key,
                     "did not come in time" if timed_out else "was lost")

    @abc.abstractmethod
    def _write(
        self, function: str, key: str, views: list[memoryview], size: int,
        expires: float | None,
    ) -> None:
        """The backend's atomic write of an entry of ``size`` bytes (see ``write``); with
        ``max_size`` and ``eviction = "ledger"``, it reserves room through the ledger."""

    def _holds(self, function: str, key: str, head: bytes, timed_out: bool) -> bool:
        """Whether the entry of ``key`` begins with ``head`` (``_confirm``: a write whose
        answer was lost); raises ``OSError`` if the server cannot tell now. ``timed_out``:
        the write timed out, so the look waits at most ``CONFIRM_SHARE`` of the timeout.
        Needed by a backend that declares ``reads_back`` (its ``_write`` raises
        ``ConnectionResetError`` or ``TimeoutError``)."""
        raise OSError(errno.ENOTSUP, f"{self.kind} stores cannot read an entry back")

    @abc.abstractmethod
    def delete(self, function: str, key: str) -> bool:
        """Remove one entry; True if there was one."""

    def discard(self, function: str, key: str, judged: Any) -> bool:
        """Remove one entry found bad, unless it is no longer the one read as ``judged``
        (the buffer ``read`` returned): another caller may have stored a fresh one since.

        The default deletes whatever is there; a store that can tell entries apart keeps a
        fresh one."""
        return self.delete(function, key)

    @abc.abstractmethod
    def lock(self, function: str, key: str) -> KeyLock:
        """A lock for computing one key, shared by threads, processes and hosts.

        A holder that dies releases it (by the kernel or by expiry) within seconds; a forked
        child never holds its parent's lock, and the parent's release does not wait for the
        child. Callers wait through ``KeyLock.acquire_within``.
        """

    # --- listing and housekeeping -------------------------------------------------------

    def scan(self, function: str | None = None, heads: bool = True) -> Iterator[StoredEntry]:
        """Every entry (of one function), with its whole header bytes when ``heads``: the
        backend's listing, whose first bytes (read here if the listing has none) are read on
        until the header is whole, however long."""
        for entry in self._list(function, heads):
            if heads:
                head = (entry.head if entry.head or not entry.size
                        else self._read_range(entry, 0, HEAD_BYTES))
                if head is None:
                    continue  # removed since listed
                entry = entry._replace(head=complete_head(head, _reader(self, entry)))
            yield entry

    @abc.abstractmethod
    def _list(self, function: str | None, heads: bool) -> Iterator[StoredEntry]:
        """Every entry (of one function) with its size and access time; ``head`` is what
        the listing got of its first bytes for free (``heads``), else empty."""

    def _read_range(self, entry: StoredEntry, start: int, end: int) -> bytes | None:
        """Bytes ``start`` to ``end`` (fewer at its end) of a listed entry; None if it is
        gone. Needed unless ``_list`` always gives whole headers."""
        raise NotImplementedError

    def remove(self, entries: Sequence[StoredEntry]) -> int:
        """Remove listed entries (as ``scan`` gave them); return how many were removed."""
        return len(self._removed(entries))

    def _removed(self, entries: Sequence[StoredEntry]) -> list[StoredEntry]:
        """``remove``: the entries it removed."""
        removed = self._unlink(entries)
        for entry in removed:
            logger.debug("evict %s %s (%d bytes)", entry.function_dir, entry.key, entry.size)
        return removed

    def remove_listed(self, entries: Iterable[StoredEntry],
                      progress: Callable[[Removal], None] | None = None,
                      removal: Removal | None = None) -> int:
        """``remove`` the entries of a listing as it yields them, ``REMOVE_BATCH`` at a time:
        memory for a batch, not for the listing (before, ``Cache.clear`` and
        ``cache_clear`` held every entry listed: 234 MB of RSS to clear 300,000 files).
        Entries this user may not remove are said once, at the end (``PartlyRemoved``), as
        ``remove`` says them; an interrupt leaves the rest, which a clear run again removes.
        ``removal``, if given, says how far it got (for an interrupt), and ``progress``, if
        given, is called with it after each batch. Returns how many entries it removed
        (not those another process removed first)."""
        removal = Removal() if removal is None else removal
        left: list[PartlyRemoved] = []
        listing = iter(entries)
        while batch := list(itertools.islice(listing, REMOVE_BATCH)):
            removal.busy = True
            try:
                gone = self._removed(batch)
            except PartlyRemoved as exc:
                left.append(exc)
                # (which ones another process removed first is not known here: the first
                # ones of those not left)
                kept = {path for path, _ in exc.left}
                gone = [e for e in batch if e.location not in kept][: exc.removed]
            # The bytes of the entries removed. Before, of the batch's first ones, as many as
            # were removed: objects of another tool's at entries' names in an S3 prefix,
            # listed and left, were said removed ("removed 1 entry (4.9 KiB)" of a 249-byte
            # entry)
            removal.freed += sum(entry.size for entry in gone)
            removal.removed += len(gone)
            removal.taken += len(batch)
            removal.busy = False
            if progress is not None:
                progress(removal)
        if left:  # said once, for the whole removal
            raise PartlyRemoved.joined(removal.removed, left)
        return removal.removed

    @abc.abstractmethod
    def _unlink(self, entries: Sequence[StoredEntry]) -> list[StoredEntry]:
        """Remove listed entries; the ones removed (another process may have been first)."""

    def cleanup(self) -> int:
        """Remove what crashed writers left behind (temporary files, idle locks); return
        how many. A backend whose writes leave nothing behind has nothing to do."""
        return 0

    def evict(self, incoming: int = 0) -> int:
        """Remove least-recently-used entries until ``incoming`` more bytes fit ``max_size``:
        the one decision (``Ledger.evict``) over the ledger's census or over listings alone
        (``evict_listed``), or made by the backend's own atomic index (``eviction``). By
        listings, memory for a batch of the oldest, not for the store: before, every entry
        was listed into memory and sorted (6.0 MB at the peak for 20,000 entries, S3's
        eviction before each write)."""
        if self.max_size is None:
            return 0
        if self.eviction == "index":
            return self._evict(incoming)
        if self.eviction == "ledger":
            with Ledger(self) as ledger:  # type: ignore[arg-type]
                return ledger.evict(incoming)
        return evict_listed(self, incoming)

    def _evict(self, incoming: int) -> int:
        """Evict by the backend's own index (``eviction = "index"``)."""
        raise NotImplementedError

    # What the ledger's eviction asks of a backend that keeps no total (``evict_listed``;
    # see ``_ledger.SizedBackend``): a listing's least recently used, a batch at a time.

    def _entries(self) -> Iterator[StoredEntry]:
        """Every entry, as eviction counts them."""
        return self.scan(None, heads=False)

    def _oldest(self, limit: int, skip: Container[str]) -> Oldest:
        """The ``limit`` least recently used entries not at a location in ``skip`` (see
        ``least_recent``) and the bytes of all: memory for ``limit`` entries."""
        total = 0

        def counted() -> Iterator[StoredEntry]:
            nonlocal total
            for entry in self._entries():
                total += entry.size
                yield entry

        oldest, newest = least_recent(counted(), limit, skip)
        return Oldest(oldest, total, 0, newest)

    def _census(self) -> int:
        return self._oldest(0, ()).total

    def _removable(self, entries: Sequence[StoredEntry]) -> list[bool]:
        """All: a backend that cannot tell says so as it removes (``_unlink``)."""
        return [True] * len(entries)

    @property
    def _refusals(self) -> Refusals:
        """The entries whose removal was refused, kept for eviction (``Refusals``)."""
        refusals = self.__dict__.get("_refusals_kept")
        if refusals is None:
            refusals = self.__dict__.setdefault("_refusals_kept", Refusals())
        return refusals  # type: ignore[no-any-return]

    def _unlink_refused(
        self, entries: Sequence[StoredEntry]
    ) -> tuple[list[StoredEntry], list[StoredEntry], list[StoredEntry]]:
        """``_unlink``: the entries removed, none refused nor found written again (one not
        removed was removed first by another process, or is not an entry)."""
        return self._unlink(entries), [], []

    def read_note(self, function: str) -> bytes | None:
        """A small note kept beside a function's entries (not an entry), or None.

        The decorator notes the identity of the code that last swept the function's old
        entries, so a new process whose code is unchanged need not list them again. A store
        that keeps no notes returns None: the sweep then lists the entries every time.
        """
        return None

    def write_note(self, function: str, note: bytes) -> None:  # noqa: B027 - optional
        """Keep ``note`` beside a function's entries (see ``read_note``); may do nothing."""

    def generation(self, function: str) -> Any | None:
        """A cheap view of the function's generation stamp, or None if the store keeps none.

        ``view[:8]`` is 8 bytes that change whenever entries of the function are removed
        (delete, clear, prune, eviction, a bad entry discarded) or ``bump`` is called, in any
        process. The memory tier compares it on every call, so reading it must cost no
        system call (the file store maps a small file). While a change is under way, the
        stamp read as one native unsigned integer is ``busy`` (``stamp_busy``): the memory
        tier holds nothing read then."""
        return None

    def restamp(self, function: str) -> Any | None:
        """A new view of the function's stamp if the one ``generation`` gave no longer
        receives the others' changes (its file was removed), else None."""
        return None

    def no_stamp_why(self) -> str | None:
        """Why ``generation`` gave None, if the store knows better than its kind's usual
        reason (a folder of another user's: nothing is written there)."""
        return None

    def bump(self, function: str) -> None:  # noqa: B027 - optional, with ``generation``
        """Change the function's generation stamp (its entries changed under callers)."""

    # Saved statistics (see FileStore): a store that keeps none reports none, and
    # ``cache_info`` then lists the entries to count them.

    def read_stats(self) -> dict[str, Any]:
        """``{"functions": {name: [hits, misses, saved]}, ...}`` of every process."""
        return {}

    def merge_stats(self, functions: dict[str, tuple[int, int, float]],  # noqa: B027
                    recount: dict[str, tuple[int, int]] | None = None,
                    merge: tuple[str, str] | None = None) -> None:
        """Add hits, misses and seconds saved per function (deltas of one process).
        ``merge``: (writer, merge id), recorded in the same write as the counts (the
        writer's last merge), so that ``merged`` tells afterwards whether a merge that
        raised was written: a ``KeyboardInterrupt`` may land at any moment of it."""

    def merged(self, writer: str, merge_id: str) -> bool:
        """Whether ``writer``'s last merge written is ``merge_id`` (raises ``OSError`` when
        that cannot be known now: the caller asks again later)."""
        return False

    def counted(self, function: str) -> tuple[int, int] | None:
        """The function's entries and bytes from bookkeeping, or None (list them)."""
        return None

    def recount(self, function: str, entries: int, size: int) -> None:  # noqa: B027
        """Record the exact count of the function's entries, from a listing."""

    def forget_counts(self) -> None:  # noqa: B027
        """Drop kept counts (after a prune): the next ``counted`` is None."""

    def close(self) -> None:  # noqa: B027 - an optional hook: nothing to release by default
        """Release connections or handles; the store may not be used afterwards."""


Counts = dict[str, tuple[int, int, float]]  # function name -> hits, misses, seconds saved


def add_counts(first: Counts, *more: Counts) -> Counts:
    """The per-function statistics of ``first`` and ``more`` added up (a new dict, unless
    there is nothing to add)."""
    if not more:
        return first
    total = dict(first)
    for counts in more:
        for name, (hits, misses, saved) in counts.items():
            had = total.get(name, (0, 0, 0.0))
            total[name] = (had[0] + hits, had[1] + misses, had[2] + saved)
    return total


def start_thread(thread: threading.Thread) -> bool:
    """Start ``thread``; False if no thread can start: the process is ending (Python 3.12
    refuses a new thread from an atexit function, or a signal handler run then) or has too
    many. The caller goes on without it (before, its call raised ``Thread.start``'s
    ``RuntimeError``: a lease taken, its renewer not started, the call failed). A
    ``RuntimeError`` that a signal handler run inside ``start`` raised is not ``start``'s
    (its traceback ends in the handler's frame): it propagates."""
    try:
        thread.start()
    except RuntimeError as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is None or tb.tb_frame.f_code is not threading.Thread.start.__code__:
            raise
        logger.debug("no thread %s: %s", thread.name, exc)
        return False
    return True


class Breaker:
    """Failing fast after a lost or silent server, for every remote store: after a
    connection fault or a timeout (``trip``), every call fails at once with that fault
    (``check``), so a call waits at most one timeout for a server that is down, however
    many requests it makes. The server is up again when ``probe`` (a ping, tried every
    ``every`` seconds by one thread per store and process) answers, or, without a probe,
    ``every`` seconds later.

    ``trip(..., writes=True)``: a write that timed out, which a server paused for writes
    (Redis's ``CLIENT PAUSE WRITE``, as ``FAILOVER`` pauses it) does while it answers
    reads: only writes fail at once, ``check(read=True)`` lets reads through, and the first
    read that times out too puts the server down whole. Writes are up again when
    ``write_probe`` (if given; else ``probe``) answers: a write of its own, which such a
    server holds as it holds the others, where it answers a ping at once."""

    def __init__(self, location: str, every: float,
                 probe: Callable[[], object] | None = None, name: str = "memojar-probe",
                 write_probe: Callable[[], object] | None = None) -> None:
        self._location = location
        self._name = name
        self._every = every
        self._probe = probe
        self._write_probe = write_probe
        self._down: OSError | None = None
        self._writes = False  # down for writes only (``trip``'s ``writes``)
        self._until = 0.0  # without a probe: down until then (monotonic)
        self._prober: threading.Thread | None = None
        self._pid = os.getpid()
        # Guards _down, _prober. Reentrant: a signal handler in this thread may call a
        # cached function of the same store while the mutex is held: while ``trip`` starts
        # the prober under it (``Thread.start`` waits for the thread to run, and the
        # handler's ``check`` took it again: ``tests/test_signal_locks.py``), or while a
        # fault is noted and the handler's own call faults too. A plain lock waited on its
        # own thread for ever; at worst two probers run.
        self._mutex = threading.RLock()
        self._closed = threading.Event()

    @property
    def down(self) -> bool:
        return self._down is not None

    @property
    def silent(self) -> bool:
        """Down after a timeout: the server gave no answer. A refused connection (a server
        stopped, a wrong password: this store's own) failed at once, costing no wait."""
        down = self._down
        return down is not None and down.errno == errno.ETIMEDOUT

    def check(self, read: bool = False) -> None:
        """Raise the fault that put the server down, if it is down (for writes only: not
        for a ``read``)."""
        down = self._down
        if down is None or (read and self._writes):
            return
        if self._probe is None:
            if time.monotonic() >= self._until:
                self._down = None
                return
        elif self._prober is None or self._pid != os.getpid():
            # no prober running: a forked child's first look, or the call that tripped was
            # interrupted before its prober started (the server would stay down for good)
            self._forked()
            with self._mutex:
                if self._down is not None:
                    self._start_prober()
        raise type(down)(down.errno, down.strerror)

    def answered(self, read: bool = False) -> None:
        """A request made although the server was down (one that learns what a request
        whose answer was lost did) was answered: the server is up again. A ``read``
        answered says nothing of writes: down for writes only, it stays so (a server paused
        for writes answers reads; before, the read that learned what a commit timed out
        in the pause did took writes as up, and the call's release of its lock waited a
        second socket_timeout, as did the next miss)."""
        self._forked()
        with self._mutex:
            if not (read and self._writes):
                self._down, self._writes = None, False

    def trip(self, error: OSError, writes: bool = False) -> None:
        """The server is down with ``error`` (a store's message of the fault); ``writes``:
        for writes only, unless it is down whole already."""
        self._forked()
        with self._mutex:
            self._writes = writes and (self._down is None or self._writes)
            self._down = error
            self._until = time.monotonic() + self._every
            if self._probe is not None:
                self._start_prober()

    def close(self) -> None:
        """Stop the prober (a closed store pings nothing). The store may still be used: a
        later ``check`` while the server is down starts a new prober (before, the closed
        one stayed noted as running, and one fault after ``close`` made every later call
        skip the server for good)."""
        with self._mutex:
            self._closed.set()
            self._closed, self._prober = threading.Event(), None

    def _forked(self) -> None:
        """In a forked child: no prober thread, and a mutex its parent may have held."""
        if self._pid != os.getpid():
            self._pid, self._mutex, self._prober = os.getpid(), threading.RLock(), None

    def _start_prober(self) -> None:  # under _mutex
        if self._prober is None:
            # Noted once started: an interrupt inside ``start`` must not leave a prober
            # noted that never runs (the server would stay down for good; ``check`` starts
            # one when none is noted); at worst two run.
            # The thread holds its breaker weakly: a store dropped while its server is down
            # (a Cache made per job, per test) takes its prober, and its client's
            # connections, with it, instead of leaving a thread that pings forever.
            prober = threading.Thread(
                target=Breaker._run, args=(weakref.ref(self), self._closed, self._every),
                name=self._name, daemon=True,
            )
            if start_thread(prober):
                self._prober = prober

    @staticmethod
    def _run(ref: weakref.ref[Breaker], closed: threading.Event, every: float) -> None:
        while not closed.wait(every):
            breaker = ref()
            if breaker is None or breaker._answers():  # dropped, or up again
                return
            del breaker  # not held while waiting

    def _answers(self) -> bool:
        """Probe once; True (and the server up again) if it answered."""
        assert self._probe is not None
        # Down for writes only: a write is asked. Before, the ping was, which a server paused
        # for writes answers: writes were taken as up again a moment later, and every miss
        # of the pause waited socket_timeout for its lock.
        probe = self._write_probe if self._writes and self._write_probe else self._probe
        try:
            probe()
        except Exception as exc:  # noqa: BLE001 - any failure: still down
            logger.debug("%s is still down: %s", self._location, exc)
            return False
        with self._mutex:
            self._down, self._writes = None, False
            if self._prober is threading.current_thread():
                self._prober = None
        logger.debug("%s answers again", self._location)
        return True


def lease_lost(ttl: float) -> OSError:
    """What a remote store's write raises when the caller's lease on the key was lost while
    it computed (another caller may have taken it over): the value is not stored."""
    return OSError(
        errno.ENOLCK,
        f"this caller's lock on the key expired while it computed (the server or this "
        f"process stalled for longer than the lock's {ttl:g} s lease), so another caller "
        "may have computed the same value: this one is returned, and stored only by the "
        "caller that holds the lock",
    )


class Renewable(Protocol):
    name: Any

    def renew(self) -> bool:
        """Extend the lease; False if it is no longer this holder's."""
        ...

    def disown(self) -> None:
        """In a forked child: forget the parent's lease (release and write as a non-holder,
        never touching it), and any thread lock the parent's threads may have held."""
        ...


class Renewer:
    """One daemon thread per store and process, renewing the leases held (every ``every``
    seconds) while any are: the lease-loss detection of every store whose locks expire. A
    lease found lost is logged and dropped; the store's commit refuses its write.

    The same thread finishes releases an interrupt cut short (``finish``): a release is a
    round trip to the server, long enough for a second interrupt (KeyboardInterrupt, a
    signal handler's exception) to cut short its retry too, and signal handlers run in the
    main thread only. It tries again, for a while, the releases the server could not take
    (``attempt``, ``later``): a job returns False to be tried again, True once done.

    It knows every lease this process holds, so it is what a forked child uses to hold
    none of them: after ``fork`` the child's renewers start empty, with a fresh mutex (the
    parent's thread may have held it), and every lease they held is disowned.

    ``after_jobs`` runs after each round that ran jobs: a store closed meanwhile closes the
    connections they used (``RedisStore.close`` closes those idle at its call only)."""

    def __init__(self, every: float, thread_name: str,
                 after_jobs: Callable[[], object] | None = None) -> None:
        self._every = every
        self._thread_name = thread_name
        self._after_jobs = after_jobs
        self._held: dict[int, Renewable] = {}
        # releases to finish or try again (``later``), each with its deadline (monotonic)
        self._jobs: list[tuple[Callable[[], bool], float]] = []
        self._running = 0  # jobs of the round under way (``pending``)
        # Reentrant: a signal handler may call a cached function (take or release a lease)
        # while this thread holds it, starting the thread or noting a lease; at worst two
        # threads renew for a while.
        self._mutex = threading.RLock()
        self._thread: threading.Thread | None = None
        # A job to run now. Not a ``threading.Event``: its ``set`` takes the lock of a
        # ``Condition`` through the Python-level ``Condition.__enter__``, and CPython runs
        # signal handlers as the lock's C acquire returns, before that ``with`` is entered:
        # a KeyboardInterrupt there (``finish`` is called just after one, when the next is
        # likeliest) left the Event's lock held for good, the renewer thread blocked in its
        # wait and this process's next ``finish`` blocked in its ``set``: a hang (one cause
        # the S3 SIGINT loop's one hang may have had; ``_s3store._PoolQueue`` the other).
        # A ``SimpleQueue``'s ``put`` is one C call.
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        _renewers.add(self)

    def _after_fork(self) -> None:
        """In the forked child (single-threaded): no thread, no lease of the parent's."""
        held, self._held, self._jobs, self._running = self._held, {}, [], 0
        self._mutex, self._thread, self._wake = threading.RLock(), None, queue.SimpleQueue()
        for lease in held.values():
            lease.disown()

    def add(self, lease: Renewable) -> None:
        with self._mutex:
            self._held[id(lease)] = lease
            self._start()

    def attempt(self, job: Callable[[], bool], within: float) -> None:
        """Run ``job`` now, and at this renewer's rounds (``later``) if it returns False."""
        if not job():
            self.later(job, within)

    def later(self, job: Callable[[], bool], within: float) -> None:
        """Run ``job`` in this renewer's thread at its next rounds, until it returns True
        or ``within`` seconds have passed: a release the server could not take now (a store
        fails fast for a moment after a fault), tried again."""
        deadline = time.monotonic() + within
        with self._mutex:
            self._jobs.append((job, deadline))
            self._start()

    def finish(self, job: Callable[[], bool], within: float) -> None:
        """Run ``job``, the rest of a release an interrupt cut short, in this renewer's
        thread at once (where no signal handler cuts it short again); then as ``later``."""
        self.later(job, within)
        self.wake()

    def wake(self) -> None:
        """Run the next round now (interrupt-safe: see ``_wake``)."""
        self._wake.put(None)

    def pending(self) -> int:
        """The jobs (releases to finish or try again) queued or being run now: none once
        every release an interrupt cut short is finished or given up (a job the server
        keeps failing is dropped after its ``within``)."""
        with self._mutex:
            return len(self._jobs) + self._running

    def _start(self) -> None:  # under _mutex
        if self._thread is None:
            # Noted once started, as ``Breaker``'s prober: an interrupt inside ``start``
            # must not leave a renewer noted that never runs (held leases would expire).
            thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            if start_thread(thread):  # else the leases held expire unrenewed
                self._thread = thread

    def discard(self, lease: Renewable) -> None:
        with self._mutex:
            self._held.pop(id(lease), None)

    def stop(self) -> None:
        """The store is closed: finish the pending releases now, and let the thread end
        once no lease is held. Not at once: a call still computing in another thread holds
        its lease until it stores (before, its lease expired unrenewed and another caller
        computed the same value), and a store used after ``close`` takes leases again, as
        the thread, ending when idle, starts again for them."""
        self.wake()

    def _run(self) -> None:
        wake = self._wake
        while True:
            try:
                wake.get(timeout=self._every)
                while True:  # wake-ups sent meanwhile: this round runs them all
                    wake.get_nowait()
            except queue.Empty:
                pass
            with self._mutex:
                leases = list(self._held.values())
                jobs, self._jobs = self._jobs, []
                self._running = len(jobs)
                if not leases and not jobs:
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
            for job, deadline in jobs:
                try:
                    done = job()
                except Exception:  # noqa: BLE001 - a lease not released expires by itself
                    logger.debug("finishing a release failed", exc_info=True)
                    continue
                if not done and time.monotonic() < deadline:  # again at the next round
                    with self._mutex:
                        self._jobs.append((job, deadline))
            if jobs and self._after_jobs is not None:
                try:
                    self._after_jobs()
                except Exception:  # noqa: BLE001 - never the end of this thread (leases held)
                    logger.debug("after the releases finished", exc_info=True)
            self._running = 0  # (those to run again are queued)
            for lease in leases:
                try:
                    renewed = lease.renew()
                except Exception:  # noqa: BLE001 - a client closed under it: tried again
                    logger.debug("renewing %r failed", lease.name, exc_info=True)
                    continue
                if not renewed:
                    with self._mutex:  # released since this round began: not lost
                        lost = self._held.pop(id(lease), None) is lease
                    if lost:
                        logger.warning("lease %r expired while held: another caller may "
                                       "compute the same value", lease.name)


_renewers: weakref.WeakSet[Renewer] = weakref.WeakSet()


def _renewers_after_fork() -> None:
    for renewer in list(_renewers):
        renewer._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renewers_after_fork)


# --- generation stamps (``Store.generation``) -----------------------------------------------
# The high half of a stamp while a change of a function's entries is under way: a random one
# is never taken for it (an older memojar's random stamps included, but for one in 2**32).
BUSY_STAMP = 0x6D6A6275  # "mjbu"


def new_stamp(busy: bool = False) -> bytes:
    """8 bytes for a generation stamp: random, with ``BUSY_STAMP`` as the high half of its
    native unsigned integer if ``busy``, and never so otherwise."""
    value = int.from_bytes(os.urandom(8), sys.byteorder)
    if busy:
        value = BUSY_STAMP << 32 | value & 0xFFFFFFFF
    elif value >> 32 == BUSY_STAMP:
        value ^= 1 << 32
    return value.to_bytes(8, sys.byteorder)


def stamp_busy(stamp: int) -> bool:
    """Whether a stamp (read as one native unsigned integer) says a change is under way."""
    return stamp >> 32 == BUSY_STAMP
