"""The Redis store's compute lock: a lease (``SET NX PX`` with a random token), renewed
by one thread per store and process while held, expired ``LOCK_TTL`` seconds after a holder
that died, and released only by its holder. A lease lost while held (a stall longer than
``LOCK_TTL``) is noticed: the renewer logs it, and the store's commit refuses the write."""

from __future__ import annotations

import functools
import secrets
import threading
from collections.abc import Callable, Collection
from typing import Any

import xxhash
from redis.exceptions import ResponseError

from ._errors import logger
from ._redisconn import connections
from ._store import WAIT_ID_BITS, KeyLock

LOCK_TTL = 2.0  # seconds a lock outlives its holder's last renewal
LOCK_RENEW = 0.5  # seconds between renewals of held locks
LOCK_POLL_MAX = 0.05  # seconds, the longest sleep between tries of a held lock


class _RedisKeyLock(KeyLock):
    """``SET NX PX`` with a random token; released only by its holder (compare-and-delete),
    renewed while held, and expired LOCK_TTL seconds after a holder that died. While held,
    the store's writes of its entry are conditional on the token (see ``RedisStore.write``).
    """

    def __init__(self, store: Any, name: bytes) -> None:
        self.store = store
        self.name = name
        self.entry = name[: -len(b":lock")]
        self.token = b""
        self.seen = b""
        # Held by a try and by a release: an async caller cancelled while its try is on its
        # way releases from another worker thread (``_decorator._in_thread``), and that
        # release must come after the try. Before, it could reach the server first, find
        # no lease, forget the token, and the try then took a lease nobody gave back:
        # every caller of the key waited for it to expire. Reentrant: an interrupt in the
        # caller's thread may leave it held there (Python 3.10's ``with``), where the
        # decorator then releases.
        self._turn = threading.RLock()

    poll_max = LOCK_POLL_MAX
    _note: _WaitNote | None = None  # while this lease is waited for (``note_waiting``)

    def _try(self) -> bool:
        with self._turn:
            return self._try_now()

    def _try_now(self) -> bool:
        store = self.store
        # The token is this lock's before the SET is sent: an interrupt (KeyboardInterrupt, a
        # signal handler's exception) between the server's reply and the end of this method
        # leaves a lease that ``release`` (compare-and-delete by the token) still removes.
        self.token = token = secrets.token_hex(16).encode()
        with store._errors("locking"):
            # SET NX PX, or held already by this token (a retry of a SET whose reply a
            # dropped connection lost): see ``_redislua.ACQUIRE``
            seen = store._acquire(keys=[self.name, self.entry],
                                  args=[token, int(LOCK_TTL * 1000)])
            if not seen:
                self.token = b""
                return False
            self.seen = seen  # the entry as found: see ``_redislua.COMMIT``
        store._forked()
        with store._mutex:
            store._leases[self.entry] = self
        store._renewer.add(self)
        return True

    def release(self) -> None:
        """Give the lock back; never raises, never waits for a server that is down (a lock
        that cannot be released expires). The token is forgotten only once the lease is
        removed, so that a release cut short by an interrupt is finished by calling it
        again, as the decorator does (the compare-and-delete is idempotent); and the store's
        renewer thread finishes it too, in case the next call is cut short as well."""
        with self._turn:  # after a try still on its way (``__init__``)
            self._release()

    def _release(self) -> None:
        token = self.token
        if not token:
            return
        store = self.store
        store._renewer.discard(self)
        with store._mutex:
            if store._leases.get(self.entry) is self:
                del store._leases[self.entry]
        remove = functools.partial(self._remove, token)
        try:  # tried again at the renewer's rounds until the lease would have expired
            store._renewer.attempt(remove, LOCK_TTL)
        except BaseException:  # cut short: finished by the renewer's thread, uninterrupted
            store._renewer.finish(remove, LOCK_TTL)
            raise
        self.token = b""

    def _remove(self, token: bytes) -> bool:
        """Remove the lease if it is still ``token``'s (compare-and-delete, idempotent);
        False if it is to be tried again."""
        try:
            with self.store._errors("releasing a lock"):
                self.store._release(keys=[self.name], args=[token])
        except (ConnectionError, TimeoutError) as exc:
            if exc.errno is None:  # not the server's: the caller's signal handler's
                raise
            # The server failed a moment ago, and the store fails fast until it answers a
            # ping: perhaps a SET whose replies were lost (the lease is ours all the same).
            logger.debug("cannot release %r now: %s", self.name, exc)
            return False
        except OSError as exc:
            logger.debug("cannot release %r (it expires by itself): %s", self.name, exc)
        return True

    def disown(self) -> None:
        """In a forked child (``Renewer``): the parent's lease is not this process's, so
        the child's release leaves it alone and its writes are not conditional on it."""
        self.token = b""

    # --- lock-order cycles between processes (see ``KeyLock.note_waiting``) ------------
    # ``<lock>:ws`` holds a member per waiter and id behind its wait, "<id>:<the waiter's
    # token>", and ``<lock>:w:<member>`` (PX LOCK_TTL, renewed while the wait lasts) says
    # it is alive: a holder reads the ids of the live members (``_redislua.WAITERS``), and
    # a member whose waiter died is dropped from the set. The ids are those of any store's
    # locks: a cycle through two servers, or a server and a directory, is seen on each
    # lock's own.

    def wait_id(self) -> int | None:
        """From the server's ``run_id`` and the lease's name: the same for every URL that
        reaches the server (``localhost`` or ``127.0.0.1``), different on another server
        with the same prefix."""
        server = _server_id(self.store)
        if server is None:
            return None
        return int(xxhash.xxh3_64_intdigest(server + b"\0" + self.name) >> (64 - WAIT_ID_BITS))

    def note_waiting(self, behind: Collection[int], ends: list[Callable[[], None]]) -> None:
        """A member per id ``behind`` in ``<lock>:ws`` and its key, renewed by the store's
        renewer while the wait lasts (a process that dies leaves them to expire), removed
        when it ends (the callable put in ``ends``)."""
        store = self.store
        note = self._note
        if note is None or note.ended:
            note = self._note = _WaitNote(store, self.name)
            ends.append(note.end)  # before anything is sent: an interrupt leaves no note
            store._renewer.add(note)
        new = [i for i in behind if i not in note.ids]
        gone = [i for i in note.ids if i not in behind]  # its waiter gave up: not behind
        if not new and not gone:
            return
        note.ids.update(new)
        note.ids.difference_update(gone)
        try:
            with store._errors("noting a wait"):
                note.send([note.edge(i) for i in new], [note.edge(i) for i in gone])
        except OSError as exc:
            # Not noted (a refused or lost request): sent again at the next look. Kept as
            # noted, they never were, and a cycle whose waiters' first notes all failed
            # waited lock_timeout (the renewer only extends what is there).
            note.ids.difference_update(new)
            logger.debug("cannot note a wait for %r: %s", self.name, exc)

    def waiters(self) -> Collection[int]:
        if not self.token:
            return ()
        store = self.store
        try:
            with store._errors("looking for a wait"):
                members = store._waiters(keys=[self.name + b":ws"])
        except OSError:
            return ()
        found = set()
        for m in members:
            try:
                found.add(int(m.partition(b":")[0], 16))
            except (TypeError, ValueError, AttributeError):  # not one of ours
                continue
        return found

    def renew(self) -> bool:
        """Extend the lock; False if it is no longer ours (it expired, maybe taken)."""
        token = self.token
        if not token:
            return False
        try:
            with self.store._errors("renewing a lock"):
                return bool(self.store._renew(keys=[self.name],
                                              args=[token, int(LOCK_TTL * 1000)]))
        except OSError as exc:  # keep trying: the commit checks the token
            logger.debug("cannot renew %r: %s", self.name, exc)
            return True


def _server_id(store: Any) -> bytes | None:
    """The server's ``run_id``; None if it cannot be had now. Asked again once the store's
    client has made a connection since it last asked (``connections``, counted by redis-py's
    connect: nothing is asked of the server to know it): a restarted server, or another one
    at the same address after a failover, has another ``run_id``. Before, asked once per
    store: a process that had asked before a restart named its locks by the old id, one
    started after it by the new, and a lock-order cycle between them was not seen (it cost
    lock_timeout). A connection made while the id is asked makes the next call ask again,
    so that an answer from the server before the change is not kept after it."""
    made = connections(store._client)
    known: tuple[int, bytes] | None = store.__dict__.get("_wait_server")
    if known is not None and known[0] == made:
        return known[1]
    try:
        with store._errors("asking the server's id"):
            try:
                info = store._client.info("server")
            except ResponseError:  # INFO refused (an ACL without @dangerous, as least
                info = {}  # privilege has it; rename-command): the URL names the server.
                # Before, no id: no wait was noted, and a lock-order cycle between
                # processes cost lock_timeout
        server = str(info.get("run_id") or store.location).encode()
    except (OSError, AttributeError):
        return None
    store.__dict__["_wait_server"] = (made, server)
    return server


class _WaitNote:
    """The members of ``<lock>:ws`` that say a caller waits for a lease while it holds
    others, or waits for such callers (``_RedisKeyLock.note_waiting``): its own (its
    token's, however many other waiters note the same ids), renewed with the leases,
    removed when the wait ends, left to expire if it dies."""

    def __init__(self, store: Any, lock: bytes) -> None:
        self.store = store
        self.lock = lock
        self.index = lock + b":ws"
        self.token = secrets.token_hex(8).encode()
        self.ids: set[int] = set()
        self.name = b"a wait for " + lock
        self.ended = False

    def edge(self, i: int) -> bytes:
        """This waiter's member for the id ``i``."""
        return b"%08x:%s" % (i, self.token)

    def send(self, noted: list[bytes], removed: list[bytes]) -> None:
        """Note ``noted``, remove ``removed``: one script (``NOTE_WAIT``)."""
        if noted or removed:
            self.store._note_wait(keys=[self.index],
                                  args=[int(LOCK_TTL * 1000), len(noted), *noted, *removed])

    def renew(self) -> bool:
        ids = list(self.ids)
        if self.ended or not ids:
            return True  # ended meanwhile (a disowned one is dropped with the fork)
        try:
            with self.store._errors("renewing a wait"):
                lost = self.store._renew_wait(
                    keys=[self.index], args=[int(LOCK_TTL * 1000), *map(self.edge, ids)])
        except OSError as exc:
            logger.debug("cannot renew %r: %s", self.name, exc)
            return True
        # Gone (this process stalled past LOCK_TTL, or the server lost them): noted again
        # at the waiter's next look. Before, renewed though gone, that is not at all.
        gone = {int(m.partition(b":")[0], 16) for m in lost if isinstance(m, bytes)}
        self.ids.difference_update(gone)
        return True

    def disown(self) -> None:
        """In a forked child: the parent's wait, not the child's (it expires unrenewed)."""
        self.ended, self.ids = True, set()

    def end(self) -> None:
        """The wait is over: removed now (a coroutine calls this in a worker thread), else
        by the renewer's thread (cut short by an interrupt, or the server failing: tried
        again for a while; a note left expires by itself, no longer renewed)."""
        ids, self.ids = list(self.ids), set()
        self.ended = True
        self.store._renewer.discard(self)
        if not ids:
            return
        remove = functools.partial(self._remove, ids)
        try:
            self.store._renewer.attempt(remove, LOCK_TTL)
        except BaseException:
            self.store._renewer.finish(remove, LOCK_TTL)
            raise

    def _remove(self, ids: list[int]) -> bool:
        try:
            with self.store._errors("ending a wait"):
                self.send([], [self.edge(i) for i in ids])
        except (ConnectionError, TimeoutError) as exc:
            if exc.errno is None:  # not the server's: the caller's signal handler's
                raise
            return False
        except OSError as exc:
            logger.debug("cannot remove %r (it expires by itself): %s", self.name, exc)
        return True
