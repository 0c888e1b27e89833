"""The file store on a FAT file system (USB drives, SD cards), mounted through FUSE: no
``O_TMPFILE``, no hard or symbolic links, no ``chmod``, a ``ftruncate`` that cannot grow a
file, names that differ only in case are one name."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from memojar import Cache, MemojarWarning


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


CALLS: list[str] = []


def f(x: int) -> str:
    CALLS.append("f")
    return f"f{x}"


def F(x: int) -> str:  # the point: the name of f in capitals
    CALLS.append("F")
    return f"F{x}"


def test_functions_whose_names_differ_in_case_keep_their_own_entries(fat_dir: Path) -> None:
    # One folder for test_fat.f and test_fat.F on a file system that ignores case: each
    # call replaced the other function's entry of the same key, and every call missed.
    cache = Cache(fat_dir / "cache")
    cf, cF = cache.cached(f), cache.cached(F)
    CALLS.clear()
    assert [cf(1), cF(1), cf(1), cF(1)] == ["f1", "F1", "f1", "F1"]
    assert CALLS == ["f", "F"]
    assert sorted(e.function for e in cache.entries()) == ["test_fat.F", "test_fat.f"]
    assert cache.clear("test_fat.F") == 1
    assert cf(1) == "f1" and CALLS == ["f", "F"]


def test_clear_by_name_takes_only_its_entries_from_a_folder_named_before(
        fat_dir: Path) -> None:
    # Before case-safe names, F's entries were in the folder of its plain name: on FAT the
    # folder of f. Clearing "test_fat.F" by name removes those, and none of f's.
    root = fat_dir / "cache"
    cache = Cache(root)
    cf, cF = cache.cached(f), cache.cached(F)
    cf(1), cF(2)
    [new] = root.glob("test_fat.F-*/*/*.pkl")
    old = root / "test_fat.F" / new.parent.name  # the name it had: f's folder here
    old.mkdir(exist_ok=True)
    new.rename(old / new.name)
    CALLS.clear()
    assert cF(2) == "F2" and CALLS == ["F"]  # a clean miss: written in its own folder
    assert [e.function for e in cache.entries("test_fat.F")] == ["test_fat.F"] * 2
    assert cache.clear("test_fat.F") == 2
    assert [e.function for e in cache.entries()] == ["test_fat.f"]


def test_max_size_evicts_the_least_recently_read_entry(fat_dir: Path) -> None:
    # FAT keeps no access times: a hit's stamp of one was dropped, and max_size evicted the
    # least recently written entry however recently it was read. FAT's times are 2 s apart.
    cache = Cache(fat_dir / "cache", max_size=8_000)  # two entries, then down to 7,200

    @cache.cached
    def blob(x: int) -> bytes:
        return bytes([x]) * 3_000

    blob(1)
    time.sleep(2.1)
    blob(2)
    time.sleep(2.1)
    blob(1)  # a hit: 1 is the most recently used now
    time.sleep(2.1)
    blob(3)  # no room for three: one goes
    assert (blob.cache_contains(1), blob.cache_contains(2), blob.cache_contains(3)) == (
        True, False, True)


def test_memory_tier_off_without_hard_links_says_why(fat_dir: Path) -> None:
    # Its stamp is made by a hard link: FAT has none. The warning named no cause.
    cache = Cache(fat_dir / "cache")
    with pytest.warns(MemojarWarning, match=r"memory= of .*double is not used: .*hard link"):

        @cache.cached(memory=8)
        def double(x: int) -> int:
            return 2 * x

    assert [double(2), double(2)] == [4, 4]
    assert double.cache_info()[:2] == (1, 1)  # the hit from the directory


def test_a_files_path_edited_with_its_size_and_mtime_kept_recomputes(
        fat_dir: Path, tmp_path: Path) -> None:
    # FAT keeps no change time: its ctime is the modification time, which os.utime sets
    # back (and fusefat does not even move it on a write). The digest kept by stat was
    # trusted, and the edited file's call returned the value of its old content.
    data = fat_dir / "data.txt"
    data.write_text("alpha")
    old = time.time() - 60
    os.utime(data, (old, old))  # hashed long after its last change: a digest kept by stat

    @Cache(tmp_path / "cache").cached(files=("path",))
    def read(path: str) -> str:
        return Path(path).read_text()

    assert read(str(data)) == "alpha"
    before = data.stat()
    data.write_text("omega")  # same size
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = data.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns)
    assert read(str(data)) == "omega"
