"""Attack 4: many callers at once. Same arguments: one computation. Different: in parallel."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from faultkit import finish, read_line, spawn

from memojar import Cache

STAMPEDE_JOB = """
import os, time
from memojar import Cache

cache = Cache(os.environ["CACHE"])

@cache.cached
def slow(x):
    with open(os.environ["LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(1.0)
    return x * 2
"""

CALLER = """
import os, time
from stampjob import slow
print("ready", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(os.environ["GO"]) and time.monotonic() < deadline:
    time.sleep(0.005)
print(slow(21), slow.cache_info().misses, flush=True)
"""


@pytest.mark.slow
def test_eight_processes_compute_once(tmp_path: Path) -> None:
    (tmp_path / "stampjob.py").write_text(STAMPEDE_JOB)
    log, go = tmp_path / "computations.log", tmp_path / "go"
    env = {"CACHE": str(tmp_path / "cache"), "LOG": str(log), "GO": str(go),
           "PYTHONPATH": str(tmp_path)}
    procs = [spawn(CALLER, **env) for _ in range(8)]
    try:
        for proc in procs:
            assert read_line(proc, timeout=60) == "ready"
        go.touch()
        results = [finish(proc, timeout=60).split() for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
    assert [value for value, _ in results] == ["42"] * 8
    assert sorted(misses for _, misses in results) == ["0"] * 7 + ["1"]
    assert len(log.read_text().splitlines()) == 1


SEED_JOB = """
import os, time
from memojar import Cache

cache = Cache(os.environ["CACHE"])

@cache.cached
def value(x):
    print("computing", flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(os.environ["GO"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "computed"
"""

SEEDER = """
import os, threading
from seedjob import value
done = []
seed = threading.Thread(target=lambda: done.append(value.cache_set("seeded", 1)))
seed.start()
seed.join(1.0)  # the computation of the same call in the other process still runs
open(os.environ["GO"], "w").close()  # let it finish
seed.join(30)
print("stored" if done else "failed", flush=True)
"""


def test_cache_set_during_a_computation_of_the_call_is_not_overwritten_by_it(
    tmp_path: Path,
) -> None:
    """Process B computes value(1); process A seeds value(1) with cache_set meanwhile. A's
    value is the later one: it is the entry once both are done (the seed waits for the key's
    lock, as a miss does), not B's, written over it when B finishes."""
    (tmp_path / "seedjob.py").write_text(SEED_JOB)
    env = {"CACHE": str(tmp_path / "cache"), "GO": str(tmp_path / "go"),
           "PYTHONPATH": str(tmp_path)}
    computing = spawn("from seedjob import value\nprint(value(1), flush=True)", **env)
    try:
        assert read_line(computing, timeout=60) == "computing"
        assert finish(spawn(SEEDER, **env), timeout=60).split() == ["stored"]
        assert finish(computing, timeout=60).split() == ["computed"]
    finally:
        computing.kill()
        computing.communicate()
    reader = "from seedjob import value\nprint(value(1), value.cache_info().misses)"
    assert finish(spawn(reader, **env), timeout=60).split() == ["seeded", "0"]


def _run_threads(n: int, target) -> float:
    """Start ``n`` threads behind a barrier, join them (bounded); return the wall time."""
    barrier = threading.Barrier(n + 1, timeout=30)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread, which fails
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.monotonic()
    for t in threads:
        t.join(timeout=60)
    took = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "a caller hangs"
    assert errors == []
    return took


def test_sixteen_threads_compute_once(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    computed: list[int] = []

    @cache.cached
    def slow(x: int) -> int:
        computed.append(x)
        time.sleep(0.5)
        return x * 2

    results: dict[int, int] = {}
    _run_threads(16, lambda i: results.__setitem__(i, slow(21)))
    assert results == {i: 42 for i in range(16)}
    assert computed == [21]
    assert slow.cache_info()[:2] == (15, 1)


def test_threads_waiting_for_a_value_that_was_not_stored_compute_theirs_at_once(
        cache_dir: Any) -> None:
    """Six threads call at once; the value is never stored (computed under
    ``min_compute_time``; so too one that cannot be pickled, over ``max_size``, or a full
    disk). The five that waited for the first compute their own as soon as it is done, side
    by side. Before, each took the key's lock in turn and computed again under it: six
    computations one after another (100 threads x 5 calls of 0.05 s: 25.7 s)."""
    cache = Cache(cache_dir)
    running, most = [0], [0]
    guard = threading.Lock()

    @cache.cached(min_compute_time=3600)
    def slow(x: int) -> int:
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(1.0)
        with guard:
            running[0] -= 1
        return x * 2

    results: dict[int, int] = {}
    _run_threads(6, lambda i: results.__setitem__(i, slow(21)))
    assert results == {i: 42 for i in range(6)}
    assert slow.cache_info().misses == 6  # none stored: each computed
    assert most[0] >= 2  # the waiters side by side, not in turn


def test_threads_making_a_new_cache_at_once_all_find_it_theirs(tmp_path: Path) -> None:
    """8 threads open a cache that does not exist yet and call at once, 100 times over: one
    tags the new folder (a temporary file linked at CACHEDIR.TAG), and none takes it for a
    folder of the user's meanwhile (a refusal, or a MemojarWarning: filterwarnings=error)."""
    for n in range(100):
        root = tmp_path / str(n) / "cache"

        def call(i: int, root: Path = root) -> None:
            f = Cache(root).cached(lambda x: x + 1)
            assert f(1) == 2

        _run_threads(8, call)
        names = {p.name for p in root.iterdir()}
        assert {".gitignore", "CACHEDIR.TAG"} <= names, names
        assert not any(name.endswith(".tmp") for name in names), names


@pytest.mark.slow
def test_different_arguments_compute_in_parallel(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    computed: list[int] = []

    @cache.cached
    def slow(x: int) -> int:
        computed.append(x)
        time.sleep(1.5)
        return x * 2

    start = time.monotonic()
    assert slow(0) == 0
    one_call = time.monotonic() - start
    results: dict[int, int] = {}
    took = _run_threads(4, lambda i: results.__setitem__(i, slow(i + 1)))
    assert results == {0: 2, 1: 4, 2: 6, 3: 8}
    assert sorted(computed) == [0, 1, 2, 3, 4]
    assert took < 2.5 * one_call, (took, one_call)  # serialised, it would take 4x


def test_more_threads_than_redis_pys_pool_default_all_store(redis_location: str) -> None:
    """150 threads missing different keys of a Redis cache at once: every result is
    stored, nothing said. Before, redis-py 8's pool allowed 100 connections (2**31 up to
    5): the 101st command under way raised 'Too many connections', a ConnectionError that
    memojar took for an unreachable server, so results were returned but not stored
    ('cannot reach the server (Too many connections)') and later calls skipped the server.
    Found as 100 threads each holding a key and waiting for another process's key."""
    import warnings

    redis = pytest.importorskip("redis")
    if int(redis.__version__.split(".")[0]) < 6:  # an unbounded pool by default there
        pytest.skip("redis-py before 6 has no connection limit by default")
    cache = Cache(redis_location, secret=b"s")
    n = 150
    together = threading.Barrier(n)
    calls: list[int] = []

    @cache.cached
    def slow(x: int) -> int:
        calls.append(x)
        together.wait(30)  # every thread's miss under way at once, each with its lease
        return x * 2

    got: dict[int, int] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, slow(i)))
                   for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert [str(w.message) for w in caught] == []
    assert got == {i: i * 2 for i in range(n)}
    assert [slow(i) for i in range(n)] == [i * 2 for i in range(n)]
    assert len(calls) == n  # each stored: the second pass hit
    cache.close()
