"""The Redis store's compute lock: a lease (``SET NX PX`` with a random token), renewed
by one thread per store and process while held, expired ``LOCK_TTL`` seconds after a holder
that died, and released only by its holder. A lease lost while held (a stall longer than
``LOCK_TTL``) is noticed: the renewer logs it, and the store's commit refuses the write."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any

import xxhash

from ._errors import logger
from ._store import KeyLock

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

    poll_max = LOCK_POLL_MAX

    def _try(self) -> bool:
        store = self.store
        # The token is this lock's before the SET is sent: an interrupt (KeyboardInterrupt, a
        # signal handler's exception) between the server's reply and the end of this method
        # leaves a lease that ``release`` (compare-and-delete by the token) still removes.
        self.token = token = secrets.token_hex(16).encode()
        with store._errors("locking"):
            # SET NX PX, or held already by this token (a retry of a SET whose reply a
            # dropped connection lost): see ``_redislua.ACQUIRE``
            if not store._acquire(keys=[self.name], args=[token, int(LOCK_TTL * 1000)]):
                self.token = b""
                return False
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

    def _edge(self, held: _RedisKeyLock) -> bytes:
        """The key that says a caller holding ``held`` waits for this lock."""
        return self.name + b":w:" + xxhash.xxh3_64_hexdigest(held.name).encode()

    def note_waiting(self, holding: list[KeyLock], ends: list[Callable[[], None]]) -> None:
        """One key per held lease of the same server (``_edge``), PX LOCK_TTL, renewed by
        the store's renewer while the wait lasts (a process that dies leaves it to expire),
        removed when it ends (the callable put in ``ends``)."""
        store = self.store
        held = [h for h in holding if isinstance(h, _RedisKeyLock) and h.token
                and h.store is store]
        if not held:
            return
        note = _WaitNote(store, [self._edge(h) for h in held])
        ends.append(note.end)  # before anything is sent: an interrupt leaves no note
        try:
            with store._errors("noting a wait"):
                pipe = store._client.pipeline(transaction=False)
                for name in note.names:
                    pipe.set(name, b"1", px=int(LOCK_TTL * 1000))
                pipe.execute()
        except OSError as exc:
            logger.debug("cannot note a wait for %r: %s", self.name, exc)
            return
        store._renewer.add(note)

    def waited_back(self, waited: KeyLock) -> bool:
        if not self.token or not isinstance(waited, _RedisKeyLock) or waited.store is not \
                self.store:
            return False
        try:
            with self.store._errors("looking for a wait"):
                return bool(self.store._client.exists(self._edge(waited)))
        except OSError:
            return False

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


class _WaitNote:
    """The keys that say a caller waits for a lease while it holds others
    (``_RedisKeyLock.note_waiting``): renewed with the leases, removed when the wait ends."""

    def __init__(self, store: Any, names: list[bytes]) -> None:
        self.store = store
        self.names = names
        self.name = b"a wait for " + (names[0].rsplit(b":w:", 1)[0] if names else b"")

    def renew(self) -> bool:
        names = self.names
        if not names:
            return False
        try:
            with self.store._errors("renewing a wait"):
                pipe = self.store._client.pipeline(transaction=False)
                for name in names:
                    pipe.pexpire(name, int(LOCK_TTL * 1000))
                pipe.execute()
        except OSError as exc:
            logger.debug("cannot renew %r: %s", self.name, exc)
        return True

    def disown(self) -> None:
        """In a forked child: the parent's wait, not the child's (it expires unrenewed)."""
        self.names = []

    def end(self) -> None:
        """The wait is over: removed now (a coroutine calls this in a worker thread), else
        by the renewer's thread (cut short by an interrupt, or the server failing: tried
        again for a while; a note left expires by itself, no longer renewed)."""
        names, self.names = self.names, []
        self.store._renewer.discard(self)
        if not names:
            return
        remove = functools.partial(self._remove, names)
        try:
            self.store._renewer.attempt(remove, LOCK_TTL)
        except BaseException:
            self.store._renewer.finish(remove, LOCK_TTL)
            raise

    def _remove(self, names: list[bytes]) -> bool:
        try:
            with self.store._errors("ending a wait"):
                self.store._client.delete(*names)
        except (ConnectionError, TimeoutError):
            return False
        except OSError as exc:
            logger.debug("cannot remove %r (it expires by itself): %s", self.name, exc)
        return True
