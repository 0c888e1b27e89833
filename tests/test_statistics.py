"""The saved statistics (hits, misses, seconds saved per function, of every process): what
is merged when, and what signals, forks, kills, a read-only folder or a damaged file do to
them."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

from interrupt_kit import SUPPORTED, Injector, Points
from memojar import Cache, _cache, _decorator

TIMEOUT = 60


# These tests collect after each of hundreds of interrupt points (see conftest's fixture).
pytestmark = pytest.mark.usefixtures("frozen_heap")


def run(code: str, cache: Path, timeout: float = TIMEOUT) -> str:
    """``code`` in a new interpreter with ``CACHE`` its cache folder; its output."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "CACHE": str(cache), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def ls(cache: Path) -> dict[str, tuple[int, int]]:
    out = subprocess.run([sys.executable, "-m", "memojar", "--dir", str(cache), "ls", "--json"],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    return {row["function"]: (row["hits"], row["misses"]) for row in json.loads(out.stdout)}


def _left() -> list[Any]:
    """The records of dropped caches' counts not merged yet."""
    gc.collect()
    return [o for o in _cache._orphans if o.final() not in (None, ({}, ()))]


def add_one(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return 2 * x


NAME = f"{__name__}.add_one"

DROPPED = """
    import gc, os, sys
    sys.path.insert(0, {tests!r})
    import memojar, test_statistics as t

    def job(x):
        f = memojar.Cache(os.environ["CACHE"]).cached(t.add_one)
        f(x); f(x); f(x)

    job(1)
    gc.collect()
    {then}
"""


def _square(x: int) -> int:
    return x * x


def test_two_caches_of_one_location_in_a_process_count_each_others_entries(
        location: str) -> None:
    """Entries written and removed through one ``Cache`` are counted by another of the same
    location in the same process (a program making ``Cache(dir)`` in two modules). Before,
    on a folder, each counted the kept count and its own unmerged changes only: a
    ``cache_clear`` through one and five writes through the other said 11 entries (of 5)
    to the second, and 0 to the first."""
    first = Cache(location).cached(_square)
    for i in range(6):
        first(i)
    assert first.cache_info().entries == 6  # counted by a listing, kept
    assert first.cache_clear() == 6
    second = Cache(location, max_size=10**6).cached(_square)
    for i in range(5):
        second(i)
    assert second.cache_info().entries == 5
    assert first.cache_info().entries == 5


def test_a_cache_reached_through_a_link_to_its_folder_keeps_its_statistics(
        tmp_path: Path) -> None:
    """``MEMOJAR_DIR=/scratch/cache``, a link to a folder on a big disk: its hits are kept
    for ``memojar ls``, read through the link or the folder. Before, the statistics were
    never saved where the root was a link (a debug line said so): 0 hits."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    tests = str(Path(__file__).parent)
    run(f"""
        import os, sys
        sys.path.insert(0, {tests!r})
        import memojar, test_statistics as t
        f = memojar.Cache(os.environ["CACHE"]).cached(t.add_one)
        f(1); f(1); f(1)
    """, tmp_path / "link")
    assert ls(tmp_path / "link")[NAME] == (2, 1)
    assert ls(tmp_path / "real")[NAME] == (2, 1)


def test_a_fork_while_another_thread_starts_the_statistics_thread_is_not_hindered() -> None:
    """The before-fork hook met the thread another thread's miss had made and not started
    yet (Python 3.13.0 starts it again at the first miss after a fork, on any thread):
    ``join`` raised "cannot join thread before it is started" out of the hook, printed at
    each such fork. The thread, once started, finds its stop set and ends."""
    flusher = _cache._Flusher()
    made = threading.Thread(target=flusher._run, args=(flusher.stop,), daemon=True)
    flusher.thread = made
    flusher.before_fork()
    assert flusher.stop.is_set()
    made.start()
    made.join(timeout=5)
    assert not made.is_alive()


def test_a_cache_dropped_before_its_counts_were_merged_keeps_them(tmp_path: Path) -> None:
    """A ``Cache`` made in a function that returned (as ``python -m memojar.demo`` makes its
    own) lost what it had not merged: the demo's ``memojar ls`` showed 1 hit of 3. Its
    finalizer now takes the counts (not the store), merged at the exit..."""
    cache = tmp_path / "c"
    tests = str(Path(__file__).parent)
    run(DROPPED.format(tests=tests, then="pass"), cache)
    assert ls(cache) == {NAME: (2, 1)}
    # ... or by the next merge of a process that goes on (os._exit: no exit merge)
    run(DROPPED.format(tests=tests, then="memojar._cache.flush_statistics(); os._exit(0)"), cache)
    assert ls(cache) == {NAME: (5, 1)}  # the entry is there: three hits
    # ... or with the next merge of a live cache of the location
    run(DROPPED.format(tests=tests, then="memojar.Cache(os.environ['CACHE']).flush_stats(); "
                                         "os._exit(0)"), cache)
    assert ls(cache) == {NAME: (8, 1)}


@pytest.mark.parametrize("live_first", [True, False])
def test_stats_keeps_the_hits_of_a_dropped_cache_of_its_location(tmp_path: Path,
                                                                 live_first: bool) -> None:
    """``stats()``: hits and misses of this process for every function of the location. A
    ``Cache`` made in a function that returned took its hits with it: ``stats()`` of another
    cache of the location went from (2, 2) down to (0, 1) when it was collected."""
    folder = tmp_path / "c"
    live = Cache(folder) if live_first else None

    def job() -> None:
        f = Cache(folder).cached(add_one)
        f(1)
        f(1)
        f(1)

    job()
    live = live or Cache(folder)
    live.cached(double)(1)
    gc.collect()
    assert live.stats()[:2] == (2, 2)
    live.flush_stats()
    assert live.stats()[:2] == (2, 2)
    assert live.saved_stats()[NAME][:2] == (2, 1)


def test_a_dropped_cache_keeps_neither_its_store_nor_a_cycle(tmp_path: Path) -> None:
    """The first fix (97afc39) handed the store to the flusher: its folders stayed open
    until the next merge, and other stores' cycles moved into later tests."""
    gc.collect()
    gc.disable()
    try:
        cache = Cache(tmp_path / "c")
        f = cache.cached(add_one)
        f(1)
        f(1)
        store = weakref.ref(cache.store)
        del cache, f
        assert store() is None
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if "memojar" in type(o).__module__]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
    assert Cache(tmp_path / "c").saved_stats()[NAME] == (1, 1, pytest.approx(0, abs=1))


def _a_job_in_a_folder_removed_after_it(folder: Path) -> None:
    """A hit and a miss through a ``Cache`` of ``folder``, dropped, then the folder removed."""
    import shutil

    f = Cache(folder).cached(add_one)
    f(1)
    f(1)
    del f
    gc.collect()
    shutil.rmtree(folder)


def test_a_dropped_caches_counts_never_make_its_removed_folder_again(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    _a_job_in_a_folder_removed_after_it(folder)
    _cache._FLUSHER.merge_all(at_exit=True)
    assert not folder.exists()
    assert _left() == []  # not kept for ever either


def test_the_counts_of_dropped_caches_of_removed_folders_are_not_kept(tmp_path: Path) -> None:
    """A service making a ``Cache`` in a temporary folder per job, removed after it, kept
    the hits and misses of every such folder (one row each) for the life of the process:
    a row whose folder is gone is let go once the table grows."""
    for job in range(300):
        _a_job_in_a_folder_removed_after_it(tmp_path / f"job-{job}")
    assert len(_cache._dropped_counts) < 150  # (300 before)


def test_a_dropped_caches_counts_go_to_a_live_cache_of_its_location(tmp_path: Path) -> None:
    live = Cache(tmp_path / "c")
    f = Cache(str(tmp_path / "c")).cached(add_one)
    f(1)
    f(1)
    f(1)
    del f
    gc.collect()
    assert live.saved_stats()[NAME][:2] == (2, 1)
    _cache.flush_statistics()
    assert live.saved_stats()[NAME][:2] == (2, 1)  # once


POOL_OF_DROPPED_CACHES = """
    import multiprocessing, os, sys
    sys.path.insert(0, {tests!r})
    import memojar, test_statistics as t

    def job(x):
        f = memojar.Cache(os.environ["CACHE"], secret="s").cached(t.add_one)
        return f(x) + f(x) + f(x)

    if __name__ == "__main__":
        with multiprocessing.get_context({method!r}).Pool(2) as pool:
            assert pool.map(job, [1, 2, 3, 4]) == [6, 9, 12, 15]
            pool.close()
            pool.join()
"""


@pytest.mark.parametrize("kind", ["folder", "redis"])
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_pool_workers_whose_caches_are_dropped_merge_their_counts_when_they_leave(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str, method: str,
) -> None:
    """Each job makes its ``Cache`` (dropped when it returns). A worker leaves by
    ``os._exit``: a ``fork`` worker's exit merge left a Redis cache's counts for an exit
    merge that never came, and a ``forkserver`` worker (memojar imported after it
    started, so no after-fork hook) merged nothing at all, in a folder too: ``ls``
    showed no hit."""
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} here")
    location = (request.getfixturevalue("redis_location") if kind == "redis"
                else str(tmp_path / "c"))
    script = tmp_path / "pool.py"
    script.write_text(textwrap.dedent(POOL_OF_DROPPED_CACHES).format(
        tests=str(Path(__file__).parent), method=method))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=TIMEOUT, env={**os.environ, "CACHE": location})
    assert done.returncode == 0, done.stderr
    assert Cache(location, secret="s").saved_stats()[NAME][:2] == (8, 4)


# --- signal handlers ---------------------------------------------------------------------

HANDLER_MERGING = """
    import os, signal, sys, time
    import memojar
    cache = memojar.Cache(os.environ["CACHE"])
    f = cache.cached(lambda x: x)
    handled = [0]
    def handler(signum, frame):  # merges (and reads) the counts: %memojar, a status report
        handled[0] += 1
        cache.saved_stats() if handled[0] % 2 else cache.flush_stats()
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    calls = 0
    end = time.monotonic() + 2
    while time.monotonic() < end:
        for _ in range(20):
            f(calls % 7)
            calls += 1
        cache.flush_stats()
    signal.setitimer(signal.ITIMER_REAL, 0)
    [(hits, misses, _)] = cache.saved_stats().values()
    print(calls, hits + misses, handled[0])
"""


def test_a_signal_handler_merging_the_counts_inside_a_merge_neither_hangs_nor_counts_twice(
    tmp_path: Path,
) -> None:
    """``flush_stats`` took a plain lock: a handler calling ``saved_stats`` or
    ``flush_stats`` while its thread merged waited for itself for ever (a reentrant lock
    alone would merge the same counts twice). The handler's merge now returns at once."""
    calls, counted, handled = map(int, run(HANDLER_MERGING, tmp_path / "c").split())
    assert handled > 100
    assert counted == calls


HANDLER_MAKING_CACHES = """
    import os, signal, sys, threading, time
    import memojar
    from memojar import _cache
    _cache.FLUSH_EVERY = 0.1
    flusher = _cache._FLUSHER
    kept = []
    def handler(signum, frame):  # a cache made in a handler starts the thread if none runs
        kept.append(memojar.Cache(os.environ["CACHE"]))
        del kept[:-2]
    signal.signal(signal.SIGALRM, handler)
    memojar.Cache(os.environ["CACHE"])
    signal.setitimer(signal.ITIMER_REAL, 0.0003, 0.0002)
    for _ in range(1000):
        with flusher.lock:  # the thread stopped, as none runs yet in a new process
            thread, flusher.thread = flusher.thread, None
            flusher.stop.set()
        thread.join()
        memojar.Cache(os.environ["CACHE"])  # starts it
    signal.setitimer(signal.ITIMER_REAL, 0)
    time.sleep(1)  # a thread replaced ends at its next wake
    print(sum(t.name == "memojar-stats" for t in threading.enumerate()))
"""


def test_a_signal_handler_inside_the_start_of_the_statistics_thread_starts_no_second(
    tmp_path: Path,
) -> None:
    """A handler making a ``Cache`` while the first cache started the thread started
    another: the first one's start then replaced it, and the handler's ran on, never
    stopped (before a fork either): 385 threads after 3,000 starts."""
    assert run(HANDLER_MAKING_CACHES, tmp_path / "c").strip() == "1"


# --- a damaged statistics file ----------------------------------------------------------

@pytest.mark.parametrize("kept", [
    '{"functions": {"m.f": "abc"}}', '{"functions": []}', '{"functions": {"m.f": [1]}}',
    '{"functions": {"m.f": [1e400, 2, NaN]}}', '{"functions": {"m.f": [true, null, {}]}}',
    '{"functions": {"m.f": [1, 2, 3, 4]}}', '{"functions": {"m.f": [-5, 2, 3]}}',
    '{"functions": {"m.f": ["1", 2, 3]}}', '{"counts": []}', "[" * 100_000,
])
def test_a_damaged_statistics_file_fails_neither_ls_nor_the_merges(tmp_path: Path,
                                                                 kept: str) -> None:
    """A ``.stats`` file damaged or edited by hand into well-formed JSON of other shapes
    made ``memojar ls`` fail ("unexpected error: ValueError ... please report it"), and
    ``saved_stats`` and every merge raise, so no count was saved again. A bad row now
    reads as none, and the next merge writes the file whole."""
    folder = tmp_path / "c"
    cache = Cache(folder)
    f = cache.cached(add_one)
    f(1)
    cache.flush_stats()
    (folder / ".stats").write_text(kept)
    assert ls(folder) == {NAME: (0, 0)}
    f(1)
    cache.flush_stats()
    assert cache.saved_stats() == {NAME: (1, 0, pytest.approx(0, abs=1))}
    assert ls(folder) == {NAME: (1, 0)}


def test_a_damaged_redis_statistics_field_fails_neither_ls_nor_the_merges(
    redis_location: str,
) -> None:
    """A field of the statistics hash that is no number (set by hand) made ``saved_stats``
    raise and stopped the merge's script there, after the fields before it were added: the
    merge was tried again (adding them again) every few seconds."""
    import redis

    cache = Cache(redis_location, secret="s")
    f = cache.cached(add_one)
    g = cache.cached(double)
    f(1)
    g(-1)
    cache.flush_stats()
    client = redis.Redis.from_url(redis_location)
    [key] = client.keys(b"*stats")
    for field in client.hkeys(key):
        if field.endswith(b"\0misses") and b"add_one" in field:
            client.hset(key, field, b"garbage")
    assert NAME not in cache.saved_stats()  # its only field, misses, reads as none
    f(2)
    g(-2)
    for _ in range(3):
        cache.flush_stats()
    stats = cache.saved_stats()
    assert stats[NAME][:2] == (0, 1)  # the bad field replaced by the new miss
    assert stats[f"{__name__}.double"][:2] == (0, 2)  # counted once
    client.close()


def test_counts_a_cache_adopted_are_kept_when_it_is_dropped_in_turn(tmp_path: Path) -> None:
    """A live cache adopts the counts of a dropped one of its location; when its merge
    fails (a full disk) and it is dropped too, it hands them on with its own."""
    live = Cache(tmp_path / "c")
    g = live.cached(double)
    g(1)
    f = Cache(tmp_path / "c").cached(add_one)
    f(1)
    f(1)
    del f
    gc.collect()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    live.store.merge_stats = full  # type: ignore[method-assign]
    live.flush_stats()  # adopts the dropped cache's counts, and fails
    del g, live
    gc.collect()
    stats = Cache(tmp_path / "c").saved_stats()
    assert stats[NAME][:2] == (1, 1)
    assert stats[f"{__name__}.double"][:2] == (0, 1)


INTERRUPTED_MERGES = """
    import os, signal, time
    import memojar
    cache = memojar.Cache(os.environ["CACHE"])
    f = cache.cached(lambda x: x)
    for i in range(5):
        f(i)  # the entries: the calls below hit
    armed = [False]
    def handler(signum, frame):  # Ctrl-C, at any moment of the calls and merges
        if armed[0]:
            armed[0] = False
            raise KeyboardInterrupt
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0007, 0.0003)
    interrupted = 0
    end = time.monotonic() + 2
    while time.monotonic() < end:
        try:
            armed[0] = True
            for i in range(5):
                f(i)
            cache.flush_stats()
            armed[0] = False
        except KeyboardInterrupt:
            interrupted += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    cache.flush_stats()
    info = f.cache_info()
    [(hits, misses, _)] = cache.saved_stats().values()
    print(info.hits + info.misses, hits + misses, interrupted)
"""


def test_merges_interrupted_at_any_moment_count_every_call_once(tmp_path: Path) -> None:
    """A ``KeyboardInterrupt`` every millisecond or so while a process calls and merges:
    once an interrupt had left the stats lock held, none of the later merges was saved;
    later, in one run of three, up to 5 times as many calls were counted (10,023 calls
    counted 52,069 times): the store remembered what a merge that raised had written in an
    attribute its exception handlers set, and an interrupt landing between them (at the
    ``os.path.join`` between its two ``try`` blocks) lost it, so the counts handed back
    were added again. Each merge now writes its id with the counts, and the next merge
    asks whether the one that raised was written before it merges its counts again."""
    if sys.version_info < (3, 11):  # as tests/interrupt_kit.py's SUPPORTED
        pytest.skip("3.10 raises SystemError ('returned a result with an exception set') "
                    "for a handler's exception inside a finalizer (CPython, not memojar)")
    calls, counted, interrupted = map(int, run(INTERRUPTED_MERGES, tmp_path / "c").split())
    assert interrupted > 100
    assert counted == calls


def _merged_calls(cache: Cache) -> int:
    """The calls the store holds (read without merging)."""
    return sum(h + m for h, m, _ in cache.store.read_stats().get("functions", {}).values())


@pytest.mark.skipif(not SUPPORTED, reason="needs opcode tracing (tests/interrupt_kit.py)")
@pytest.mark.parametrize("kind", ["folder", "redis"])
def test_a_merge_interrupted_at_every_point_after_one_that_wrote_counts_each_call_once(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str,
) -> None:
    """The storm above, point by point: a merge interrupted once it had written (the
    counts in the file, the merge raising), then the next merge interrupted at each point
    in turn, then one left to finish: every call counted once. Before, an interrupt at
    ``merge_stats``' ``os.path.join`` (between its two ``try`` blocks) lost what the first
    had written, and the next merge added it again."""
    cache = Cache(request.getfixturevalue("redis_location") if kind == "redis"
                  else tmp_path / "c", secret="s")
    f = cache.cached(add_one)
    calls = [0]

    def call() -> None:
        f(1)
        calls[0] += 1

    call()
    cache.flush_stats()
    landing = None  # a point where an interrupt leaves the merge written
    for injector in Points(cache.flush_stats, call).interrupts():
        if _merged_calls(cache) == calls[0]:
            landing = injector.at
            break
        cache.flush_stats()
    assert landing is not None
    cache.flush_stats()
    assert _merged_calls(cache) == calls[0]

    def after_a_merge_that_wrote() -> None:
        call()
        assert Injector(landing).run(cache.flush_stats)
        assert _merged_calls(cache) == calls[0]  # written, and the merge raised
        call()

    wrong = []
    points = Points(cache.flush_stats, after_a_merge_that_wrote)
    assert points.count > 20
    for injector in points.interrupts():
        cache.flush_stats()
        if _merged_calls(cache) != calls[0]:
            wrong.append((injector.where, _merged_calls(cache) - calls[0]))
            calls[0] = _merged_calls(cache)
    assert wrong == []


@pytest.mark.skipif(not SUPPORTED, reason="needs opcode tracing (tests/interrupt_kit.py)")
@pytest.mark.parametrize("then", ["a live cache of its location", "no live cache"])
def test_dropped_caches_counts_merged_with_an_interrupt_at_every_point_count_once(
    tmp_path: Path, then: str,
) -> None:
    """A cache dropped (its counts handed on), then the merge that takes them interrupted
    at each point in turn, then one left to finish: each call counted once. Before, they
    were taken off the list of dropped caches' counts before they were handed on or
    merged, and an interrupt in between (``_merge_orphans`` just after its ``pop``) lost
    them."""
    folder = tmp_path / "c"
    live = Cache(folder) if then == "a live cache of its location" else None
    calls = [0]

    def dropped() -> None:
        f = Cache(folder).cached(add_one)
        f(1)
        f(1)
        calls[0] += 2
        del f
        gc.collect()

    def merge() -> None:
        if live is not None:
            live.flush_stats()
        else:
            _cache._FLUSHER.merge_all(at_exit=True)

    def merged() -> int:
        kept = json.loads((folder / ".stats").read_text())["functions"]
        return int(sum(h + m for h, m, _ in kept.values()))

    dropped()
    merge()
    assert merged() == calls[0]
    wrong = []
    points = Points(merge, dropped)
    # the points of _cache.py's code (the stores' are the tests' above: a store opened at
    # each merge has hundreds)
    ours = [i for i, (code, _) in enumerate(points.path)
            if code.co_filename == _cache.__file__]
    assert len(ours) > 20
    for at in ours:
        injector = next(points.interrupts(start=at))
        merge()
        if merged() != calls[0] or _left():
            wrong.append((injector.where, merged() - calls[0], len(_left())))
            calls[0] = merged()
    assert wrong == []


@pytest.mark.skipif(not SUPPORTED, reason="needs opcode tracing (tests/interrupt_kit.py)")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (swallowed)
def test_a_cache_collected_with_an_interrupt_at_every_point_keeps_its_counts(
    tmp_path: Path,
) -> None:
    """A cache dropped and collected, an interrupt landing at each point of what memojar
    runs then (finalizers), then a merge: each call counted once. Before, the dropped
    cache's finalizer made the record of its counts, and an interrupt inside it (printed
    and swallowed, as in any finalizer) lost them. The record is made with the cache now,
    and read once the cache is gone."""
    folder = tmp_path / "c"
    live = Cache(folder)
    held: list[Any] = []
    calls = [0]

    def made() -> None:
        f = Cache(folder).cached(add_one)
        f(1)
        f(1)
        calls[0] += 2
        held.append(f)

    def collected() -> None:
        held.clear()
        gc.collect()

    def merged() -> int:
        return int(live.saved_stats()[NAME][0] + live.saved_stats()[NAME][1])

    made()
    collected()
    assert merged() == calls[0]
    made()
    count = Injector(None)
    count.run(collected)
    assert count.count > 5
    wrong = []
    for at in range(count.count):
        made()
        try:
            Injector(at).run(collected)
        except AssertionError:  # swallowed: an interrupt inside a finalizer, as CPython does
            pass
        if merged() != calls[0]:
            wrong.append((at, merged() - calls[0]))
            calls[0] = merged()
    assert wrong == []


def _interrupted_once_written(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache's next merge raises ``KeyboardInterrupt`` once the store has written it."""
    from memojar import _filestore

    store = cache.store  # (not the cache: the test drops it)
    if cache.directory.startswith("redis"):
        script = store._merge  # type: ignore[attr-defined]

        def merge(**kwargs: Any) -> Any:
            monkeypatch.setattr(store, "_merge", script)
            script(**kwargs)
            raise KeyboardInterrupt

        monkeypatch.setattr(store, "_merge", merge)
        return
    replace = _filestore._replace_small

    def written(*args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(_filestore, "_replace_small", replace)
        replace(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(_filestore, "_replace_small", written)


@pytest.mark.parametrize("kind", ["folder", "redis"])
@pytest.mark.parametrize("then", ["a live cache of its location", "no live cache"])
def test_a_cache_dropped_after_a_merge_that_wrote_and_raised_counts_each_call_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
    kind: str, then: str,
) -> None:
    """A cache dropped after its last merge raised once written (an interrupt between the
    store's write and its return): its finalizer handed on every count since its last
    merge that returned, merged again where no store remembered the one that wrote (the
    live cache's store, or one opened for them): counted twice. Now that merge is looked up
    first (its id, written with the counts)."""
    location = (request.getfixturevalue("redis_location") if kind == "redis"
                else str(tmp_path / "c"))
    live = Cache(location, secret="s") if then == "a live cache of its location" else None
    cache = Cache(location, secret="s")
    f = cache.cached(add_one)
    f(1)
    f(1)
    f(1)
    _interrupted_once_written(cache, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        cache.flush_stats()
    assert Cache(location, secret="s").store.read_stats()["functions"][NAME][:2] == [2, 1]
    del cache, f
    gc.collect()
    assert [o for o in _cache._orphans if o.ref() is None]  # dropped
    if live is not None:
        live.flush_stats()
    else:
        _cache._FLUSHER.merge_all(at_exit=True)
    assert Cache(location, secret="s").store.read_stats()["functions"][NAME][:2] == [2, 1]
    assert _left() == []


def test_an_interrupt_while_the_statistics_lock_is_made_leaves_it_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An interrupt inside the making of the lock's object, once the ``flock`` was taken,
    left the descriptor locked for the life of the process: every other process's merge
    waited STATS_WAIT (5 s) and failed."""
    from memojar import _filestore

    cache = Cache(tmp_path / "c")
    f = cache.cached(add_one)
    f(1)
    made = _filestore._FlockLock.__init__

    def interrupted(self: Any, fd: int) -> None:
        monkeypatch.setattr(_filestore._FlockLock, "__init__", made)
        raise KeyboardInterrupt

    monkeypatch.setattr(_filestore._FlockLock, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.flush_stats()
    gc.collect()
    out = run("""
        import os, time, memojar
        c = memojar.Cache(os.environ["CACHE"])
        c.cached(abs)(-1)
        start = time.monotonic()
        c.flush_stats()
        print(round(time.monotonic() - start, 1))
    """, tmp_path / "c")
    assert float(out) < 2
    cache.flush_stats()
    stats = cache.saved_stats()
    assert stats[NAME][:2] == (0, 1)
    assert stats["builtins.abs"][:2] == (0, 1)


# --- forks, kills and processes merging at once -----------------------------------------

FORKING_WHILE_MERGING = """
    import os, subprocess, sys, threading, time
    import memojar
    HOLD = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(2)")
    d = os.environ["CACHE"]
    cache = memojar.Cache(d)
    f = cache.cached(abs)
    f(-1)
    cache.flush_stats()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, d], stdout=subprocess.PIPE,
                              text=True)  # the statistics' lock, held by another for 2 s
    assert holder.stdout.readline().strip() == "held"
    for _ in range(10):
        f(-1)
    merging = threading.Thread(target=cache.flush_stats)  # waits for the lock, holding ours
    merging.start()
    time.sleep(0.2)
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            for _ in range(5):
                f(-1)
            sys.exit(0)  # merges its own five at its exit
        children.append(pid)
    for pid in children:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    merging.join()
    holder.wait()
    cache.flush_stats()
    print(*cache.saved_stats()["builtins.abs"][:2])
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_children_forked_while_a_merge_waits_for_the_lock_count_their_own_calls(
    tmp_path: Path,
) -> None:
    """Held: the parent's merge, waiting for the lock when the children were forked, merges
    the parent's counts once; each child merges only what it counted."""
    assert run(FORKING_WHILE_MERGING, tmp_path / "c").split() == ["25", "1"]


FORKED_AFTER_A_MERGE_THAT_WROTE = """
    import os
    import memojar
    from memojar import _filestore
    cache = memojar.Cache(os.environ["CACHE"])
    f = cache.cached(abs)
    f(-1)
    f(-1)
    replace = _filestore._replace_small
    def written(*args, **kwargs):  # an interrupt once the store wrote the merge
        _filestore._replace_small = replace
        replace(*args, **kwargs)
        raise KeyboardInterrupt
    _filestore._replace_small = written
    try:
        cache.flush_stats()
    except KeyboardInterrupt:
        pass
    pid = os.fork()
    if pid == 0:
        f(-1)
        f(-1)
        cache.flush_stats()  # the child's own merge, recorded under its own name
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    cache.flush_stats()  # settles the parent's: written
    print(*cache.saved_stats()["builtins.abs"][:2])
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_a_child_forked_after_a_merge_that_wrote_and_raised_leaves_its_record_alone(
    tmp_path: Path,
) -> None:
    """Held (the merges' records are each cache's, and a forked child's cache records
    under a name of its own): had the child written under the parent's name, the parent
    would have taken its merge for one not written and counted its calls twice."""
    assert run(FORKED_AFTER_A_MERGE_THAT_WROTE, tmp_path / "c").split() == ["3", "1"]


FORKS_AFTER_CALLS = """
    import os, threading, warnings

    def system_threads():  # what os.fork counts on Linux: /proc/self/stat's 20th field
        with open("/proc/self/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[17])

    at_fork = []  # registered before memojar's hooks: runs after them, as fork() comes
    os.register_at_fork(before=lambda: at_fork.append(system_threads()))
    import memojar
    f = memojar.Cache(os.environ["CACHE"]).cached(abs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for x in range(30):
            f(-x)  # a miss: the statistics thread runs
            f(-x)
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
    f(-100)
    print(max(at_fork), sum("multi-threaded" in str(w.message) for w in caught),
          any(t.name == "memojar-stats" for t in threading.enumerate()))
"""


@pytest.mark.skipif(sys.version_info < (3, 12) or not os.path.exists("/proc/self/stat"),
                    reason="os.fork warns of threads from Python 3.12, counted from /proc")
def test_forks_of_a_process_that_used_memojar_are_not_told_it_is_multi_threaded(
    tmp_path: Path,
) -> None:
    """The statistics thread, stopped before a fork and started again after it, made
    ``os.fork`` warn "This process is multi-threaded" (a DeprecationWarning: pytest shows
    it, a ``multiprocessing`` fork pool too) on every fork after a cached call on Python
    3.13.0, which counts the threads once the parent's after-fork hooks (which started it
    again) ran, and on 2 forks in 100 on 3.12, whose ``join`` returned before the system
    thread was gone. No fork finds a second thread now, none warns, and the thread runs
    again after the next miss."""
    threads, warned, running = run(FORKS_AFTER_CALLS, tmp_path / "c").split()
    assert (threads, warned, running) == ("1", "0", "True")


MERGED_AFTER_A_FORK = """
    import json, os, time
    import memojar
    from memojar import _cache
    _cache.FLUSH_EVERY = 0.1
    cache = memojar.Cache(os.environ["CACHE"])
    f = cache.cached(abs)

    def merged(calls):  # by the statistics thread alone, within 20 s
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with open(os.path.join(os.environ["CACHE"], ".stats")) as file:
                    hits, misses, _ = json.load(file)["functions"]["builtins.abs"]
                if hits + misses >= calls:
                    return hits + misses
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        return 0

    f(-1)
    cache.flush_stats()
    pid = os.fork()
    if pid == 0:
        f(-2)
        f(-2)
        os._exit(0 if merged(3) == 3 else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    f(-3)
    f(-3)
    print(merged(5))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_the_statistics_thread_merges_again_after_a_fork_in_parent_and_child(
    tmp_path: Path,
) -> None:
    """Where the parent's thread starts again at its next miss rather than in the fork's
    hook (Python 3.13.0, see above), it does: a child's calls and the parent's after the
    fork are merged every few seconds, not only at exit."""
    assert run(MERGED_AFTER_A_FORK, tmp_path / "c").strip() == "5"


MERGING_FOR_EVER = """
    import sys, memojar
    cache = memojar.Cache({folder!r})
    f = cache.cached(abs)
    calls = 0
    while True:
        f(-1)
        calls += 1
        cache.flush_stats()
        print(calls, flush=True)
"""


def test_processes_killed_while_they_merge_leave_a_readable_file_short_only_of_the_last(
    tmp_path: Path,
) -> None:
    """Held: three processes merging after every call, killed with SIGKILL at once,
    twice: the file stays readable, and counts every call merged, plus at most the one
    each process had under way."""
    import signal
    import time

    folder = tmp_path / "c"
    least = most = 0
    for delay in (2.0, 2.7):
        procs = [subprocess.Popen([sys.executable, "-c",
                                   textwrap.dedent(MERGING_FOR_EVER).format(folder=str(folder))],
                                  stdout=subprocess.PIPE, text=True) for _ in range(3)]
        time.sleep(delay)
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            printed = proc.communicate(timeout=TIMEOUT)[0].split()
            merged = int(printed[-1]) if printed else 0
            least, most = least + merged, most + merged + 1
        if least:  # (none merged yet on a slow machine: nothing to read)
            kept = json.loads((folder / ".stats").read_text())["functions"]
            hits, misses, _ = kept["builtins.abs"]
            assert least <= hits + misses <= most
    assert least > 0


def test_a_dropped_caches_counts_go_to_its_folder_after_a_chdir(tmp_path: Path) -> None:
    """A cache given a relative path, dropped, then the process changes directory to one
    holding a cache of that name: its counts go to its own folder."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    Cache(tmp_path / "b" / "c").cached(abs)(-1)  # a cache there too
    subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import os, memojar
        def job():
            f = memojar.Cache("c").cached(abs)
            f(-1)
            f(-1)
        job()
        os.chdir("../b")
    """)], cwd=tmp_path / "a", check=True, timeout=TIMEOUT)
    assert ls(tmp_path / "a" / "c") == {"builtins.abs": (1, 1)}
    assert ls(tmp_path / "b" / "c") == {"builtins.abs": (0, 0)}


def test_a_cache_made_when_no_thread_can_start_caches_and_saves_its_counts(
        tmp_path: Path) -> None:
    """A process out of threads (or Python 3.12 at exit, which refuses new threads) could
    not make a ``Cache``: the statistics thread's ``start`` raised ``RuntimeError`` out of
    ``Cache()``. Its counts are merged at the exit instead, and the next cache starts the
    thread."""
    out = run(f"""
        import os, sys, threading
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import memojar, test_statistics as t

        threading.stack_size(1 << 60)  # no thread's stack fits in memory: none starts
        f = memojar.Cache(os.environ["CACHE"]).cached(t.add_one)
        print(f(1), f(1), f(1))
        threading.stack_size(0)
        memojar.Cache(os.environ["CACHE"])
        print(any(th.name == "memojar-stats" for th in threading.enumerate()))
    """, tmp_path / "c")
    assert out.split() == ["2", "2", "2", "True"]
    assert ls(tmp_path / "c") == {NAME: (2, 1)}


def test_an_entry_count_merged_below_zero_is_listed_again_not_stuck_high(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each process merges its entries' ups and downs now and then: a removal merged before
    the write it undoes took the kept count below zero, which was clamped at zero, and the
    write's +1 then merged on top. A writer and a ``cache_delete`` loop in two processes
    left ``cache_info()`` counting 12,856 entries over 2 files, for good. Below zero, the
    count is known to be out of step: it is dropped, and the next look lists the folder."""
    cache_dir = tmp_path / "c"
    (tmp_path / "jobs.py").write_text(textwrap.dedent(f"""
        from memojar import Cache

        @Cache({str(cache_dir)!r}).cached
        def f(i):
            return i
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import jobs

    jobs.f(0)
    assert jobs.f.cache_info().entries == 1  # a listing: the kept count starts at 1
    jobs.f(1)  # +1 noted in this process, not merged yet
    run(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import jobs
        assert jobs.f.cache_delete(0) and jobs.f.cache_delete(1)  # -2, merged at exit
    """, cache_dir)
    assert list(cache_dir.glob("*/*/*.pkl")) == []
    assert jobs.f.cache_info().entries == 0


def test_a_function_decorated_while_the_statistics_thread_maps_stamps_again_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The statistics thread's flush goes through every memo (``restamp_all``): another
    thread decorating a function meanwhile made it raise "Set changed size during
    iteration" (the memos were in a ``WeakSet``, iterated by a generator between whose
    items other threads run), and the thread died of it: no statistics were merged and no
    stamp mapped again until the process ended. The other thread comes between the items
    here (as any thread's switch may)."""
    cache = Cache(tmp_path)
    kept = [cache.cached(memory=4)(lambda x, n=n: x + n) for n in range(3)]
    for f in kept:
        f(1)
    iterate = weakref.WeakSet.__iter__

    def decorated_meanwhile(self: weakref.WeakSet[Any]) -> Any:
        for n, item in enumerate(iterate(self)):
            if n == 1:
                kept.append(cache.cached(lambda x: 2 * x))
                kept[-1](1)
            yield item

    monkeypatch.setattr(weakref.WeakSet, "__iter__", decorated_meanwhile)
    _decorator.restamp_all()  # the statistics thread's, every FLUSH_EVERY seconds: no raise


def _slow_add_one(x: int) -> int:
    import time

    time.sleep(0.05)
    return x + 1


def test_the_time_a_stale_hit_saved_is_not_lost_to_a_hit_of_another_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale hit (``stale_while_revalidate``) added the time it saved with the entry's
    compute time read in between: the read is a call, where another thread runs, and a hit
    that thread counted meanwhile was lost (the sum written back was of before it)."""
    import threading
    import time

    f = Cache(tmp_path).cached(ttl=0.2, stale_while_revalidate=60)(_slow_add_one)
    f(1)
    time.sleep(0.3)  # f(1) is stale now
    f(2)  # fresh
    tally = f.__memojar__.tally  # type: ignore[attr-defined]
    before, read = tally.saved, _decorator._compute_time

    def read_meanwhile(*args: Any) -> Any:
        monkeypatch.setattr(_decorator, "_compute_time", read)
        thread = threading.Thread(target=f, args=(2,))  # a hit, in another thread
        thread.start()
        thread.join(10)
        return read(*args)

    monkeypatch.setattr(_decorator, "_compute_time", read_meanwhile)
    assert f(1) == 2  # stale: served, recomputed in the background
    assert tally.saved - before >= 0.09  # both hits' (0.05 s each)


def test_the_tallies_of_redefined_functions_are_not_kept_one_each_while_counts_cannot_be_saved(
    tmp_path: Path,
) -> None:
    # A read-only cache (a mount, chattr +i): every merge fails. Before, the tally of each
    # dropped decoration (a function defined again per request, a notebook cell run again)
    # waited for a merge that never came: 300 redefinitions, 300 tallies of about 600 bytes.
    # The dropped ones of one name are added into one, their counts kept: stats() says the
    # same, and once the cache can be written again the totals are exact.
    from conftest import immutable

    cache = Cache(tmp_path / "c")

    def decorated() -> Any:
        def load(x: int) -> int:
            return x

        return cache.cached(load)

    first = decorated()
    first(1)
    cache.flush_stats()  # the stats file made: it is then marked immutable too
    del first
    stats_file = tmp_path / "c" / ".stats"
    with immutable(tmp_path / "c"), immutable(stats_file):
        for _ in range(300):
            again = decorated()
            again(1)
            again(2)
            del again
            gc.collect()
            cache.flush_stats()
        assert len(cache._tallies) < 10
        assert (cache.stats().hits, cache.stats().misses) == (599, 2)
    saved = cache.saved_stats()
    assert [counts[:2] for counts in saved.values()] == [(599, 2)]


def test_the_tallies_of_functions_dropped_before_any_call_are_let_go(tmp_path: Path) -> None:
    # Before: a dropped tally went once "all merged", which one never called never was
    # (nothing to merge): 300 decorations dropped uncalled, 300 tallies kept for good.
    cache = Cache(tmp_path / "c")
    for _ in range(300):
        def load(x: int) -> int:
            return x

        decorated = cache.cached(load)
        del decorated, load
    gc.collect()
    cache.flush_stats()
    assert cache._tallies == []


KILLED_AFTER = """
    import os, sys, time
    sys.path.insert(0, {tests!r})
    import memojar, test_statistics as t

    f = memojar.Cache(os.environ["CACHE"]).cached(t.double)
    {job}
    print("done", flush=True)
    time.sleep(600)
"""


def _killed_after(cache_dir: Path, job: str) -> None:
    """``job`` (with ``f`` the cache's ``double``) in a new process, killed with SIGKILL
    once it is done: nothing it counted since its start is merged (one merge in 5 s)."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_AFTER).format(
            tests=str(Path(__file__).parent), job=job)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "CACHE": str(cache_dir)})
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "done\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)


def _listed(cache_dir: Path) -> tuple[int, int]:
    """The entries and bytes of ``double``'s folder, counted from a listing."""
    files = list(cache_dir.glob(f"{__name__}.double*/*/*.pkl"))
    return len(files), sum(p.stat().st_size for p in files)


def _counted_in_a_new_process(cache_dir: Path) -> tuple[int, int]:
    out = run(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import memojar, test_statistics as t
        info = memojar.Cache(os.environ["CACHE"]).cached(t.double).cache_info()
        print(info.entries, info.bytes)
    """, cache_dir)
    entries, size = map(int, out.split())
    return entries, size


def test_entries_written_by_a_process_killed_before_it_merged_them_are_counted(
        tmp_path: Path) -> None:
    """A process killed (SIGKILL, the OOM killer, a spawn pool's ``terminate()``) before
    it merged its entries' counts into the statistics file: before, ``cache_info()`` of
    every process said the count kept before it (1 entry of 6) until a ``prune``. Each
    writing process registers itself (a file it holds locked while it lives): a count read
    finds it dead, and the folder is listed again; its file goes."""
    cache_dir = tmp_path / "c"
    f = Cache(cache_dir).cached(double)
    f(0)
    assert (f.cache_info().entries, f.cache_info().bytes) == _listed(cache_dir)  # kept
    _killed_after(cache_dir, "for x in range(1, 6): f(x)")
    listed = _listed(cache_dir)
    assert listed[0] == 6
    assert (f.cache_info().entries, f.cache_info().bytes) == listed
    assert _counted_in_a_new_process(cache_dir) == listed
    # the dead one's file went; this process's stays while it lives
    assert [name.split("-")[1] for name in os.listdir(cache_dir / ".writers")] == [
        str(os.getpid())]


def test_a_dead_writers_file_goes_at_the_first_count_read_though_no_count_was_kept(
        tmp_path: Path) -> None:
    """A writer killed in a cache whose counts were never listed: the first count read
    removes its file, and the listing it records is the count of the next. Before, its
    file was left while no count was kept, and the next read found it dead, dropped the
    count just recorded and listed every folder again."""
    from memojar import _filestore

    cache_dir = tmp_path / "c"
    _killed_after(cache_dir, "for x in range(3): f(x)")
    f = Cache(cache_dir).cached(double)
    scans = []
    scan = _filestore.FileStore.scan

    def spied(self: Any, *args: Any, **kwargs: Any) -> Any:
        scans.append(args)
        return scan(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_filestore.FileStore, "scan", spied)
        assert f.cache_info().entries == 3
        assert os.listdir(cache_dir / ".writers") == []
        assert f.cache_info().entries == 3
    assert len(scans) == 1


@pytest.mark.parametrize("how", ["Cache.prune", "memojar prune"])
def test_prune_removes_the_files_of_writers_killed_in_the_cache(tmp_path: Path,
                                                               how: str) -> None:
    """Before, only a count read (``cache_info()``) removed them: a cache whose processes
    were killed (``timeout -s KILL``, the OOM killer) and never asked for one kept one file
    a killed process, through every ``prune``."""
    cache_dir = tmp_path / "c"
    for x in range(3):
        _killed_after(cache_dir, f"f({x})")
    assert len(os.listdir(cache_dir / ".writers")) == 3
    if how == "Cache.prune":
        Cache(cache_dir).prune()
    else:
        subprocess.run([sys.executable, "-m", "memojar", "--dir", str(cache_dir), "prune"],
                       check=True, capture_output=True, timeout=TIMEOUT)
    assert os.listdir(cache_dir / ".writers") == []
    listed = _listed(cache_dir)
    assert listed[0] == 3
    assert _counted_in_a_new_process(cache_dir) == listed


def test_removals_of_a_process_whose_listing_another_merge_made_ambiguous_are_counted(
        tmp_path: Path) -> None:
    """A process removed more entries than its cache's kept count (another process's
    writes not merged yet: ``clear()`` of 25 against a count of 5), so its next count read
    lists the folder; another process merges its writes during the listing, which is then
    not recorded. Before, the listing took this process's removals with it all the same:
    the count stayed 25 of an empty folder, and every later merge added to it (377 of 2
    in an attack of four processes writing, deleting and clearing)."""
    from memojar import _filestore

    cache_dir = tmp_path / "c"
    cache = Cache(cache_dir)
    f = cache.cached(double)
    for x in range(5):
        f(x)
    assert f.cache_info().entries == 5  # a count kept
    cache.flush_stats()
    other = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            import memojar, test_statistics as t

            cache = memojar.Cache(os.environ["CACHE"])
            f = cache.cached(t.double)
            for x in range(10, 30):
                f(x)
            print("written", flush=True)
            sys.stdin.readline()
            cache.flush_stats()
            print("merged", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "CACHE": str(cache_dir)})
    assert other.stdin is not None and other.stdout is not None
    try:
        assert other.stdout.readline() == "written\n"
        assert cache.clear() == 25
        scan = _filestore.FileStore.scan

        def merged_meanwhile(self: Any, *args: Any, **kwargs: Any) -> Any:
            assert other.stdin is not None and other.stdout is not None
            other.stdin.write("merge\n")
            other.stdin.flush()
            assert other.stdout.readline() == "merged\n"
            return scan(self, *args, **kwargs)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_filestore.FileStore, "scan", merged_meanwhile)
            assert f.cache_info().entries == 0  # listed
        assert f.cache_info().entries == 0
    finally:
        other.communicate("\n", timeout=TIMEOUT)
    assert _counted_in_a_new_process(cache_dir) == (0, 0)
    cache.flush_stats()
    assert _counted_in_a_new_process(cache_dir) == (0, 0)


def test_a_listing_begun_before_a_writer_was_found_dead_is_not_recorded(
        tmp_path: Path) -> None:
    """A count read lists the folder; meanwhile another process writes an entry where the
    listing has passed and is killed, and a third finds it dead, lists and records the
    count (6). The first listing (5), begun before, must not be recorded over it: no merge
    says the folder changed (the dead one merged nothing). Before, it was, and the count
    said 5 entries of 6 for good (1 to 3 entries short after rounds of writers killed)."""
    from memojar import _filestore

    cache_dir = tmp_path / "c"
    cache = Cache(cache_dir)
    f = cache.cached(double)
    for x in range(5):
        f(x)
    cache.flush_stats()  # no listing: no count kept
    scan = _filestore.FileStore.scan

    def passed_then_killed(self: Any, *args: Any, **kwargs: Any) -> Any:
        listed = list(scan(self, *args, **kwargs))
        _killed_after(cache_dir, "f(10)")
        for _ in range(2):  # (found dead by the first or, with a count kept, the second)
            assert _counted_in_a_new_process(cache_dir) == _listed(cache_dir)
        assert [name.split("-")[1] for name in os.listdir(cache_dir / ".writers")] == [
            str(os.getpid())]  # the dead one's went
        return iter(listed)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_filestore.FileStore, "scan", passed_then_killed)
        assert f.cache_info().entries == 5  # its listing's
    assert _listed(cache_dir)[0] == 6
    assert (f.cache_info().entries, f.cache_info().bytes) == _listed(cache_dir)
    assert _counted_in_a_new_process(cache_dir) == _listed(cache_dir)


def test_entries_removed_by_a_process_killed_before_it_merged_them_are_not_counted(
        tmp_path: Path) -> None:
    """The same for removals (``cache_delete``): before, the count stayed too high."""
    cache_dir = tmp_path / "c"
    f = Cache(cache_dir).cached(double)
    for x in range(4):
        f(x)
    assert f.cache_info().entries == 4
    _killed_after(cache_dir, "assert f.cache_delete(0) and f.cache_delete(1)")
    assert _listed(cache_dir)[0] == 2
    assert (f.cache_info().entries, f.cache_info().bytes) == _listed(cache_dir)


def test_entries_written_by_a_forked_child_killed_before_it_merged_them_are_counted(
        tmp_path: Path) -> None:
    """A forked child registers itself (its parent's file stays the parent's): killed,
    its writes are counted by the parent, which lives on."""
    out = run(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import memojar, test_statistics as t

        f = memojar.Cache(os.environ["CACHE"]).cached(t.double)
        f(0)
        print(f.cache_info().entries)
        pid = os.fork()
        if pid == 0:
            for x in range(1, 4):
                f(x)
            os.kill(os.getpid(), signal.SIGKILL)
        assert os.waitpid(pid, 0)[1] == signal.SIGKILL
        f(4)
        print(f.cache_info().entries)
    """, tmp_path / "c")
    assert out.split() == ["1", "5"]
    assert _listed(tmp_path / "c")[0] == 5


def test_entries_written_in_a_cache_removed_and_made_again_by_a_process_killed_are_counted(
        tmp_path: Path) -> None:
    """A process's cache removed while it lives (``rm -rf``, with its writer file) and
    made again by its next write: it registers again. Before, it stayed unregistered
    (once a process): killed, its later writes went uncounted (1 entry of 4, for good)."""
    cache_dir = tmp_path / "c"
    _killed_after(cache_dir, "f(0); import shutil; shutil.rmtree(os.environ['CACHE']); "
                             "f(1); f.cache_info(); f(2); f(3); f(4)")
    assert _listed(cache_dir)[0] == 4
    assert _counted_in_a_new_process(cache_dir) == _listed(cache_dir)


def test_a_process_writing_in_many_caches_one_after_another_keeps_no_file_open_for_each(
        tmp_path: Path) -> None:
    """A ``Cache`` a folder, dropped after use (a test suite's ``Cache(tmp_path)``), in a
    process that lives on: its writer file goes with its last store, past the last 8
    caches so dropped (its lock let go, the file left where changes were not merged yet,
    for the next reader to list). Before,
    each stayed open until the exit: past the limit of open files (64 here, 1024 by
    default), every write of the process failed ('Too many open files'). At its exit the
    changes left are merged, and those files go too."""
    out = run(f"""
        import gc, os, resource, sys, warnings
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import memojar, test_statistics as t

        warnings.simplefilter("error")
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        root = os.environ["CACHE"]
        memojar._cache.FLUSH_EVERY = 3600  # no merge by the thread (a loaded loop passed 5 s)

        def job(i, merged):
            cache = memojar.Cache(os.path.join(root, str(i)))
            f = cache.cached(t.double)
            f(i)
            if merged:
                cache.flush_stats()

        for i in range(100):
            job(i, i % 2)
            gc.collect()
        print(len(os.listdir("/proc/self/fd")))
        print(*(len(os.listdir(os.path.join(root, str(i), ".writers"))) for i in range(92)))
    """, tmp_path / "c")
    opened, *files = out.split()
    assert int(opened) < 20
    # an unmerged one's left, unlocked (the next reader lists its folder) while it lives
    assert files == ["1", "0"] * 46
    assert [len(os.listdir(tmp_path / "c" / str(i) / ".writers")) for i in range(100)] == [
        0] * 100
    for i in (0, 2, 98, 99):
        assert _counted_in_a_new_process(tmp_path / "c" / str(i)) == _listed(
            tmp_path / "c" / str(i))


@pytest.mark.parametrize("step", ["looked", "taken"])
def test_a_cache_dropped_while_another_thread_makes_a_store_of_a_kept_one_says_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """A thread drops a cache's last store, past the 8 caches whose writer files are kept
    (``_filestore._KEPT``), just as another thread makes a store of the oldest kept one
    (a Cache made a call): both took it out of the table, and the dropping thread's
    KeyError (a RuntimeError where the table changed as it looked) went to the user's
    stderr, "Exception ignored in _Tally.__del__" (8 threads using 24 caches in turn: 3 in
    6 s). The other thread runs here where the dropping one looked at the oldest or is
    about to take it."""
    from memojar import _filestore

    class Switching(dict[str, None]):
        """The kept table, whose oldest name another thread's ``Cache`` takes out just as
        this thread's ``_let_go`` looks at it (``step``)."""

        armed = False

        def other_thread_makes_a_store_of_the_oldest(self) -> None:
            if self.armed:
                self.armed = False
                other = threading.Thread(target=made_by_another_thread,
                                         args=(next(iter(dict(self))),))
                other.start()
                other.join()

        def __iter__(self) -> Any:
            found = super().__iter__()
            if step == "looked":
                self.other_thread_makes_a_store_of_the_oldest()
            return found

        def pop(self, *args: Any) -> Any:
            if step == "taken" and args[0] == next(iter(dict(self)), None):
                self.other_thread_makes_a_store_of_the_oldest()
            return super().pop(*args)

        def __delitem__(self, key: str) -> None:
            if step == "taken":
                self.other_thread_makes_a_store_of_the_oldest()
            super().__delitem__(key)

    ignored: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    stored: list[int] = []
    held: list[Cache] = []

    def made_by_another_thread(root: str) -> None:
        held.append(Cache(root))  # (held: its store's tally too)
        stored.append(held[0].cached(add_one)(0))

    kept = Switching()
    monkeypatch.setattr(_filestore, "_KEPT", kept)
    for i in range(_filestore._KEPT_MAX + 1):
        cache = Cache(tmp_path / str(i))
        assert cache.cached(add_one)(i) == i + 1
        if i == _filestore._KEPT_MAX:
            kept.armed = True
        del cache
        gc.collect()
    assert stored == [1]  # the other thread ran
    assert [str(exc.exc_value) for exc in ignored] == []
    assert len(kept) <= _filestore._KEPT_MAX


def test_a_writers_file_linked_by_a_copy_of_the_cache_goes_at_its_exit(
        tmp_path: Path) -> None:
    """A copy of the cache made with hard links (``cp -al``) while a process writes: at its
    exit its writer file goes from the cache (its own: the one it holds), though linked
    twice; the copy's link is left."""
    out = run(f"""
        import os, subprocess, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import memojar, test_statistics as t

        cache = memojar.Cache(os.environ["CACHE"])
        cache.cached(t.double)(1)
        subprocess.run(["cp", "-al", os.environ["CACHE"], os.environ["CACHE"] + "-copy"],
                       check=True)
        print(len(os.listdir(os.path.join(os.environ["CACHE"], ".writers"))))
    """, tmp_path / "c")
    assert out.split() == ["1"]
    assert os.listdir(tmp_path / "c" / ".writers") == []
    assert len(os.listdir(tmp_path / "c-copy" / ".writers")) == 1


@pytest.mark.parametrize("kind", ["hard link", "symlink", "fifo", "folder", "moved"])
def test_what_the_user_put_in_the_writers_folder_under_a_writers_name_is_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """A hard link to a user's file, a symlink, a FIFO, a folder or a user's file moved
    there in ``.writers`` named as a dead writer's file: a count read passes them by (never
    follows, opens to wait on, locks or removes them). Before, the hard link was taken for
    a dead writer's file and removed (its writer files have one link: memojar never links
    them); then it had an fcntl lock taken on it at every count read (the user's program
    locking its file failed meanwhile); and the moved file (its only link) was removed,
    with what it held (memojar writes nothing in a writer's file)."""
    import fcntl

    from memojar import _filestore

    cache_dir = tmp_path / "c"
    f = Cache(cache_dir).cached(double)
    f(0)
    assert f.cache_info().entries == 1
    mine = tmp_path / "notes.txt"
    mine.write_text("the user's")
    planted = cache_dir / ".writers" / f"{_filestore._MACHINE}-4194304-1-{'0' * 16}"
    {"hard link": lambda: os.link(mine, planted),
     "symlink": lambda: planted.symlink_to(mine),
     "fifo": lambda: os.mkfifo(planted),
     "folder": planted.mkdir,
     "moved": lambda: mine.rename(planted)}[kind]()
    if kind == "moved":
        mine = planted
    locked: list[int] = []
    flock = fcntl.flock
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (locked.append(os.fstat(fd).st_ino),
                                                        flock(fd, op))[1])
    f(1)
    assert (f.cache_info().entries, f.cache_info().bytes) == _listed(cache_dir)
    assert os.path.lexists(planted) and mine.read_text() == "the user's"
    assert mine.stat().st_nlink == (2 if kind == "hard link" else 1)
    assert mine.stat().st_ino not in locked


def test_entries_of_a_cache_dropped_before_its_merge_are_counted(tmp_path: Path) -> None:
    """A ``Cache`` made in a function that returned before its counts were merged: its
    entries' changes went with its store. Before, ``cache_info()`` said 1 entry of 3 in
    every process for good; its changes now go to the process's next store of the cache,
    and, at its exit, are listed again by the next reader."""
    out = run(f"""
        import gc, os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import memojar, test_statistics as t

        def job(*xs):
            f = memojar.Cache(os.environ["CACHE"]).cached(t.double)
            for x in xs:
                f(x)
            return f.cache_info().entries

        print(job(0))
        gc.collect()
        job(1)
        gc.collect()
        print(job())
        job(2)
        gc.collect()
    """, tmp_path / "c")
    assert out.split() == ["1", "2"]
    assert _counted_in_a_new_process(tmp_path / "c") == _listed(tmp_path / "c")
    assert _listed(tmp_path / "c")[0] == 3


WRITES_THEN_MERGES = """
    import os, sys
    sys.path.insert(0, {tests!r})
    import memojar, test_statistics as t

    cache = memojar.Cache(os.environ["CACHE"])
    f = cache.cached(t.double)
    for x in {xs!r}:
        f(x)
    print("written", flush=True)
    sys.stdin.readline()
    cache.flush_stats()
"""


def test_a_count_listed_while_another_process_wrote_is_not_added_its_writes_again(
        tmp_path: Path) -> None:
    """A listing made while another process had written entries it had not merged yet:
    its later merge added them to the listing's count, which held them already (before:
    7 entries of 4, for good). Its changes now meet the listing by the statistics file's
    merge number: the count is dropped, and the next look lists again."""
    cache_dir = tmp_path / "c"
    f = Cache(cache_dir).cached(double)
    f(0)
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITES_THEN_MERGES).format(
            tests=str(Path(__file__).parent), xs=[1, 2, 3])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "CACHE": str(cache_dir)})
    assert writer.stdout is not None and writer.stdout.readline() == "written\n"
    assert f.cache_info().entries == 4  # listed (the count kept from here, before)
    writer.communicate("\n", timeout=TIMEOUT)  # its merge of +3
    assert writer.returncode == 0
    assert (f.cache_info().entries, f.cache_info().bytes) == _listed(cache_dir)
    # its writer file went at its exit, which merged all: no process lists for it
    assert [name.split("-")[1] for name in os.listdir(cache_dir / ".writers")] == [
        str(os.getpid())]


def test_a_listing_another_process_merged_writes_into_meanwhile_is_not_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process wrote and merged between the start of a listing, which missed its entry,
    and the recording of the listing's count: before, the count stayed one short for good
    (its merge had gone to no count, the listing then recorded without it)."""
    from memojar import _filestore

    cache_dir = tmp_path / "c"
    f = Cache(cache_dir).cached(double)
    f(0)
    scan = _filestore.FileStore.scan

    def then_another_writes(self: Any, *args: Any, **kwargs: Any) -> Any:
        yield from scan(self, *args, **kwargs)
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(WRITES_THEN_MERGES).format(
                tests=str(Path(__file__).parent), xs=[1])],
            input="\n", capture_output=True, text=True, timeout=TIMEOUT,
            env={**os.environ, "CACHE": str(cache_dir)})
        assert done.returncode == 0, done.stderr

    monkeypatch.setattr(_filestore.FileStore, "scan", then_another_writes)
    assert f.cache_info().entries == 1  # the listing, made before the other's write
    monkeypatch.undo()
    assert (f.cache_info().entries, f.cache_info().bytes) == _listed(cache_dir)
    assert _listed(cache_dir)[0] == 2


REMOVED_MEANWHILE = """
import os, shutil
from memojar import Cache, _cache
_cache._FLUSHER.stop.set()  # no merge from the statistics thread: this program merges
root = os.environ["CACHE"]
stats = os.path.join(root, ".stats")


def step(x):
    return x


stepped = Cache(root).cached(step)
stepped(1)
_cache._FLUSHER.flush()  # the statistics file made
stepped(2)
os.unlink(stats)  # an rm -rf of the cache, under way: its folders are still there
_cache._FLUSHER.flush()
_cache._FLUSHER.flush()
print(os.path.exists(stats))
shutil.rmtree(root)  # removed; then the cache is used again
stepped(3)
_cache._FLUSHER.flush()
print(os.path.exists(stats))
"""


def test_a_merge_makes_no_statistics_file_in_a_cache_being_removed(tmp_path: Path) -> None:
    """Merges that find the statistics file this process made gone from its folder (an
    ``rm -rf`` of the cache, a ``TemporaryDirectory``'s cleanup, under way) make none: the
    removal's last ``rmdir`` would fail on it ("Directory not empty": 1 run in 30 of a
    script removing its cache of 5,000 entries, and every one with merges 2 ms apart,
    before the folder's identity was looked at). Once the cache is used again in a folder
    made again, the file is made with the counts that waited: the second and third calls'
    misses (the first's went with the file removed)."""
    cache = tmp_path / "cache"
    assert run(REMOVED_MEANWHILE, cache).split() == ["False", "True"]
    (hits, misses, _), = Cache(cache).saved_stats().values()
    assert (hits, misses) == (0, 2)


FORKING_WHILE_DECORATING = """
    import os, time
    import memojar
    from memojar import _cache
    _cache.FLUSH_EVERY = 0.3
    cache = memojar.Cache(os.environ["CACHE"])
    decorated = 0
    for _ in range(40):  # a fork every 50 ms or more, functions decorated and dropped
        for _ in range(20):
            cache.cached(lambda x: x)
            decorated += 1
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.05)
    print(decorated, len(cache._tallies))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_a_process_forking_often_still_merges_and_lets_dropped_functions_go(
    tmp_path: Path,
) -> None:
    """Old: each fork started the statistics thread again, whose first merge was
    ``FLUSH_EVERY`` seconds off: a process forking more often never merged until its exit,
    and kept the tally of every function it decorated and dropped (a lambda per request),
    which each fork's child copied: 100 forks took 6 s, then 24 s, as a thread decorated
    lambdas. The thread merges when the one it replaced would have."""
    decorated, listed = map(int, run(FORKING_WHILE_DECORATING, tmp_path / "c").split())
    assert decorated == 800
    assert listed < decorated / 2
