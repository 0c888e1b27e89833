"""``Cache``: clear, prune, entries, stats, max_size, secret, default directory, modes."""

from __future__ import annotations

import datetime as dt
import os
import random
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memojar._decorator
from conftest import traced_peak
from memojar import Cache, CacheInfo, EntryInfo, MemojarWarning, _entry, cached
from memojar._cache import _cache_for


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    @staticmethod
    def perf_counter() -> float:
        return time.perf_counter()


def entry_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.pkl"))


def reseal(data: bytearray) -> bytearray:
    struct.pack_into("<Q", data, _entry.CHECKSUM_AT, _entry.checksum_of(data))
    return data


def write_entry(cache: Cache, function: str, key: str, *, fingerprint: str = "f" * 16,
                version: object = None, created: float | None = None,
                expires: float | None = None, value: Any = "v") -> None:
    """Store an entry as a decorated function of another code or time would have."""
    ident = _entry.make_ident(function, version, fingerprint)
    chunks = _entry.encode(value, ident=ident, key=key, created=created or time.time(),
                           expires=expires, compute_time=0.0, secret=cache.secret)
    cache.store.write(function, key, chunks)


def k(n: int) -> str:
    return f"{n:032x}"


# --- clear --------------------------------------------------------------------------------

def identity(x):
    return x


def negate(x):
    return -x


def two_functions(cache: Cache) -> tuple[Any, Any]:
    """Two decorated functions of one cache, with distinct names."""
    return cache.cached(identity), cache.cached(negate)


@pytest.mark.file_only("it looks at the entry files")
def test_clear_everything(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f, g = two_functions(cache)
    for i in range(3):
        f(i)
        g(i)
    assert cache.clear() == 6
    assert entry_files(cache_dir) == []
    assert cache.clear() == 0


def test_clear_one_function_by_name(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f, g = two_functions(cache)
    f(1)
    f(2)
    g(1)
    assert cache.clear(f"{__name__}.identity") == 2
    assert not f.cache_contains(1)
    assert g.cache_contains(1)


def test_clear_one_function_by_the_decorated_function(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f, g = two_functions(cache)
    f(1)
    g(1)
    g(2)
    assert cache.clear(g) == 2
    assert f.cache_contains(1)
    assert not g.cache_contains(2)


def test_clear_of_a_function_of_another_cache_clears_this_one(
    cache_dir: Path, tmp_path: Path
) -> None:
    # a.clear(fb) removed b's entries (fb's own cache) and left a's: it asked fb's memo
    # to clear itself, whatever cache it belongs to.
    def load(x: int) -> int:
        return x

    a, b = Cache(cache_dir), Cache(tmp_path / "other")
    fa, fb = a.cached(load), b.cached(load)
    fa(1)
    fb(1)
    fb(2)
    assert a.clear(fb) == 1
    assert list(a.entries()) == []
    assert fb.cache_contains(1) and fb.cache_contains(2)
    assert b.clear(fb) == 2


@pytest.mark.file_only("it looks at the entry files")
def test_clear_of_an_unknown_function_removes_nothing(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    cache.cached(lambda x: x)(1)
    assert cache.clear("no.such.function") == 0
    assert len(entry_files(cache_dir)) == 1


# --- prune --------------------------------------------------------------------------------

def test_prune_of_a_healthy_cache_removes_nothing(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f = cache.cached(lambda x: x)
    f(1)
    f(2)
    assert cache.prune() == 0
    assert f.cache_contains(1)
    assert f.cache_contains(2)


@pytest.mark.file_only("Redis drops a stale entry itself (ttl -> PX) before prune sees it")
def test_prune_removes_stale_entries(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache(cache_dir)

    @cache.cached(ttl=60)
    def f(x):
        return x

    monkeypatch.setattr(memojar._decorator, "time", Clock(time.time() - 3600))
    f(1)  # written an hour ago, expired 59 minutes ago
    monkeypatch.undo()
    f(2)
    assert cache.prune() == 1
    assert not f.cache_contains(1)
    assert f.cache_contains(2)


@pytest.mark.file_only("it looks at the entry files")
def test_prune_keeps_entries_of_another_python_unless_asked(cache_dir: Path) -> None:
    cache = Cache(cache_dir)

    @cache.cached
    def f(x):
        return x

    f(1)
    f(2)
    path = next(p for p in entry_files(cache_dir) if p.name.startswith(f.cache_key(1)))
    data = bytearray(path.read_bytes())
    python = b"\0" + _entry.PYTHON.encode() + b"\0"
    assert data.count(python) == 1
    forged = b"\0" + b"9" * (len(python) - 4) + b".9\0"
    data[data.index(python) : data.index(python) + len(python)] = forged
    path.write_bytes(reseal(data))
    assert _entry.read_header(bytes(data)).incompatible() is not None
    assert cache.prune() == 0  # that Python can still read it
    assert path.exists()
    assert cache.prune(other_pythons=True) == 1
    assert not path.exists()
    assert f.cache_contains(2)


@pytest.mark.file_only("it looks at the entry files")
def test_prune_removes_entries_of_an_older_entry_format(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f = cache.cached(lambda x: x)
    f(1)
    (path,) = entry_files(cache_dir)
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, _entry.FORMAT_AT, 0)
    path.write_bytes(reseal(data))
    assert cache.prune() == 1
    assert entry_files(cache_dir) == []


def test_prune_removes_entries_of_superseded_code(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    now = time.time()
    write_entry(cache, "mod.f", k(1), fingerprint="a" * 16, created=now - 100)
    write_entry(cache, "mod.f", k(2), fingerprint="a" * 16, created=now - 90)
    write_entry(cache, "mod.f", k(3), fingerprint="b" * 16, created=now - 10)  # the newest
    write_entry(cache, "mod.g", k(1), fingerprint="a" * 16, created=now - 100)  # another fn
    assert cache.prune() == 2
    left = {(e.function, e.key, e.fingerprint) for e in cache.entries()}
    assert left == {("mod.f", k(3), "b" * 16), ("mod.g", k(1), "a" * 16)}


def test_prune_removes_entries_of_a_superseded_version(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    now = time.time()
    write_entry(cache, "mod.f", k(1), version=1, created=now - 100)
    write_entry(cache, "mod.f", k(2), version=2, created=now - 10)
    assert cache.prune() == 1
    assert [e.key for e in cache.entries()] == [k(2)]


def test_prune_holds_no_memory_per_entry_it_reads(tmp_path: Path) -> None:
    """``prune`` removes what it finds doomed as it reads, and keeps only each group's
    newest entry (before: every entry with its header until the last was read, 1.6 GB of
    RSS to prune 1,000,000 entries)."""
    cache = Cache(tmp_path)
    now = time.time()
    for n in range(10_000):  # stale, superseded code, and the newest code's, kept
        write_entry(cache, "mod.f", k(n), fingerprint="a" * 16, created=now - 100,
                    expires=now - 1 if n % 2 else None)
        write_entry(cache, "mod.f", k(10_000 + n), fingerprint="b" * 16, created=now - 10)
    removed, peak = traced_peak(cache.prune)
    assert removed == 10_000
    assert {e.fingerprint for e in cache.entries()} == {"b" * 16}
    assert peak < 4_000_000, f"{peak:,} bytes at the peak of a prune of 20,000 entries"


def test_prune_removes_an_older_codes_entries_whatever_order_it_reads_them_in(
        cache_dir: Path) -> None:
    """The newest code is known only once every entry was read: entries read before it
    was seen, and after, are judged against it."""
    cache = Cache(cache_dir)
    now = time.time()
    for n in range(30):
        code = "b" if n == 15 else "a"
        write_entry(cache, "mod.f", k(n), fingerprint=code * 16,
                    created=now - (10 if code == "b" else 100 + n))
    write_entry(cache, "mod.g", k(1), fingerprint="c" * 16, version=1, created=now - 50)
    write_entry(cache, "mod.g", k(2), fingerprint="c" * 16, version=2, created=now - 20)
    write_entry(cache, "mod.h", k(1), fingerprint="c" * 16, created=now - 50)
    assert cache.prune() == 30
    left = {(e.function, e.key) for e in cache.entries()}
    assert left == {("mod.f", k(15)), ("mod.g", k(2)), ("mod.h", k(1))}


@pytest.mark.file_only("it moves an entry file")
def test_prune_finds_an_older_codes_entry_in_another_functions_folder(cache_dir: Path) -> None:
    """An entry moved into another function's folder is judged by what its header names,
    as every entry: the second look at superseded code reads that folder too."""
    cache = Cache(cache_dir)
    now = time.time()
    write_entry(cache, "mod.f", k(1), fingerprint="a" * 16, created=now - 100)
    write_entry(cache, "mod.f", k(2), fingerprint="b" * 16, created=now - 10)
    write_entry(cache, "mod.g", k(3), fingerprint="b" * 16, created=now - 10)
    (moved,) = [p for p in entry_files(cache_dir) if p.name.startswith(k(1))]
    moved.rename(cache_dir / "mod.g" / moved.parent.name / moved.name)
    assert cache.prune() == 1
    assert sorted(p.name[:32] for p in entry_files(cache_dir)) == [k(2), k(3)]


def test_edited_function_supersedes_its_old_entries(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    namespace: dict[str, Any] = {"__name__": "edited_module"}
    exec("def f(x):\n    return x + 1\n", namespace)
    old = cache.cached(namespace["f"])
    old(1)
    old(2)
    exec("def f(x):\n    return x + 2\n", namespace)
    new = cache.cached(namespace["f"])
    assert new(1) == 3
    cache.prune()
    assert [e.key for e in cache.entries()] == [new.cache_key(1)]


@pytest.mark.file_only("it looks at the entry files")
def test_prune_removes_unreadable_files(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f = cache.cached(lambda x: x)
    f(1)
    (path,) = entry_files(cache_dir)
    # Begins as an entry and ends short; empty, or zeros (as a crash leaves an entry whose
    # data a file system lost): unreadable entries. Begins otherwise: another tool's, left.
    theirs = []
    for key, data in ((k(7), path.read_bytes()[:40]), (k(8), b"garbage, not an entry"),
                      (k(9), b""), (k(10), bytes(500))):
        shard = path.parent.parent / key[:2]  # where memojar keeps that key's entry
        shard.mkdir(exist_ok=True)
        (shard / (key + ".pkl")).write_bytes(data)
        if data.startswith(b"garbage"):
            theirs.append(shard / (key + ".pkl"))
    assert cache.prune() == 3
    assert sorted(entry_files(cache_dir)) == sorted([path, *theirs])


@pytest.mark.file_only("it looks at the entry files")
def test_prune_removes_truncated_entries(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f = cache.cached(lambda x: x)
    f(list(range(1000)))
    (path,) = entry_files(cache_dir)
    path.write_bytes(path.read_bytes()[:-10])
    assert cache.prune() == 1


def _dead_pid() -> int:
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


@pytest.mark.file_only("it looks at the entry files")
def test_prune_removes_orphaned_temporary_files(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f = cache.cached(lambda x: x)
    f(1)
    (path,) = entry_files(cache_dir)
    orphan = Path(f"{path}.{_dead_pid()}.deadbeef.tmp")
    orphan.write_bytes(path.read_bytes()[:20])
    in_flight = Path(f"{path.parent / k(5)}.pkl.{os.getpid()}.cafef00d.tmp")
    in_flight.write_bytes(b"still being written")
    assert cache.prune() == 0  # removed, and not counted: a temporary file is no entry
    assert not orphan.exists()
    assert in_flight.exists()
    assert path.exists()


def test_prune_removes_least_recently_used_entries_over_max_size(cache_dir: Path) -> None:
    big = Cache(cache_dir)
    f = big.cached(lambda i: bytes(1000) + bytes([i]))
    for i in range(10):
        f(i)
    small = Cache(cache_dir, max_size=4000)
    assert small.prune() > 0
    assert small.stats().bytes <= 4000


def test_a_write_far_over_max_size_holds_no_memory_per_entry_it_evicts(tmp_path: Path) -> None:
    """A write that evicts most of a cache keeps a batch of the oldest entries at a time,
    not the whole listing (before: every entry listed and sorted, 246 MB of RSS for a
    write that evicted 274,000 entries of 300,000)."""
    f = Cache(tmp_path).cached(identity)
    for x in range(20_000):
        f(x)
    size = Cache(tmp_path).stats().bytes
    limited = Cache(tmp_path, max_size=size // 10).cached(identity)
    value, peak = traced_peak(lambda: limited(-1))
    assert value == -1
    assert 0 < Cache(tmp_path).stats().bytes <= size // 10
    assert peak < 4_000_000, f"{peak:,} bytes at the peak of a write evicting 18,000 entries"


@pytest.mark.file_only("it sets the entry files' access times")
@pytest.mark.parametrize("batch", [1_000, 7], ids=["one-batch", "batches"])
def test_eviction_far_over_max_size_keeps_exactly_the_most_recently_used(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    """However many listings an eviction takes (a batch of the oldest at a time, and those
    surely among the victims removed as a listing finds them), it removes the least
    recently used entries and no other."""
    from memojar import _ledger

    monkeypatch.setattr(_ledger, "EVICT_BATCH", batch)
    monkeypatch.setattr(_ledger, "TIME_BINS", 5)
    f = Cache(cache_dir).cached(identity)
    for x in range(300):
        f(x)
    order = list(range(300))
    random.Random(5).shuffle(order)  # used in this order, an hour ago and on
    now = time.time()
    used = {f.cache_key(x): now - 3600 + 10 * n for n, x in enumerate(order)}
    for path in entry_files(cache_dir):
        os.utime(path, (used[path.stem], used[path.stem]))
    size = Cache(cache_dir).stats().bytes
    assert Cache(cache_dir, max_size=size // 3).prune() > 0
    kept = {e.key for e in Cache(cache_dir).entries()}
    newest = sorted(used, key=used.__getitem__)[-len(kept):]
    assert kept == set(newest)
    assert Cache(cache_dir).stats().bytes <= size // 3 * _ledger.EVICT_TO


@pytest.mark.file_only("it looks at the directory")
def test_prune_with_max_size_of_a_cache_not_made_yet_creates_nothing(cache_dir: Path) -> None:
    # As entries(), clear() and `memojar prune`: a cache not made yet is an empty one, and
    # a directory the user cannot create (the README's tour run by a user without /data
    # rights) is no PermissionError.
    cache = Cache(cache_dir / "team", max_size=2**30)
    assert cache.prune() == 0
    assert not cache_dir.exists()


@pytest.mark.file_only("it looks at the directory")
def test_cache_delete_with_max_size_of_a_cache_not_made_yet_creates_nothing(
        cache_dir: Path) -> None:
    # A removal takes the ledger's lock only for a file it removes: before, every shard's
    # removal took it, and the lock's file made the cache (and its parents), or raised
    # where it cannot be written (a read-only mount: EROFS, where the answer is False).
    cache = Cache(cache_dir / "team", max_size=2**30)

    @cache.cached
    def f(x):
        return x

    assert not f.cache_delete(1)
    assert not cache_dir.exists()


# --- entries ------------------------------------------------------------------------------

@pytest.mark.file_only("it looks at the entry files")
def test_entries_fields(cache_dir: Path) -> None:
    cache = Cache(cache_dir)

    @cache.cached(ttl=dt.timedelta(hours=1), version="v2")
    def slow(x):
        time.sleep(0.05)
        return x

    before = dt.datetime.now(dt.timezone.utc)
    slow(1)
    after = dt.datetime.now(dt.timezone.utc)
    (info,) = cache.entries()
    assert isinstance(info, EntryInfo)
    assert info.function == f"{slow.__module__}.{slow.__qualname__}"
    assert info.key == slow.cache_key(1)
    assert info.size == entry_files(cache_dir)[0].stat().st_size
    assert before - dt.timedelta(seconds=1) <= info.created <= after + dt.timedelta(seconds=1)
    assert info.expires is not None
    assert abs((info.expires - info.created) - dt.timedelta(hours=1)) < dt.timedelta(seconds=1)
    assert 0.05 <= info.compute_time < 5
    assert info.version == "v2"  # the user's value, not the header's typed tag
    assert info.python == _entry.PYTHON
    assert len(info.fingerprint) == 16


def test_entries_times_are_timezone_aware_utc(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    cache.cached(ttl=60)(lambda x: x)(1)
    (info,) = cache.entries()
    for moment in (info.created, info.expires, info.accessed):
        assert moment is not None
        assert moment.tzinfo is not None
        assert moment.utcoffset() == dt.timedelta(0)


def test_entries_without_ttl_never_expire(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    cache.cached(lambda x: x)(1)
    (info,) = cache.entries()
    assert info.expires is None


def test_entries_of_one_function_and_of_all(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f = cache.cached(lambda x: x)

    @cache.cached
    def g(x):
        return x

    f(1)
    g(1)
    g(2)
    assert len(list(cache.entries())) == 3
    assert {e.key for e in cache.entries(g)} == {g.cache_key(1), g.cache_key(2)}
    assert len(list(cache.entries(f"{g.__module__}.{g.__qualname__}"))) == 2


@pytest.mark.file_only("it looks at the entry files")
def test_entries_skip_unreadable_files(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f = cache.cached(lambda x: x)
    f(1)
    (path,) = entry_files(cache_dir)
    (path.parent / (k(3) + ".pkl")).write_bytes(b"junk")
    assert [e.key for e in cache.entries()] == [f.cache_key(1)]


def test_entries_unpickle_nothing(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache(cache_dir)
    cache.cached(lambda x: x)(1)
    monkeypatch.setattr("pickle.loads", lambda *a, **k: pytest.fail("unpickled"))
    assert len(list(cache.entries())) == 1


@pytest.mark.file_only("it looks at the entry files")
def test_entry_with_a_long_header_is_listed_and_kept(cache_dir: Path) -> None:
    """Each out-of-band buffer adds 8 header bytes: 1000 arrays make a header over 8 kB."""
    np = pytest.importorskip("numpy")
    cache = Cache(cache_dir)

    @cache.cached
    def arrays(n):
        return [np.arange(3) for _ in range(n)]

    arrays(1000)
    (info,) = cache.entries()
    assert info.size == entry_files(cache_dir)[0].stat().st_size
    assert cache.prune() == 0
    assert arrays.cache_contains(1000)


# --- stats --------------------------------------------------------------------------------

def test_stats_of_an_empty_cache(cache_dir: Path) -> None:
    assert Cache(cache_dir).stats() == CacheInfo(0, 0, 0, 0)


@pytest.mark.file_only("it looks at the entry files")
def test_stats_add_up_every_function_of_the_cache(cache_dir: Path) -> None:
    cache = Cache(cache_dir)

    @cache.cached
    def f(x):
        return x

    @cache.cached
    def g(x):
        return -x

    f(1)
    f(1)
    f(2)
    g(1)
    g(1)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (2, 3, 3)
    assert stats.bytes == sum(p.stat().st_size for p in entry_files(cache_dir))


def test_decorators_on_one_directory_share_one_cache(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir)
    def f(x):
        return x

    @cached(cache_dir=cache_dir)
    def g(x):
        return -x

    f(1)
    g(1)
    g(1)
    stats = _cache_for(cache_dir).stats()
    assert f.__memojar__.store is g.__memojar__.store is _cache_for(cache_dir).store
    assert (stats.hits, stats.misses, stats.entries) == (1, 2, 2)


# --- max_size -----------------------------------------------------------------------------

def test_max_size_keeps_the_cache_under_the_limit(cache_dir: Path) -> None:
    cache = Cache(cache_dir, max_size=20_000)
    f = cache.cached(lambda i: bytes(2000) + i.to_bytes(4, "little"))
    for i in range(50):
        f(i)
        assert cache.stats().bytes <= 20_000 + 2500
    assert cache.stats().bytes <= 20_000


@pytest.mark.not_on("s3", "S3 keeps no access times: max_size evicts the least recently written")
def test_max_size_evicts_least_recently_used(cache_dir: Path) -> None:
    cache = Cache(cache_dir, max_size=13_000)  # ten entries of about 1.28 kB fit, not 11
    calls: list[int] = []

    @cache.cached
    def f(i):
        calls.append(i)
        return bytes(1000) + i.to_bytes(4, "little")

    for i in range(10):
        f(i)
        time.sleep(0.012)  # past the kernel's coarse file clock
    for i in (0, 1, 2):  # the oldest three, read again: recently used now
        f(i)
        time.sleep(0.012)  # past the kernel's coarse file clock
    for i in range(10, 16):
        f(i)
        time.sleep(0.012)  # past the kernel's coarse file clock
    assert calls == list(range(16))  # the reads were hits
    for i in (0, 1, 2):
        assert f.cache_contains(i), i
    assert not f.cache_contains(3)
    assert f.cache_contains(15)


def _ten_written_in_turn(cache_dir: Path, ttl: float | None = None) -> tuple[Cache, Any]:
    """The cache and ``f``: ``f(0)`` to ``f(9)`` written in turn, each past the kernel's
    coarse file clock, in a cache where ten entries of about 1.28 kB fit and eleven do not;
    with ``ttl``, ``f(0)`` has expired by the time the others are written."""
    cache = Cache(cache_dir, max_size=13_000)

    @cache.cached(ttl=ttl)
    def f(i):
        return bytes(1000) + i.to_bytes(4, "little")

    for i in range(10):
        f(i)
        time.sleep(1.1 if ttl and i == 0 else 0.012)
    return cache, f


@pytest.mark.not_on("s3", "S3 keeps no access times: max_size evicts the least recently written")
@pytest.mark.parametrize("look", ["cache_contains", "cache_explain"])
def test_an_expired_entry_looked_at_is_evicted_before_live_ones(cache_dir: Path,
                                                                look: str) -> None:
    """A look at an entry that is then rejected (expired) is no use of it: before, the
    read's stamp made it the most recently used, and eviction removed a live entry in its
    place, keeping the dead one."""
    _, f = _ten_written_in_turn(cache_dir, ttl=1)
    getattr(f, look)(0)  # rejected, left in place
    time.sleep(0.012)
    f(10)  # no room: the least recently used go (two: eviction frees a tenth)
    assert not f.cache_contains(0)
    assert f.cache_contains(2)


@pytest.mark.not_on("s3", "S3 keeps no access times: max_size evicts the least recently written")
@pytest.mark.not_on("redis", "a Redis read scores the entry's use in the store's own script")
@pytest.mark.parametrize("look", ["cache_contains", "cache_explain"])
def test_a_look_at_a_live_entry_is_not_a_use_of_it(cache_dir: Path, look: str) -> None:
    """``cache_contains`` and ``cache_explain`` ask about an entry without using it (as
    diskcache's ``in`` and joblib's ``check_call_in_cache``): before, the read's stamp made
    the entry looked at the most recently used, and eviction removed another in its place."""
    _, f = _ten_written_in_turn(cache_dir)
    assert getattr(f, look)(0)  # looked at, not used: still the least recently used
    time.sleep(0.012)
    f(10)
    assert not f.cache_contains(0)
    assert f.cache_contains(2)


@pytest.mark.not_on("s3", "S3 keeps no access times: max_size evicts the least recently written")
@pytest.mark.not_on("redis", "a Redis read scores the entry's use in the store's own script")
def test_a_look_keeps_no_stamp_when_another_thread_hits_meanwhile(cache_dir: Path) -> None:
    """The stamp a look took back (``unstamp``) was the store's last, of any thread: a hit
    of another entry in another thread between the look's read and its take-back left the
    entry looked at stamped as used, and eviction removed another in its place. A look
    leaves no stamp now."""
    import threading

    _, f = _ten_written_in_turn(cache_dir)
    store = f.__memojar__.store
    read = store.read

    def hit_meanwhile(name: str, key: str, *stamp: bool) -> Any:
        del store.read  # once
        data = read(name, key, *stamp)
        thread = threading.Thread(target=f, args=(5,))  # a hit, in another thread
        thread.start()
        thread.join(10)
        return data

    store.read = hit_meanwhile
    assert f.cache_contains(0)  # looked at, not used: still the least recently used
    time.sleep(0.012)
    f(10)
    assert not f.cache_contains(0)
    assert f.cache_contains(2)


@pytest.mark.not_on("s3", "S3 keeps no access times: max_size evicts the least recently written")
def test_listing_entries_does_not_count_as_use(cache_dir: Path) -> None:
    cache, f = _ten_written_in_turn(cache_dir)
    f(0)  # read again: the most recently used entry
    time.sleep(0.012)
    assert len(list(cache.entries())) == 10  # reads every header
    cache.prune()
    time.sleep(0.012)
    for i in range(10, 16):
        f(i)
        time.sleep(0.012)
    assert f.cache_contains(0)
    assert not f.cache_contains(1)


# --- secret -------------------------------------------------------------------------------

def _signed(path: Path) -> bool:
    return bool(struct.unpack_from("<H", path.read_bytes(), _entry.FLAGS_AT)[0] & _entry.SIGNED)


def _recorded() -> tuple[Callable[[int], int], list[int]]:
    """A function returning its argument, not cached (each test caches it under the
    secrets it compares), and the list of its calls."""
    calls: list[int] = []

    def f(x: int) -> int:
        calls.append(x)
        return x

    return f, calls


@pytest.mark.file_only("it looks at the entry files")
@pytest.mark.parametrize("secret", ["a passphrase", b"\x00raw key bytes\xff"], ids=["str", "bytes"])
def test_secret_signs_entries_and_verifies_them(cache_dir: Path, secret: Any) -> None:
    cache = Cache(cache_dir, secret=secret)
    calls: list[int] = []

    @cache.cached
    def f(x):
        calls.append(x)
        return x

    f(1)
    f(1)
    assert calls == [1]
    (path,) = entry_files(cache_dir)
    assert _signed(path)


def test_str_and_bytes_secrets_are_the_same_key(cache_dir: Path) -> None:
    f, calls = _recorded()
    Cache(cache_dir, secret="sesame").cached(f)(1)
    Cache(cache_dir, secret=b"sesame").cached(f)(1)
    assert calls == [1]


def test_entry_signed_with_another_secret_is_recomputed_and_replaced(cache_dir: Path) -> None:
    f, calls = _recorded()
    Cache(cache_dir, secret="one").cached(f)(1)
    with pytest.warns(MemojarWarning, match=r"is signed with another secret .*: it was not "
                      r"loaded, and is recomputed and replaced\. .* Give every process "
                      r"sharing this cache the same secret"):
        Cache(cache_dir, secret="two").cached(f)(1)
    assert calls == [1, 1]
    two = Cache(cache_dir, secret="two").cached(f)
    two(1)
    assert calls == [1, 1]


def test_entries_of_another_secret_are_warned_of_once_per_cache(cache_dir: Path) -> None:
    """Two processes under different secrets replace each other's entries at every call: a
    warning says so, once (not at each replacement)."""
    f, calls = _recorded()
    one, two = Cache(cache_dir, secret="one").cached(f), Cache(cache_dir, secret="two").cached(f)
    one(1)
    one(2)
    with pytest.warns(MemojarWarning, match="another secret") as record:
        two(1)
        one(1)
        two(2)
    assert len(record) == 1, [str(w.message) for w in record]
    assert str(cache_dir) in str(record[0].message)
    assert calls == [1, 2, 1, 1, 2]


def test_unsigned_entry_is_not_loaded_by_a_cache_with_a_secret(cache_dir: Path) -> None:
    f, calls = _recorded()
    Cache(cache_dir).cached(f)(1)
    with pytest.warns(MemojarWarning, match="is not signed, and this cache has a secret"):
        Cache(cache_dir, secret="s").cached(f)(1)
    assert calls == [1, 1]


def test_signed_entry_is_not_loaded_by_a_cache_without_a_secret(cache_dir: Path) -> None:
    f, calls = _recorded()
    Cache(cache_dir, secret="s").cached(f)(1)
    with pytest.warns(MemojarWarning, match="is signed, and this cache has no secret"):
        Cache(cache_dir).cached(f)(1)
    assert calls == [1, 1]


@pytest.mark.file_only("it looks at the entry files")
def test_secret_from_the_environment(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMOJAR_SECRET", "from-env")
    f, calls = _recorded()
    Cache(cache_dir).cached(f)(1)
    (path,) = entry_files(cache_dir)
    assert _signed(path)
    monkeypatch.delenv("MEMOJAR_SECRET")
    Cache(cache_dir, secret="from-env").cached(f)(1)
    assert calls == [1]


def test_explicit_secret_wins_over_the_environment(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMOJAR_SECRET", "from-env")
    f, calls = _recorded()
    Cache(cache_dir, secret="explicit").cached(f)(1)
    monkeypatch.delenv("MEMOJAR_SECRET")
    Cache(cache_dir, secret="explicit").cached(f)(1)
    assert calls == [1]


# --- default directory --------------------------------------------------------------------

def test_default_directory_is_memojar_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMOJAR_DIR", str(tmp_path / "from-env"))
    assert Cache().directory == str(tmp_path / "from-env")
    cached(lambda x: x)(1)
    assert len(entry_files(tmp_path / "from-env")) == 1


def test_default_directory_without_memojar_dir_is_the_user_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs

    monkeypatch.delenv("MEMOJAR_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = os.path.join(platformdirs.user_cache_dir(), "memojar")
    assert Cache().directory == expected
    if sys.platform.startswith("linux"):
        assert expected == str(tmp_path / "xdg" / "memojar")


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="XDG_CACHE_HOME is Unix's")
def test_a_relative_xdg_cache_home_is_ignored_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The XDG spec has a relative value ignored, and it was, silently: the user's setting had
    # no effect and nothing said why.
    import memojar._cache

    monkeypatch.setattr(memojar._cache, "_XDG_RELATIVE_SAID", set(), raising=False)
    monkeypatch.delenv("MEMOJAR_DIR")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative-cache")
    used = str(tmp_path / "home" / ".cache" / "memojar")
    with pytest.warns(MemojarWarning) as record:
        assert Cache().directory == used
        assert Cache().directory == used  # said once
    [warning] = record
    assert "XDG_CACHE_HOME='relative-cache' is ignored" in str(warning.message)
    assert f"caches in {used} instead" in str(warning.message)
    assert not (tmp_path / "relative-cache").exists()


RELATIVE_DIR_SCRIPT = """
import os
from memojar import cached

@cached
def f(x):
    return x

os.makedirs("sub")
os.chdir("sub")

@cached
def g(x):
    return x

f(1), g(1)
"""


def test_a_relative_memojar_dir_is_one_cache_for_a_process_that_changes_directory(
    tmp_path: Path,
) -> None:
    """Before, each decoration took it from the directory it was made in: ``g`` cached in
    ``sub/relative``."""
    env = {**os.environ, "MEMOJAR_DIR": "relative", "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", RELATIVE_DIR_SCRIPT], cwd=tmp_path, env=env,
                   check=True, timeout=120)
    assert len(entry_files(tmp_path / "relative")) == 2
    assert not (tmp_path / "sub" / "relative").exists()


def test_empty_memojar_dir_means_the_default(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMOJAR_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Cache().directory.endswith("memojar")


def test_directory_with_a_tilde_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Cache("~/mj").directory == str(tmp_path / "mj")


# --- modes --------------------------------------------------------------------------------

def test_directories_are_private_and_entries_0600(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "er" / "cache"
    cache = Cache(root, max_size=10**6)
    cache.cached(lambda x: x)(1)
    made = [tmp_path / "deep", tmp_path / "deep" / "er", root]
    made += [p for p in root.rglob("*") if p.is_dir()]
    assert len(made) >= 5
    for d in made:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pkl" for p in files)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_modes_do_not_depend_on_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        Cache(tmp_path / "c").cached(lambda x: x)(1)
    finally:
        os.umask(old)
    (path,) = entry_files(tmp_path / "c")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    Cache(root).cached(lambda x: x)(1)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755


def test_judge_gives_each_entry_the_verdict_prune_acts_on(cache_dir: Path) -> None:
    from memojar._cache import FRESH, STALE, SUPERSEDED, UNREADABLE, judge

    cache = Cache(cache_dir)
    now = time.time()
    write_entry(cache, "m.f", k(1), fingerprint="a" * 16, created=now - 20)
    write_entry(cache, "m.f", k(2), fingerprint="b" * 16, created=now - 10)  # newest code
    write_entry(cache, "m.f", k(3), fingerprint="b" * 16, created=now - 30, expires=now - 1)
    # damaged (an S3 object named like an entry, not beginning as one, is someone else's:
    # test_s3.py::test_prune_leaves_objects_named_like_entries_that_memojar_did_not_write)
    cache.store.write("m.f", k(4), [_entry.MAGIC + b"\3\0 damaged"])  # format 3
    verdicts = {s.key: v for s, _, v in judge(cache.store.scan(), now)}
    assert verdicts == {k(1): SUPERSEDED, k(2): FRESH, k(3): STALE, k(4): UNREADABLE}
    assert cache.prune() == 3
    assert [e.key for e in cache.entries()] == [k(2)]


HELD_MODULE = '''
import os
from memojar import Cache, cached

LOCATION = {location!r}
LOG = {log!r}


def _held(x):
    with open(LOG, "a") as f:
        f.write("call\\n")
    return [x]


held = Cache(LOCATION).cached(memory=4)(_held)
plain = Cache(LOCATION).cached(_held)
'''


def test_a_memory_tier_function_sees_other_processes_replace_and_clear(
    cache_dir: Any, tmp_path: Path,
) -> None:
    """On every store, ``memory=`` never returns a value another process replaced
    (``cache_set``, ``refresh``, also from a decoration without ``memory=``) or removed
    (``clear``): the file store's tier forgets at its stamp; the Redis and S3 stores keep
    none, so ``memory=`` is not used there (with a warning) and every call reads the
    server."""
    import importlib
    import textwrap
    import warnings

    folder = tmp_path / "mods"
    folder.mkdir()
    name = f"held_{abs(hash(str(tmp_path))):x}"
    log = tmp_path / "log"
    (folder / f"{name}.py").write_text(HELD_MODULE.format(location=str(cache_dir),
                                                          log=str(log)))
    sys.path.insert(0, str(folder))
    try:
        if isinstance(cache_dir, Path):
            module = importlib.import_module(name)
        else:
            with pytest.warns(MemojarWarning, match=r"memory= of .* is not used: .* server"):
                module = importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))

    def other(code: str) -> None:
        source = (f"import sys, warnings\nsys.path.insert(0, {str(folder)!r})\n"
                  "warnings.simplefilter('ignore')\n"
                  f"import {name} as m\n" + textwrap.dedent(code))
        done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemojarWarning)  # a remote store's secret warning
        first = module.held(1)
        assert module.held(1) == first
        other("m.plain.cache_set(['set'], 1)")
        assert module.held(1) == ["set"]
        other("m.plain.refresh(1)")
        assert module.held(1) == [1]
        other("m.Cache(m.LOCATION).clear()")
        assert module.held(1) == [1]
    assert log.read_text().count("call") == 3  # here, the other's refresh, after the clear
