"""Size accounting and the least-recently-used decision: the policy of ``max_size``.

A store with a size limit keeps a running total of its bytes (entries plus the reservations
of writers in flight) under a lock that every process shares. A writer reserves room for its
entry before writing it; when there is none, least-recently-used entries are evicted. The
ledger owns that logic once; a backend gives it only primitives (``SizedBackend``): a lock,
the stored total, a census of what is there, and removal of listed entries.

A store that keeps its own index atomically (the Redis store's Lua scripts) makes the same
decision on the server (``choose_victims`` there is the ``EVICT`` script), because moving it
out would let two clients evict and count at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from ._errors import logger

if TYPE_CHECKING:  # the store imports the ledger, never the other way at run time
    from ._store import StoredEntry

EVICT_TO = 0.9  # eviction frees room down to this fraction of max_size, so it runs rarely


class Releasable(Protocol):
    def release(self) -> None: ...


class SizedBackend(Protocol):
    """What a backend gives the ledger."""

    max_size: int | None
    _recounted: bool  # the total was recounted in this process (set by the ledger)
    _census_whole: bool  # the last ``_census`` saw every entry's size (not: a stat failed)

    def _total_lock(self) -> Releasable:
        """Take the exclusive lock of the total (shared by processes); blocks."""

    def _read_total(self) -> int | None:
        """The stored total, or None if there is none (or it is damaged)."""

    def _write_total(self, total: int) -> None:
        """Store the total (atomically: a reader sees the old or the new one)."""

    def _census(self) -> tuple[list[StoredEntry], int]:
        """Every entry, and the bytes held: entries plus writers' reservations in flight
        (what dead writers left is removed on the way)."""

    def _unlink(self, entries: Sequence[StoredEntry]) -> list[StoredEntry]:
        """Remove listed entries; the ones removed (another process may have been first)."""

    def _removable(self, entries: Sequence[StoredEntry]) -> list[bool]:
        """For each entry, False if this user certainly may not remove it (its folder is
        not writable to it, or sticky and neither the file nor the folder is the user's:
        another user's, in a cache shared by hand)."""

    def _unlink_refused(
        self, entries: Sequence[StoredEntry]
    ) -> tuple[list[StoredEntry], list[StoredEntry], list[StoredEntry]]:
        """``_unlink``, never raising for the entries this user may not remove (another
        user's, in a folder of a cache shared by hand that it cannot write): the ones
        removed, those refused (still there), and those left because they were written
        again since they were listed (fresh entries, whose writers account for them)."""


def choose_victims(
    entries: Sequence[StoredEntry], total: int, incoming: int, max_size: int
) -> tuple[list[StoredEntry], int]:
    """The least-recently-used entries to remove so that ``incoming`` more bytes fit, and
    the total after removing them. ``total`` counts entries and reservations in flight.

    Nothing is evicted when there is room, or when writers in flight hold so much of it that
    evicting every entry would not help; otherwise entries go oldest access first down to
    ``EVICT_TO`` of ``max_size`` (just enough, when reservations hold most of it)."""
    in_flight = total - sum(e.size for e in entries)
    if total + incoming <= max_size or in_flight + incoming > max_size:
        return [], total
    target = int(max_size * EVICT_TO) - incoming
    if target < in_flight:  # writers in flight hold most of it: evict just enough
        target = max_size - incoming
    victims = []
    for entry in sorted(entries, key=lambda e: e.accessed):
        if total <= target:
            break
        victims.append(entry)
        total -= entry.size
    return victims, total


class Ledger:
    """The store's total size, read and written under the backend's total lock; one per
    use (``with Ledger(backend) as ledger:``), so threads never share one.

    Only an estimate between recounts (a crash between a write and the ledger update, or
    files removed by hand, make it drift): every eviction recounts, and the first use in a
    process recounts (stores without max_size write without counting), so a drift costs at
    most one early eviction or one late one."""

    def __init__(self, backend: SizedBackend) -> None:
        self.backend = backend
        self.total: int | None = None
        self._dirty = False
        # Bytes of entries the last eviction could not remove (``evict``): room no
        # eviction by this user will free.
        self.held = 0

    def __enter__(self) -> Ledger:
        self._lock = self.backend._total_lock()
        try:
            self.total = self.backend._read_total()
            # Not trusted until this process recounts it (``set`` says it did). Before, the
            # first holding said so even if it counted nothing (a ``cache_delete`` of a key
            # with no entry): the process then trusted a total left behind for good.
            if not self.backend._recounted:
                self.total = None
            self._dirty = False
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._dirty:
                self.backend._write_total(max(self.total or 0, 0))
        finally:
            try:
                self._lock.release()
            except BaseException:  # an interrupt inside it (a signal): once more, then on
                self._lock.release()
                raise

    def _known(self) -> int:
        if self.total is None:
            self.set(self.backend._census()[1])
        assert self.total is not None
        return self.total

    def add(self, delta: int) -> None:
        self.total = self._known() + delta
        self._dirty = True

    def settle(self, delta: int) -> None:
        """Record a change already made on disk (an entry removed or replaced, a temporary
        file given back). A total about to be recounted (this process's first use, or none
        stored) counts the files as they are now, the change included: it is not applied
        once more on top."""
        if self.total is None:
            try:
                self.set(self.backend._census()[1])
            except OSError as exc:
                # The files cannot be counted now (EIO listing them): the change is made,
                # and the total, left as it is, is counted at the next use (not recounted
                # yet). Before, the error was raised by the removal that was already made.
                if exc.errno is None:  # not the file system's: the caller's signal handler's
                    raise
                logger.debug("no recount of the size ledger: %s", exc)
        else:
            self.add(delta)

    def set(self, total: int) -> None:
        """Store ``total``, the bytes as counted now: the recount of the process's first use
        is made, unless the count missed the size of a file it listed (a ``stat`` failing:
        EIO): then the next use counts again. Before, the total, short by that file, was
        trusted by every later write of the process."""
        self.total = total
        self._dirty = True
        self.backend._recounted = self.backend._census_whole

    def fits(self, size: int) -> bool:
        """True if ``size`` more bytes fit under max_size, after evicting if needed."""
        max_size = self.backend.max_size
        assert max_size is not None
        if self._known() + size <= max_size:
            return True
        self.evict(size)
        return self._known() + size <= max_size

    def _stuck(self, entries: Sequence[StoredEntry]) -> list[StoredEntry]:
        """The ``entries`` this user may not remove (``SizedBackend._removable``)."""
        return [e for e, removable in zip(entries, self.backend._removable(entries),
                                          strict=True) if not removable]

    def evict(self, incoming: int) -> int:
        """Remove least-recently-used entries until ``incoming`` bytes fit; recount.

        Entries this user may not remove (another user's, in a cache shared by hand) stay,
        and count as room taken for good (``held``): others are chosen in their place, and
        the total keeps them. Before, the first such entry raised ``PermissionError`` (every
        write with ``max_size`` was returned but not stored, for good), and a total set as
        if they had gone would let the cache grow without bound."""
        max_size = self.backend.max_size
        assert max_size is not None
        entries, total = self.backend._census()
        removed: list[StoredEntry] = []
        held: list[StoredEntry] = []
        full = False  # the others' entries alone hold the room
        weighed = False  # all the others' entries were weighed (``_stuck``)
        while not full:
            kept = sum(e.size for e in held)
            victims, _ = choose_victims(entries, total - kept, incoming, max_size - kept)
            if not victims:
                break
            batch: list[StoredEntry] = []
            foreseen: list[StoredEntry] = []  # in folders this user may not write
            for victim, removable in zip(victims, self.backend._removable(victims),
                                         strict=True):
                if removable:
                    batch.append(victim)
                    continue
                foreseen.append(victim)
                kept += victim.size
                if kept + incoming > max_size:
                    full = True
                    break
            if foreseen and not full and not weighed:
                # A cache shared by hand: before removing anything of the user's, all the
                # entries it may not remove are weighed, once (a stat and an access a
                # shard); a private cache never gets here.
                weighed = True
                stuck = self._stuck(entries)  # the foreseen among them
                unmoved = sum(e.size for e in held) + sum(e.size for e in stuck)
                if unmoved + incoming > max_size:
                    foreseen, full = stuck, True
            if full:
                # No eviction can make room: none of the user's own entries goes (before,
                # those in LRU order before the others' that hold it went, and those after
                # them too when the others' were taken for removable in a sticky folder,
                # for a write then not stored all the same).
                held += foreseen
                break
            gone, refused, rewritten = (self.backend._unlink_refused(batch) if batch
                                        else ([], [], []))
            removed += gone
            # Entries another process removed first are gone all the same. One written
            # again since the census is there, not held: others are chosen in its place,
            # and the total keeps its bytes (its writer settles what its rename replaced:
            # taken off here as well, the total would fall short of the files).
            total -= (sum(e.size for e in batch) - sum(e.size for e in refused)
                      - sum(e.size for e in rewritten))
            if not foreseen and not refused and not rewritten:
                break
            held += foreseen + refused
            tried = {id(e) for e in batch} | {id(e) for e in foreseen}
            entries = [e for e in entries if id(e) not in tried]
        for entry in removed:
            logger.debug("evict %s %s (%d bytes, lru)", entry.function_dir, entry.key,
                         entry.size)
        self.held = sum(e.size for e in held)
        self.set(total)
        return len(removed)
