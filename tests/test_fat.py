"""The file store on a FAT file system (USB drives, SD cards), mounted through FUSE: no
``O_TMPFILE``, no hard or symbolic links, no ``chmod``, a ``ftruncate`` that cannot grow a
file, names that differ only in case are one name."""

from __future__ import annotations

from pathlib import Path

from memojar import Cache


def test_max_size_cache_stores_its_results(fat_dir: Path) -> None:
    # The reservation extended the temporary file with ftruncate: EPERM there, and every
    # result of a cache with max_size was "returned but not cached" (a warning, an error here).
    cache = Cache(fat_dir / "cache", max_size=1_000_000)
    calls: list[int] = []

    @cache.cached
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert calls == [3, 4]
    assert cache.stats().entries == 2
