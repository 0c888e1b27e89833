"""A census of a cache: every entry's header read once and totalled by function.

What ``memojar ls`` and ``info`` print. Nothing is unpickled. An entry counts as
incompatible when no process of this Python can use it, or when it was written for other
code or another version than its function's newest entry (as ``Cache.prune`` judges it).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import _entry
from ._cache import Cache
from ._entry import Miss
from ._report import iso
from ._store import StoredEntry


@dataclass
class FunctionStats:
    """One function's entries, totalled from their headers."""

    function: str
    entries: int = 0
    bytes: int = 0
    oldest: float | None = None
    newest: float | None = None
    stale: int = 0
    incompatible: int = 0
    # Usable entries by (fingerprint, version), and the newest one's: entries of any other
    # code or version are superseded, i.e. incompatible (as Cache.prune judges them).
    usable: Counter[tuple[str, str]] = field(default_factory=Counter)
    latest: tuple[float, str, str] | None = None

    def add(self, header: _entry.Header, size: int, now: float) -> None:
        self.entries += 1
        self.bytes += size
        created = header.created
        self.oldest = created if self.oldest is None else min(self.oldest, created)
        self.newest = created if self.newest is None else max(self.newest, created)
        if header.incompatible():
            self.incompatible += 1
        elif header.stale(now):
            self.stale += 1
        else:
            self.usable[(header.fingerprint, header.version)] += 1
            if self.latest is None or created > self.latest[0]:
                self.latest = (created, header.fingerprint, header.version)

    def finish(self) -> None:
        if self.latest is not None:
            current = self.usable[self.latest[1:]]
            self.incompatible += sum(self.usable.values()) - current

    def json(self) -> dict[str, Any]:
        return {
            "function": self.function, "entries": self.entries, "bytes": self.bytes,
            "oldest": iso(self.oldest), "newest": iso(self.newest),
            "stale": self.stale, "incompatible": self.incompatible,
        }


@dataclass
class Census:
    """The whole cache, totalled from entry headers (nothing is unpickled)."""

    directory: str
    entries: int = 0
    bytes: int = 0
    unreadable: int = 0  # corrupt, truncated, or of another entry format
    functions: dict[str, FunctionStats] = field(default_factory=dict)

    @property
    def stale(self) -> int:
        return sum(f.stale for f in self.functions.values())

    @property
    def incompatible(self) -> int:
        return sum(f.incompatible for f in self.functions.values())


def take_census(cache: Cache) -> Census:
    """Read every entry's header once and total them by function."""
    census = Census(cache.directory)
    now = time.time()
    functions = census.functions
    for stored in cache.store.scan():
        census.entries += 1
        census.bytes += stored.size
        header = header_of(stored)
        if header is None:
            census.unreadable += 1
            continue
        stats = functions.get(header.function)
        if stats is None:
            stats = functions[header.function] = FunctionStats(header.function)
        stats.add(header, stored.size, now)
    for stats in functions.values():
        stats.finish()
    return census


def header_of(stored: StoredEntry) -> _entry.Header | None:
    """The entry's header, or None if it is unreadable or truncated."""
    try:
        header = _entry.read_header(stored.head)
    except Miss:
        return None
    return header if header.size == stored.size else None
