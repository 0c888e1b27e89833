"""A census of a cache: every entry's header read once and totalled by function.

What ``memojar ls`` and ``info`` print. Nothing is unpickled. An entry counts as
incompatible when it was written for other code or another version than its function's
newest entry in the same scope and Python, and as "other Python" when only another Python
version can use it (``memojar._cache.judge``): kept by ``prune`` unless asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import _entry
from ._cache import NEWER_FORMAT, OTHER_PYTHON, STALE, SUPERSEDED, Cache, judge
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
    incompatible: int = 0  # superseded by newer code or version (same scope and Python)
    other_python: int = 0  # readable by another Python version only

    def add(self, header: _entry.Header, size: int, verdict: str) -> None:
        self.entries += 1
        self.bytes += size
        created = header.created
        self.oldest = created if self.oldest is None else min(self.oldest, created)
        self.newest = created if self.newest is None else max(self.newest, created)
        if verdict == SUPERSEDED:
            self.incompatible += 1
        elif verdict == OTHER_PYTHON:
            self.other_python += 1
        elif verdict == STALE:
            self.stale += 1

    def json(self) -> dict[str, Any]:
        return {
            "function": self.function, "entries": self.entries, "bytes": self.bytes,
            "oldest": iso(self.oldest), "newest": iso(self.newest),
            "stale": self.stale, "incompatible": self.incompatible,
            "other_python": self.other_python,
        }


@dataclass
class Census:
    """The whole cache, totalled from entry headers (nothing is unpickled)."""

    directory: str
    entries: int = 0
    bytes: int = 0
    unreadable: int = 0  # corrupt, truncated, or of an older entry format
    newer_format: int = 0  # of a newer memojar's entry format: kept for it
    functions: dict[str, FunctionStats] = field(default_factory=dict)

    @property
    def stale(self) -> int:
        return sum(f.stale for f in self.functions.values())

    @property
    def incompatible(self) -> int:
        return sum(f.incompatible for f in self.functions.values())

    @property
    def other_python(self) -> int:
        return sum(f.other_python for f in self.functions.values())


def take_census(cache: Cache, progress: Callable[[int], None] | None = None) -> Census:
    """Read every entry's header once and total them by function, as ``prune`` judges.

    ``progress``, if given, is called with the number of entries read so far, once per entry.
    """
    census = Census(cache.directory)
    functions = census.functions
    entries: Iterable[StoredEntry] = cache.store.scan()
    if progress is not None:
        entries = counted(entries, progress)
    for stored, header, verdict in judge(entries, time.time()):
        census.entries += 1
        census.bytes += stored.size
        if header is None:
            if verdict == NEWER_FORMAT:
                census.newer_format += 1
            else:
                census.unreadable += 1
            continue
        stats = functions.get(header.function)
        if stats is None:
            stats = functions[header.function] = FunctionStats(header.function)
        stats.add(header, stored.size, verdict)
    return census


def counted(entries: Iterable[StoredEntry], progress: Callable[[int], None]
            ) -> Iterator[StoredEntry]:
    """``entries``, calling ``progress(n)`` as the n-th passes."""
    for n, stored in enumerate(entries, 1):
        progress(n)
        yield stored
