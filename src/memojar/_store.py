"""The store interface: where entries live, as opaque bytes.

A store reads, writes, locks, lists and deletes entries addressed by (function, key). It
never looks inside an entry (that is ``_entry``'s job) and never imports the decorator.
``FileStore`` keeps entries in a directory; a Redis store implements the same methods.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from . import _entry
from ._entry import Miss


class StoredEntry(NamedTuple):
    """One entry as a store lists it: where it is and its first bytes (its header)."""

    function_dir: str  # the store's own name for the function's namespace
    key: str
    size: int
    accessed: float  # when it was last read or written (seconds since the epoch)
    head: bytes  # at least the entry's header, when the listing asked for heads
    location: str  # a path or URL, for messages


def header_of(stored: StoredEntry) -> _entry.Header | None:
    """A listed entry's header, or None if it is unreadable or not the length it promises."""
    try:
        header = _entry.read_header(stored.head)
    except Miss:
        return None
    return header if header.size == stored.size else None


class KeyLock(abc.ABC):
    """A lock on one key, held while its value is computed and stored."""

    @abc.abstractmethod
    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False at once if it is held."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock back."""

    def __enter__(self) -> KeyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Store(abc.ABC):
    """Bytes in, bytes out, addressed by function name and key."""

    location: str
    max_size: int | None
    # Whether entries are signed above the store (the cache has a secret): then the
    # signature decides what is trusted, and the store neither refuses entries of other
    # users nor warns that entries are unauthenticated. The cache sets it.
    signed: bool = False
    # Whether calls wait on the network: coroutine functions then run every call of the
    # store in a worker thread, so the event loop never waits for a server.
    remote: bool = False

    @abc.abstractmethod
    def read(self, function: str, key: str) -> Any | None:
        """The whole entry as a buffer (bytes-like or mmap), or None if there is none.

        Never raises for a missing or unreadable entry: both are None. This is the hit path.
        """

    @abc.abstractmethod
    def write(
        self, function: str, key: str, chunks: Sequence[Any], expires: float | None = None
    ) -> int:
        """Store the entry made of ``chunks`` atomically; return its size.

        Readers see the old entry or the new one, never a part. ``expires`` (seconds since
        the epoch) lets a store with its own expiry drop the entry then; the entry's header
        says the same, and is what decides. Raises ``OSError`` on failure (a store turns its
        backend's errors into ``OSError``), leaving no partial entry behind.
        """

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
        """A blocking lock for computing one key, shared by threads, processes and hosts.

        A holder that dies releases it (by the kernel or by expiry) within seconds.
        """

    @abc.abstractmethod
    def scan(self, function: str | None = None, heads: bool = True) -> Iterator[StoredEntry]:
        """Every entry (of one function), with its header bytes when ``heads``."""

    @abc.abstractmethod
    def remove(self, entries: Sequence[StoredEntry]) -> int:
        """Remove listed entries (as ``scan`` gave them); return how many were removed."""

    @abc.abstractmethod
    def cleanup(self) -> int:
        """Remove what crashed writers left behind (temporary files, idle locks)."""

    @abc.abstractmethod
    def evict(self, incoming: int = 0) -> int:
        """Remove least-recently-used entries until ``incoming`` more bytes fit ``max_size``."""

    def read_note(self, function: str) -> bytes | None:
        """A small note kept beside a function's entries (not an entry), or None.

        The decorator notes the identity of the code that last swept the function's old
        entries, so a new process whose code is unchanged need not list them again. A store
        that keeps no notes returns None: the sweep then lists the entries every time.
        """
        return None

    def write_note(self, function: str, note: bytes) -> None:  # noqa: B027 - optional
        """Keep ``note`` beside a function's entries (see ``read_note``); may do nothing."""

    def close(self) -> None:  # noqa: B027 - an optional hook: nothing to release by default
        """Release connections or handles; the store may not be used afterwards."""
