"""Sorting more rows than memory should hold: sorted runs in a temporary file, merged.

``memojar ls FUNCTION`` prints a function's entries newest first; a cache of a million
entries is a million rows. ``SortedRuns`` keeps ``RUN`` rows in memory, sorts them, and
writes them (``marshal``: rows of plain values, nothing that runs code when read back,
``CHUNK`` at a time) to an anonymous temporary file; reading merges
the runs, a chunk of each in memory. The order is that of a stable sort of every row
(rows of equal keys in the order added), as ``sorted`` gives.
"""

from __future__ import annotations

import errno
import heapq
import marshal
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from ._errors import logger

RUN = 10_000  # rows sorted in memory at once; more go to the temporary file a run at a time
CHUNK = 100  # rows of a run written (and read back) together
_LENGTH = struct.Struct("<I")  # before each chunk written: its length


class Unreadable(OSError):
    """The temporary file of a ``SortedRuns`` could not be read back (EIO on the disk under
    ``$TMPDIR``): the rows after the last read are lost to this reading."""


class SortedRuns:
    """Rows added one by one and read back sorted by ``key``, as often as asked, with memory
    for ``RUN`` rows and a chunk of each run. A cache of under ``RUN`` rows writes no file;
    where no temporary file can be written (a full or read-only ``$TMPDIR``) the rest is
    kept in memory, as before."""

    def __init__(self, key: Callable[[Any], Any], run: int | None = None) -> None:
        self._key = key
        self._run = RUN if run is None else run
        self._rows: list[Any] = []  # the rows not written, in the order added
        self._sorted = True  # ``_rows`` is sorted (it is, once read)
        self._file: IO[bytes] | None = None  # unbuffered: nothing left to write later
        self._end = 0  # where the next run goes (past a run not written whole)
        self._runs: list[tuple[int, int]] = []  # (start, end) of each run in the file

    def add(self, row: Any) -> None:
        self._rows.append(row)
        self._sorted = False
        if len(self._rows) >= self._run:
            self._spill()

    def _spill(self) -> None:
        self._rows.sort(key=self._key)
        start = self._end
        try:
            if self._file is None:
                # Unbuffered: a full disk is met here, by the write, with the rows still in
                # memory. Before, the last bytes of a run waited in the file's buffer, and
                # its write failed as the rows were read back (printed): the listing ended
                # 'cannot write to stdout (No space left on device)', status 1, its closing
                # said an ignored exception, where a listing held in memory had room.
                self._file = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 - closed
            fd = self._file.fileno()
            for at in range(0, len(self._rows), CHUNK):
                data = marshal.dumps(self._rows[at : at + CHUNK])
                self._end += _write_at(fd, _LENGTH.pack(len(data)) + data, self._end)
            self._runs.append((start, self._end))
        except OSError as exc:
            if exc.errno is None:  # not the file system's: the caller's signal handler's
                raise
            # No room for it: the rows stay in memory (the runs written are whole and
            # read as they are; a part of this one written is never read).
            logger.debug("listing kept in memory: no temporary file (%s)", exc)
            self._end = start
            self._run = 2**62
            self._sorted = True
            return
        self._rows = []
        self._sorted = True

    def __iter__(self) -> Iterator[Any]:
        if not self._sorted:
            self._rows.sort(key=self._key)
            self._sorted = True
        if not self._runs:
            return iter(self._rows)
        # The rows in memory were added after every run: last among equal keys.
        runs = [self._read(start, end) for start, end in self._runs]
        return heapq.merge(*runs, iter(self._rows), key=self._key)

    def _read(self, start: int, end: int) -> Iterator[Any]:
        file = self._file
        assert file is not None
        at = start
        while at < end:
            try:
                (length,) = _LENGTH.unpack(_read_at(file.fileno(), _LENGTH.size, at))
                chunk = marshal.loads(_read_at(file.fileno(), length, at + _LENGTH.size))
            except OSError as exc:
                # Told from a write's error by whoever prints the rows as they are read:
                # before, ``memojar ls`` said 'cannot write to stdout (Input/output error)'.
                if exc.errno is None and not isinstance(exc, Unreadable):
                    raise  # not the file system's: the caller's signal handler's
                raise Unreadable(exc.errno, f"cannot read back the listing from its "
                                 f"temporary file in {tempfile.gettempdir()} "
                                 f"({exc.strerror or exc})") from exc
            yield from chunk
            at += _LENGTH.size + length

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # The rows are read (printed) after the listing that made them returns, by whoever
    # holds them: the file goes with them, closed, never left to the interpreter's warning.
    __del__ = close


def _write_at(fd: int, data: bytes, at: int) -> int:
    """All of ``data`` written at offset ``at`` of ``fd`` (a write may write part of it),
    or the ``OSError`` that stopped it: its length."""
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, at)
        if not done:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, at = view[done:], at + done
    return len(data)


def _read_at(fd: int, length: int, at: int) -> bytes:
    """``length`` bytes at offset ``at`` of ``fd``, written there by ``_write_at``."""
    data = b""
    while len(data) < length:
        got = os.pread(fd, length - len(data), at + len(data))
        if not got:
            raise Unreadable(f"it ends at {at + len(data)}")
        data += got
    return data
