"""The Cache object itself: where its warnings point, one per location, no leaks, pickling,
and counters that stay exact under threads."""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path

import pytest

import memojar
from memojar import Cache, MemojarWarning, cached
from memojar._cache import _cache_for

# --- warnings point at the user's line (item 17) ------------------------------------------


def _recorded(call) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if issubclass(w.category, MemojarWarning)]


def test_unpicklable_result_warning_points_at_the_call(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")

    @cache.cached
    def make():
        return lambda: 1

    caught = _recorded(make)
    assert [w.filename for w in caught] == [__file__]


def test_lock_timeout_warning_points_at_the_call(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", lock_timeout=0.05)

    @cache.cached
    def double(x):
        return x * 2

    held = cache.store.lock(double.__memojar__.name, double.cache_key(1))
    assert held.acquire(blocking=False)  # another caller (its own open file description)
    try:
        caught = _recorded(lambda: double(1))
    finally:
        held.release()
    assert [w.filename for w in caught] == [__file__]


def test_async_warning_points_at_the_awaiting_line(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")

    @cache.cached
    async def make():
        return lambda: 1

    async def user_code():
        return await make()

    caught = _recorded(lambda: asyncio.run(user_code()))
    assert [w.filename for w in caught] == [__file__]


# --- one Cache per location (item 18) -------------------------------------------------------


def test_one_cache_per_normalised_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    cache = _cache_for("c")
    assert _cache_for("./c") is cache
    assert _cache_for(str(tmp_path / "c")) is cache
    assert _cache_for(tmp_path / "c" / ".." / "c") is cache
    assert _cache_for("d") is not cache


def test_counters_of_one_location_add_up_however_it_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    @cached(cache_dir="c")
    def f(x):
        return x

    @cached(cache_dir=str(tmp_path / "c"))
    def g(x):
        return x

    f(1), g(1), g(1)
    assert _cache_for("./c").stats()[:2] == (1, 2)


def test_stats_of_a_cache_object_count_the_decorators_on_its_location(tmp_path: Path) -> None:
    # `@cached` then `Cache().stats()` (the public way to see the default cache's counts)
    # answered 0 hits and 0 misses: only the functions decorated through that very object
    # counted, and `@cached` decorates through a cache object of its own.
    @cached(cache_dir=tmp_path / "c")
    def f(x):
        return x

    @cached(cache_dir=tmp_path / "other")
    def g(x):
        return x

    f(1), f(1), g(1)
    cache = Cache(tmp_path / "c")
    cache.cached(len)("ab")
    assert cache.stats()[:2] == (1, 2)
    assert Cache(tmp_path / "other").stats()[:2] == (0, 1)


# --- no leaks, and pickling (item 19) ------------------------------------------------------------


def test_cache_keeps_no_decorated_function_alive(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")

    def decorate():
        def f(x):
            return x

        wrapper = cache.cached(f)
        wrapper(1)
        return weakref.ref(f), weakref.ref(wrapper)

    original, wrapper = decorate()
    gc.collect()
    assert original() is None
    assert wrapper() is None
    assert cache.stats()[:2] == (0, 1)  # its counts still add up


def test_cache_pickles_to_a_cache_on_the_same_location(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", max_size=10_000_000, secret="s3cret", lock_timeout=5)

    @cache.cached
    def square(x):
        return x * x

    square(3)
    copy = pickle.loads(pickle.dumps(cache))
    assert (copy.directory, copy.max_size, copy.secret, copy.lock_timeout) == (
        cache.directory, 10_000_000, b"s3cret", 5.0
    )
    again = copy.cached(square.__wrapped__)
    assert again(3) == 9
    assert again.cache_info()[:3] == (1, 0, 1)  # a hit on the entry the original stored


# --- exact counters under threads (item 20) -----------------------------------------------------


_MEMOJAR = os.path.dirname(os.path.abspath(memojar.__file__)) + os.sep


def _switch_between_opcodes(frame, event, arg):
    """A tracer that lets another thread run between any two opcodes of memojar's wrapper
    code, as a free-threaded build (or an opcode-level tracer) can: ``x += 1`` on a shared
    attribute then loses increments."""
    if not frame.f_code.co_filename.startswith(_MEMOJAR):  # (not this file, whatever
        return None  # its folder is named: see ``work`` below)
    frame.f_trace_opcodes = True
    frame.f_trace_lines = False

    def local(frame, event, arg):
        if event == "opcode":
            time.sleep(0)  # gives up the GIL: another thread runs here
        return local

    return local


def test_hit_and_miss_counts_are_exact_under_threads(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")

    @cache.cached
    def ident(x):
        return x

    ident(0)
    threads, calls = 8, 60

    def work() -> None:
        try:
            for _ in range(calls):
                ident(0)
        finally:
            # A thread ending with a tracer leaves 3.12's opcode events on. Safe only here,
            # in a frame that never asked for opcodes: on 3.12.1 one that had would call
            # the tracer removed (a crash, when the clone's folder was named memojar).
            sys.settrace(None)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    threading.settrace(_switch_between_opcodes)
    try:
        for worker in workers:
            worker.start()
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
    for worker in workers:
        worker.join(60)
    assert ident.cache_info()[:2] == (threads * calls, 1)
    assert cache.stats()[:2] == (threads * calls, 1)


def test_cache_clear_resets_the_counters(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")

    @cache.cached
    def ident(x):
        return x

    ident(1), ident(1)
    ident.cache_clear()
    ident(1)
    assert ident.cache_info()[:2] == (0, 1)


def test_a_function_decorated_per_request_keeps_nothing_per_decoration(tmp_path: Path) -> None:
    """A long-running process that decorates a function per request (``cache.cached`` in a
    handler) kept a tally per decoration in its Cache for good (900 bytes each, and every
    one merged again every few seconds). A dropped one's tally goes once merged; its counts
    stay in the cache's statistics."""
    import tracemalloc

    cache = Cache(tmp_path)

    def handler(x: int) -> int:
        return x + 1

    assert cache.cached(handler)(1) == 2
    cache.flush_stats()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(1000):
            assert cache.cached(handler)(1) == 2  # a hit
        cache.flush_stats()
        gc.collect()
        grown = sum(d.size_diff for d in
                    tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"{grown:,} bytes kept for 1000 dropped decorations"
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (1000, 1)
    (hits, misses, _), = cache.saved_stats().values()
    assert (hits, misses) == (1000, 1)
