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

import heapq
import itertools
import time
from collections.abc import Container, Iterable, Iterator, MutableSet, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ._errors import logger

if TYPE_CHECKING:  # the store imports the ledger, never the other way at run time
    from ._store import StoredEntry

EVICT_TO = 0.9  # eviction frees room down to this fraction of max_size, so it runs rarely
# Least-recently-used entries an eviction holds at once: one listing for each so many removed
EVICT_BATCH = 1_000
STUCK_BATCH = 1_000  # entries weighed (or removed) at once, as a listing is read
# Bins of access times by which an eviction far over the limit finds the entries surely
# among its victims (``Ledger._drop_oldest``)
TIME_BINS = 4096
# Entries whose removal was refused a store remembers (``Refusals``): the oldest refused are
# forgotten past it (and tried again)
REFUSED_MAX = 100_000
# seconds after which one entry of those is tried again (``Refusals``): removed, the others
# are too (the credentials, the hold or the mark changed)
REFUSED_RECHECK = 600.0


class Oldest(NamedTuple):
    """What ``SizedBackend._oldest`` found."""

    entries: list[StoredEntry]  # the least recently used, oldest first
    total: int  # bytes held: entries plus writers' reservations (``_census``)
    in_flight: int  # bytes of the reservations
    newest: float  # the latest access time of an entry listed (0.0: none)


class Refusals:
    """Entries whose removal was refused (``SizedBackend._unlink_refused``: no
    s3:DeleteObject, a legal hold, a file marked immutable, ``chattr +i``), as listed
    (location, size, time: one written since is another), kept by the store across
    evictions: each eviction keeps them as room taken, as the entries it foresees it may not
    remove (``Ledger._removable``), instead of trying them all again. Before, they were
    tried at every write: on S3 without s3:DeleteObject a GET and a refused DELETE each,
    the entries all refused and the cache growing (max_size=5000 and 1 kB values: 7
    requests a miss at the first write, 123 at the 60th; a cache of 10,000 entries, 20,000
    a miss). Once in ``REFUSED_RECHECK`` one of them is tried again (``due``); removed, all
    are forgotten. At most ``REFUSED_MAX``, the oldest refused forgotten first. No lock:
    each change is one dict operation (a signal handler's eviction inside another's never
    waits)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, int, float], None] = {}
        self.since = 0.0  # when one was last refused (monotonic)

    @staticmethod
    def listed(entry: StoredEntry) -> tuple[str, int, float]:
        return entry.location, entry.size, entry.accessed

    def add(self, refused: Sequence[StoredEntry]) -> None:
        entries = self.entries
        for entry in refused:
            listed = self.listed(entry)
            entries.pop(listed, None)
            entries[listed] = None
        self.since = time.monotonic()
        try:
            while len(entries) > REFUSED_MAX:
                entries.pop(next(iter(entries)), None)
        except (RuntimeError, StopIteration):  # another thread's change meanwhile
            pass

    def due(self) -> bool:
        """Whether one of them is to be tried again now."""
        return time.monotonic() - self.since >= REFUSED_RECHECK

    def forget(self) -> None:
        self.entries = {}


class Releasable(Protocol):
    def release(self) -> None: ...


class SizedBackend(Protocol):
    """What a backend gives the ledger."""

    max_size: int | None
    _recounted: bool  # the total was recounted in this process (set by the ledger)
    _census_whole: bool  # the last ``_census`` saw every entry's size (not: a stat failed)

    @property
    def _refusals(self) -> Refusals:
        """The entries whose removal was refused, kept by the store across evictions."""

    def _total_lock(self) -> Releasable:
        """Take the exclusive lock of the total (shared by processes); blocks."""

    def _read_total(self) -> int | None:
        """The stored total, or None if there is none (or it is damaged)."""

    def _write_total(self, total: int) -> None:
        """Store the total (atomically: a reader sees the old or the new one)."""

    def _census(self) -> int:
        """The bytes held: entries plus writers' reservations in flight (what dead writers
        left is removed on the way)."""

    def _oldest(self, limit: int, skip: Container[str]) -> Oldest:
        """The ``limit`` least recently used entries not at a location in ``skip``, oldest
        first (ties in listing order), and what the listing counted (``Oldest``)."""

    def _entries(self) -> Iterator[StoredEntry]:
        """Every entry (what dead writers left is removed on the way)."""

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


def least_recent(listing: Iterable[StoredEntry], limit: int, skip: Container[str]
                 ) -> tuple[list[StoredEntry], float]:
    """The ``limit`` least recently used entries of ``listing`` not at a location in
    ``skip``, oldest first (ties in listing order, as a stable sort), and the latest access
    time of any entry listed (0.0: none): memory for ``limit`` entries, not for all."""
    newest = 0.0

    def noted() -> Iterator[StoredEntry]:
        nonlocal newest
        for entry in listing:
            if entry.accessed > newest:
                newest = entry.accessed
            if not skip or entry.location not in skip:
                yield entry

    if limit:
        oldest = heapq.nsmallest(limit, noted(), key=lambda e: e.accessed)
    else:
        oldest = []
        for _ in noted():
            pass
    return oldest, newest


def choose_victims(
    entries: Sequence[StoredEntry], total: int, incoming: int, max_size: int,
    in_flight: int | None = None, going: bool = False,
) -> tuple[list[StoredEntry], int]:
    """The least-recently-used entries to remove so that ``incoming`` more bytes fit, and
    the total after removing them. ``total`` counts entries and reservations in flight;
    ``entries`` are all the entries, or the oldest of them with ``in_flight`` given;
    ``going``: an eviction is under way (its first batch went), down to its target even if
    there is room now.

    Nothing is evicted when there is room, or when writers in flight hold so much of it that
    evicting every entry would not help; otherwise entries go oldest access first down to
    ``EVICT_TO`` of ``max_size`` (just enough, when reservations hold most of it)."""
    if in_flight is None:
        in_flight = total - sum(e.size for e in entries)
    target = _target(total, incoming, max_size, in_flight, going)
    if target is None:
        return [], total
    victims = []
    for entry in sorted(entries, key=lambda e: e.accessed):
        if total <= target:
            break
        victims.append(entry)
        total -= entry.size
    return victims, total


def _target(total: int, incoming: int, max_size: int, in_flight: int,
            going: bool) -> int | None:
    """The total an eviction frees room down to (``choose_victims``), None for none."""
    if (total + incoming <= max_size and not going) or in_flight + incoming > max_size:
        return None
    target = int(max_size * EVICT_TO) - incoming
    if target < in_flight:  # writers in flight hold most of it: evict just enough
        target = max_size - incoming
    return target


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
            self.set(self.backend._census())
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
                self.set(self.backend._census())
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

    def _stuck(self, passed: Container[str]) -> list[StoredEntry]:
        """Every entry this user may not remove (``SizedBackend._removable``) but those at
        a location in ``passed``, weighed as the listing is read, a batch at a time."""
        stuck: list[StoredEntry] = []
        for chunk, removable in self._weighed(passed):
            stuck += [e for e, ok in zip(chunk, removable, strict=True) if not ok]
        return stuck

    def _weighed(self, passed: Container[str], weigh: bool = True,
                 seen: list[int] | None = None
                 ) -> Iterator[tuple[list[StoredEntry], list[bool]]]:
        """The entries not at a location in ``passed``, ``STUCK_BATCH`` at a time, each
        with whether this user may remove it (all True unless ``weigh``); ``seen[0]`` adds
        up the bytes of every entry listed, those in ``passed`` too."""

        def listed() -> Iterator[StoredEntry]:
            for entry in self.backend._entries():
                if seen is not None:
                    seen[0] += entry.size
                if entry.location not in passed:
                    yield entry

        listing = listed()
        while chunk := list(itertools.islice(listing, STUCK_BATCH)):
            yield chunk, self._removable(chunk) if weigh else [True] * len(chunk)

    def _removable(self, entries: Sequence[StoredEntry]) -> list[bool]:
        """``SizedBackend._removable``, False also for the entries whose removal was refused
        before (``Refusals``); once in ``REFUSED_RECHECK`` the first of them is tried again
        here: removed (or gone), all are forgotten."""
        removable = self.backend._removable(entries)
        refusals = self.backend._refusals
        if not refusals.entries:
            return removable
        refused = [refusals.listed(e) in refusals.entries for e in entries]
        if refusals.due() and any(refused):
            probe = entries[refused.index(True)]
            if self.backend._unlink_refused([probe])[1]:
                refusals.since = time.monotonic()
            else:
                logger.debug("removals refused before are tried again: %s went",
                              probe.location)
                refusals.forget()
                return removable
        return [ok and not no for ok, no in zip(removable, refused, strict=True)]

    def _refused(self, refused: Sequence[StoredEntry]) -> None:
        if refused:
            self.backend._refusals.add(refused)

    def evict(self, incoming: int) -> int:
        """Remove least-recently-used entries until ``incoming`` bytes fit; recount.

        Entries this user may not remove (another user's, in a cache shared by hand) stay,
        and count as room taken for good (``held``): others are chosen in their place, and
        the total keeps them. Before, the first such entry raised ``PermissionError`` (every
        write with max_size was returned but not stored, for good), and a total set as
        if they had gone would let the cache grow without bound.

        A listing keeps only the ``EVICT_BATCH`` oldest entries (``_oldest``). When all of
        them are to go and room is still short (a cache far over its limit), the entries
        surely among the victims go as two more listings find them (``_drop_oldest``), and
        the next listing's oldest settle the rest: memory for a batch, not for the cache,
        in exact LRU order. Before, every entry was listed and sorted: 246 MB of RSS for a
        write that evicted 274,000 entries of 300,000."""
        max_size = self.backend.max_size
        assert max_size is not None
        removed = 0
        held: list[StoredEntry] = []
        passed: set[str] = set()  # entries left where they are: not listed again
        full = False  # the others' entries alone hold the room
        weighed = False  # all the others' entries were weighed
        going = False  # a first batch went: the rest goes down to the same target
        total = 0
        while not full:
            listing = self.backend._oldest(EVICT_BATCH, passed)
            entries, total, in_flight = listing.entries, listing.total, listing.in_flight
            more = len(entries) == EVICT_BATCH  # the listing holds others after these
            far = False  # the victims reach past this batch
            while not full:
                kept = sum(e.size for e in held)
                victims, _ = choose_victims(entries, total - kept, incoming, max_size - kept,
                                            in_flight, going)
                if not victims:
                    break
                if more and len(victims) == len(entries):
                    far = True
                    if not weighed:  # the others' entries are weighed first, with the bins
                        break
                batch: list[StoredEntry] = []
                foreseen: list[StoredEntry] = []  # in folders this user may not write
                for victim, removable in zip(victims, self._removable(victims),
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
                    # A cache shared by hand: before removing anything of the user's, all
                    # the entries it may not remove are weighed, once (a stat and an access
                    # a shard); a private cache never gets here.
                    weighed = True
                    stuck = self._stuck(passed)  # the foreseen among them
                    unmoved = sum(e.size for e in held) + sum(e.size for e in stuck)
                    if unmoved + incoming > max_size:
                        foreseen, full = stuck, True
                if full:
                    # No eviction can make room: none of the user's own entries goes
                    # (before, those in LRU order before the others' that hold it went,
                    # and those after them too when the others' were taken for removable
                    # in a sticky folder, for a write then not stored all the same).
                    held += foreseen
                    break
                gone, refused, rewritten = (self.backend._unlink_refused(batch) if batch
                                            else ([], [], []))
                self._refused(refused)
                removed += self._gone(gone)
                # Entries another process removed first are gone all the same. One written
                # again since the census is there, not held: others are chosen in its
                # place, and the total keeps its bytes (its writer settles what its rename
                # replaced: taken off here as well, the total would fall short of the files).
                total -= (sum(e.size for e in batch) - sum(e.size for e in refused)
                          - sum(e.size for e in rewritten))
                if not foreseen and not refused and not rewritten:
                    break
                held += foreseen + refused
                passed.update(e.location for e in foreseen + refused + rewritten)
                tried = {id(e) for e in batch} | {id(e) for e in foreseen}
                entries = [e for e in entries if id(e) not in tried]
            if full or not far:
                break
            going = True
            dropped, full = self._drop_oldest(
                listing, incoming, passed, held, weigh=not weighed)
            weighed = True
            removed += dropped
        self.held = sum(e.size for e in held)
        self.set(total)
        return removed

    def _drop_oldest(self, listed: Oldest, incoming: int, passed: MutableSet[str],
                     held: list[StoredEntry], weigh: bool) -> tuple[int, bool]:
        """Remove the entries (not at a location in ``passed``) surely among the victims
        of an eviction whose batch ``listed`` was all chosen: those of the access times
        (``TIME_BINS`` bins from the batch's newest to the listing's) before the one in
        which the oldest reach the bytes still to free. One listing weighs the bins (and,
        if ``weigh``, the entries this user may not remove: when they alone hold the room,
        they are ``held`` and nothing goes), another removes, ``STUCK_BATCH`` at a time;
        entries this user may not remove, and those written again since, are left
        (``held``, ``passed``). Returns how many were removed, and whether the room is
        held."""
        max_size = self.backend.max_size
        assert max_size is not None
        low = listed.entries[-1].accessed
        width = (listed.newest - low) / TIME_BINS

        def bin_of(entry: StoredEntry) -> int:
            return min(TIME_BINS - 1, max(0, int((entry.accessed - low) / width)))

        bins = [0] * TIME_BINS
        stuck: list[StoredEntry] = []
        seen = [0]
        for chunk, removable in self._weighed(passed, weigh, seen):
            for entry, ok in zip(chunk, removable, strict=True):
                if not ok:
                    stuck.append(entry)
                elif width > 0:
                    bins[bin_of(entry)] += entry.size
        kept = sum(e.size for e in held) + sum(e.size for e in stuck)
        if stuck and kept + incoming > max_size:
            held += stuck
            return 0, True
        # The bytes as this listing found them: with no lock shared (by listings alone: S3,
        # a file store whose ledger lock cannot be made), another process may have evicted
        # since the batch was listed. Before, the batch listing's total was taken: the
        # bytes it was over were removed again from what the other had left (every entry
        # went, three processes evicting at once).
        total = listed.in_flight + seen[0]
        # The bytes still to free, counting every entry this user may not remove as kept:
        # never more than the victims hold.
        target = _target(total - kept, incoming, max_size - kept, listed.in_flight, True)
        if target is None or width <= 0:
            return 0, False
        excess = total - kept - target
        below, sure = 0, 0  # bytes, bins
        while sure < TIME_BINS and below + bins[sure] < excess:
            below += bins[sure]
            sure += 1
        if not sure:
            return 0, False
        removed = 0
        for chunk, removable in self._weighed(passed):
            batch = []
            for entry, ok in zip(chunk, removable, strict=True):
                if bin_of(entry) >= sure:
                    continue
                if ok:
                    batch.append(entry)
                else:
                    held.append(entry)
                    passed.add(entry.location)
            gone, refused, rewritten = self.backend._unlink_refused(batch) if batch else (
                [], [], [])
            self._refused(refused)
            removed += self._gone(gone)
            held += refused
            passed |= {e.location for e in refused + rewritten}
        return removed, False

    @staticmethod
    def _gone(gone: list[StoredEntry]) -> int:
        for entry in gone:
            logger.debug("evict %s %s (%d bytes, lru)", entry.function_dir, entry.key,
                         entry.size)
        return len(gone)


class _NoLock:
    def release(self) -> None:
        pass


class Unledgered:
    """A backend's ledger primitives (``SizedBackend``) with no total kept and no lock to
    take: each use counts a listing. ``Ledger.evict`` over it is the eviction of a store that
    keeps no total (S3: ``Store.evict`` by a listing) and of a file store whose ledger lock
    cannot be made (a full disk, a cache this user may not write): the same least-recently-
    used order, with memory for a batch, not for the cache (before, each of them listed
    every entry into memory and sorted them all)."""

    _census_whole = True  # nothing is stored for the recount to vouch for

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.max_size: int | None = backend.max_size
        self._recounted = False
        self._refusals: Refusals = backend._refusals

    def _total_lock(self) -> Releasable:
        return _NoLock()

    def _read_total(self) -> int | None:
        return None

    def _write_total(self, total: int) -> None:
        pass

    def _census(self) -> int:
        return int(self._backend._census())

    def _oldest(self, limit: int, skip: Container[str]) -> Oldest:
        oldest: Oldest = self._backend._oldest(limit, skip)
        return oldest

    def _entries(self) -> Iterator[StoredEntry]:
        entries: Iterator[StoredEntry] = self._backend._entries()
        return entries

    def _unlink(self, entries: Sequence[StoredEntry]) -> list[StoredEntry]:
        removed: list[StoredEntry] = self._backend._unlink(entries)
        return removed

    def _removable(self, entries: Sequence[StoredEntry]) -> list[bool]:
        removable: list[bool] = self._backend._removable(entries)
        return removable

    def _unlink_refused(
        self, entries: Sequence[StoredEntry]
    ) -> tuple[list[StoredEntry], list[StoredEntry], list[StoredEntry]]:
        done: tuple[list[StoredEntry], list[StoredEntry], list[StoredEntry]] = (
            self._backend._unlink_refused(entries))
        return done


def evict_listed(backend: Any, incoming: int) -> int:
    """``Ledger.evict`` by listings alone (``Unledgered``): how many entries were removed."""
    with Ledger(Unledgered(backend)) as ledger:
        return ledger.evict(incoming)
