"""Sorting more rows than memory should hold: sorted runs in a temporary file, merged.

``memojar ls FUNCTION`` prints a function's entries newest first; a cache of a million
entries is a million rows. ``SortedRuns`` keeps ``RUN`` rows in memory, sorts them, and
writes them (``marshal``: rows of plain values, nothing that runs code when read back,
``CHUNK`` at a time) to an anonymous temporary file; reading merges
the runs, a chunk of each in memory. The order is that of a stable sort of every row
(rows of equal keys in the order added), as ``sorted`` gives.
"""

from __future__ import annotations

import heapq
import marshal
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from ._errors import logger

RUN = 10_000  # rows sorted in memory at once; more go to the temporary file a run at a time
CHUNK = 100  # rows of a run written (and read back) together


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
        self._file: IO[bytes] | None = None
        self._runs: list[tuple[int, int]] = []  # (start, end) of each run in the file

    def add(self, row: Any) -> None:
        self._rows.append(row)
        self._sorted = False
        if len(self._rows) >= self._run:
            self._spill()

    def _spill(self) -> None:
        self._rows.sort(key=self._key)
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 - kept until closed
            start = self._file.seek(0, 2)
            for at in range(0, len(self._rows), CHUNK):
                marshal.dump(self._rows[at : at + CHUNK], self._file)
            self._runs.append((start, self._file.tell()))
        except OSError as exc:
            # No room for it: the rows stay in memory (the runs written are whole and
            # read as they are; a part of this one written is never read).
            logger.debug("listing kept in memory: no temporary file (%s)", exc)
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
            file.seek(at)
            chunk = marshal.load(file)
            at = file.tell()
            yield from chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # The rows are read (printed) after the listing that made them returns, by whoever
    # holds them: the file goes with them, closed, never left to the interpreter's warning.
    __del__ = close
