"""Lock-order cycles: cached ``f(a)`` calls ``g(b)`` while another thread's (task's,
process's) ``g(b)`` calls ``f(a)``. Each holds one key's lock and waits for the other's.
The waiter that closes the cycle sees it at once (within a process by ``_waits``; between
processes, on every store, rings too, by the notes of ``KeyLock.note_waiting``) and
computes without the lock, with a warning; a wait past ``lock_timeout`` names the locks the
caller held meanwhile."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache, MemojarWarning, _waits

LONG = 60  # lock_timeout of these tests: a cycle that is not seen waits it out
CYCLE = r"lock-order cycle"


def _pair(cache: Cache, meet: Any, calls: list[str]) -> tuple[Any, Any]:
    """``f(x, who=1)`` calls ``g(x)``, ``g(x, who=2)`` calls ``f(x)`` (``who`` is not in the
    key), each once ``meet()`` says both hold their own key."""

    @cache.cached(ignore=("who",))
    def f(x: int, who: int) -> int:
        calls.append(f"f{who}")
        if who == 1:
            meet()
            return g(x, who) + 1
        return 10

    @cache.cached(ignore=("who",))
    def g(x: int, who: int) -> int:
        calls.append(f"g{who}")
        if who == 2:
            meet()
            return f(x, who) + 1
        return 20

    return f, g


@pytest.fixture
def cache(location: str) -> Iterator[Cache]:
    """A cache of each store kind, closed after (its connections with it)."""
    made = Cache(location, lock_timeout=LONG)
    yield made
    made.close()


def test_a_cycle_between_two_threads_is_broken_at_once(cache: Cache) -> None:
    barrier = threading.Barrier(2)
    calls: list[str] = []
    f, g = _pair(cache, barrier.wait, calls)
    out: dict[int, int] = {}
    start = time.monotonic()
    with pytest.warns(MemojarWarning, match=CYCLE) as caught:
        threads = [threading.Thread(target=lambda: out.__setitem__(1, f(1, 1))),
                   threading.Thread(target=lambda: out.__setitem__(2, g(1, 2)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(LONG * 2)
    took = time.monotonic() - start
    assert took < 10, f"{took:.1f} s: the cycle was waited out"  # before: lock_timeout
    messages = [str(w.message) for w in caught if CYCLE in str(w.message)]
    assert len(messages) == 1, messages
    assert "f " in messages[0] and ".g " in messages[0]  # both functions named
    # One of the two computed the other's key itself (what it would do uncached), the other
    # read that; every result is one the function gives.
    assert sorted(out.items()) in ([(1, 21), (2, 22)], [(1, 12), (2, 11)])
    assert f(1, 0) == out[1] and g(1, 0) == out[2]  # stored: hits now
    assert not _waits._holder and not _waits._waiting


def test_a_cycle_through_three_threads_is_broken_at_once(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c", lock_timeout=LONG)
    barrier = threading.Barrier(3)

    @cache.cached(ignore=("first",))
    def step(n: int, first: bool) -> int:
        if first:  # each thread holds its own step, then calls the next one's
            barrier.wait()
            return step((n + 1) % 3, False) + 1
        return n * 10

    out: dict[int, int] = {}
    start = time.monotonic()
    with pytest.warns(MemojarWarning, match=CYCLE) as caught:
        threads = [threading.Thread(target=lambda n=n: out.__setitem__(n, step(n, True)))
                   for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(LONG * 2)
    assert time.monotonic() - start < 10
    cycle = [str(w.message) for w in caught if CYCLE in str(w.message)]
    assert len(cycle) == 1 and cycle[0].count("which waits for") == 2, cycle
    assert len(out) == 3


def test_a_cycle_between_two_tasks_is_broken_at_once(cache: Cache) -> None:
    calls: list[str] = []

    @cache.cached(ignore=("who",))
    async def f(x: int, who: int) -> int:
        calls.append(f"f{who}")
        if who == 1:
            await asyncio.sleep(0.2)
            return await g(x, who) + 1
        return 10

    @cache.cached(ignore=("who",))
    async def g(x: int, who: int) -> int:
        calls.append(f"g{who}")
        if who == 2:
            await asyncio.sleep(0.2)
            return await f(x, who) + 1
        return 20

    async def both() -> list[int]:
        return list(await asyncio.gather(f(1, 1), g(1, 2)))

    start = time.monotonic()
    with pytest.warns(MemojarWarning, match=CYCLE):
        out = asyncio.run(asyncio.wait_for(both(), LONG * 2))
    assert time.monotonic() - start < 10  # before: lock_timeout
    assert out in ([21, 22], [12, 11])
    assert not _waits._holder and not _waits._waiting


def test_no_cycle_no_shortcut(tmp_path: Path) -> None:
    """A holder that waits for a key whose holder merely computes (waits for nothing)
    waits for it: computed once, no warning."""
    cache = Cache(tmp_path / "c", lock_timeout=LONG)
    started = threading.Event()
    runs: list[str] = []

    @cache.cached
    def slow(x: int) -> int:
        runs.append("slow")
        started.set()
        time.sleep(0.5)
        return x

    @cache.cached
    def outer(x: int) -> int:
        started.wait()
        return slow(x) + 1

    t = threading.Thread(target=slow, args=(1,))
    t.start()
    assert outer(1) == 2
    t.join()
    assert runs == ["slow"]


def test_the_same_key_again_in_one_thread_computes_at_once(tmp_path: Path) -> None:
    """f(a) -> g(b) -> f(a) in one thread: the inner f(a) computes at once (recursion)."""
    cache = Cache(tmp_path / "c", lock_timeout=LONG)

    @cache.cached(ignore=("depth",))
    def f(x: int, depth: int) -> int:
        return g(x, depth + 1) + 1 if depth < 2 else 0

    @cache.cached(ignore=("depth",))
    def g(x: int, depth: int) -> int:
        return f(x, depth + 1) + 1

    start = time.monotonic()
    assert f(1, 0) == 2
    assert time.monotonic() - start < 5


CROSS = """
import asyncio, sys, time, warnings
from memojar import Cache
c = Cache(sys.argv[1], lock_timeout=float(sys.argv[2]))
who, mode = int(sys.argv[3]), sys.argv[4]
if mode == "sync":
    @c.cached(ignore=("who",))
    def f(x, who):
        if who == 1:
            time.sleep(1); return g(x, who) + 1
        return 10
    @c.cached(ignore=("who",))
    def g(x, who):
        if who == 2:
            time.sleep(1); return f(x, who) + 1
        return 20
    call = lambda: (f if who == 1 else g)(1, who)
else:
    @c.cached(ignore=("who",))
    async def f(x, who):
        if who == 1:
            await asyncio.sleep(1); return await g(x, who) + 1
        return 10
    @c.cached(ignore=("who",))
    async def g(x, who):
        if who == 2:
            await asyncio.sleep(1); return await f(x, who) + 1
        return 20
    call = lambda: asyncio.run((f if who == 1 else g)(1, who))
# Both ready before either calls: each takes its first key within the other's second of
# sleep (a process slow to start, importing boto3 on a loaded machine, came a second late:
# it found the other's value stored, and no cycle was made)
import pathlib
if len(sys.argv) > 5:  # (given by _two_processes; the other tests meet otherwise)
    ready = pathlib.Path(sys.argv[5])
    (ready / str(who)).touch()
    deadline = time.monotonic() + 60
    while not (ready / str(3 - who)).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    print(call())
for w in caught:
    print(w.message)
"""


def _two_processes(location: str, timeout: float, ready: Path, mode: str = "sync"
                   ) -> tuple[list[str], float]:
    import subprocess

    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", CROSS, location, str(timeout),
                               str(who), mode, str(ready)], stdout=subprocess.PIPE, text=True)
             for who in (1, 2)]
    while len(list(ready.iterdir())) < 2 and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    start = time.monotonic()  # (from when both are ready: their start is not the wait's)
    outs = [p.communicate(timeout=LONG * 2)[0] for p in procs]
    return outs, time.monotonic() - start


@pytest.mark.parametrize(("kind", "mode"), [("file", "sync"), ("file", "async"),
                                            ("redis", "sync"), ("redis", "async"),
                                            ("s3", "sync"), ("s3", "async")])
def test_a_cycle_between_two_processes_is_broken_at_once(
        kind: str, mode: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Each process notes, where the holder of the key it waits for can see it (a read
    lock on a byte of that key's lock file above the keys' bytes; a key beside the Redis
    lease), the keys it holds, then asks whether the holder of the key it waits for noted
    it waits for one of them."""
    location = (str(tmp_path / "c") if kind == "file"
                else request.getfixturevalue(f"{kind}_location"))
    outs, took = _two_processes(location, LONG, tmp_path / "ready", mode)
    said = "\n".join(outs)
    assert took < 20, f"{took:.1f} s: {said}"  # before: lock_timeout (60 s here)
    # One of them breaks it; both may, when they close it at the same instant (each sees
    # the other's note): extra work, never a wrong value (README Known limits). Seen once
    # in the suite on Redis.
    broke = said.count("is being computed by another process")
    assert broke in (1, 2), said
    assert said.count(CYCLE) == broke, said
    results = sorted(int(out.split()[0]) for out in outs)
    assert results in ([11, 12], [21, 22]) or (broke == 2 and results == [11, 21]), said


def test_a_wait_past_lock_timeout_names_the_locks_held_meanwhile(tmp_path: Path) -> None:
    """A holder that waits out lock_timeout for a key (its holder is merely slow, or a
    cycle no store can say, such as one through S3) is told which locks it held
    meanwhile: a likely cycle."""
    cache = Cache(tmp_path / "c", lock_timeout=1)
    started, go = threading.Event(), threading.Event()

    @cache.cached
    def slow(x: int) -> int:
        if not started.is_set():  # the first caller holds it until told
            started.set()
            go.wait(LONG)
        return x

    @cache.cached
    def outer(x: int) -> int:
        return slow(x) + 1

    t = threading.Thread(target=slow, args=(1,))
    t.start()
    started.wait(LONG)
    try:
        with pytest.warns(MemojarWarning, match=r"waited 1 s \(lock_timeout\)") as caught:
            assert outer(1) == 2
    finally:
        go.set()
        t.join()
    said = " ".join(str(w.message) for w in caught)
    assert "This caller holds " in said and "outer " in said.split("This caller holds ")[1], said
    assert "lock-order cycle across processes" in said, said


@pytest.mark.parametrize("kind", ["file", "redis", "s3"])
def test_a_wait_noted_for_other_processes_ends_with_it(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A caller holding f(1) that waited for g(1) (noted for other processes) and then got
    it is no longer said to wait: a later holder of g(1) waiting for f(1) (held by a caller
    that waits for nothing) waits for it, with no warning, and no note is left."""
    import fcntl
    import os
    import struct

    location = (str(tmp_path / "c") if kind == "file"
                else request.getfixturevalue(f"{kind}_location"))
    cache = Cache(location, lock_timeout=LONG)
    g_started, g_go, f_done_waiting, f_go = (threading.Event() for _ in range(4))
    calls: list[str] = []

    @cache.cached(ignore=("who",))
    def f(x: int, who: int) -> int:
        calls.append(f"f{who}")
        if who == 1:
            value = g(x, who)  # waits for the other thread's g(1), holding f(1)
            f_done_waiting.set()
            f_go.wait(LONG)
            return value + 1
        return 10

    @cache.cached(ignore=("who",))
    def g(x: int, who: int) -> int:
        calls.append(f"g{who}")
        if who == 3:
            g_started.set()
            g_go.wait(LONG)
            return 20
        if who == 2:
            return f(x, who) + 1  # waits for f(1), held by the first thread
        return 30

    first = threading.Thread(target=g, args=(1, 3))
    first.start()
    g_started.wait(LONG)
    holder = threading.Thread(target=f, args=(1, 1))
    holder.start()
    time.sleep(0.3)  # the holder of f(1) waits for g(1) (noted)
    g_go.set()
    first.join()
    f_done_waiting.wait(LONG)
    assert g.cache_delete(1, 0)
    second = threading.Thread(target=g, args=(1, 2))
    second.start()  # holds g(1), waits for f(1): no cycle
    time.sleep(0.3)
    f_go.set()
    holder.join()
    second.join()
    assert calls == ["g3", "f1", "g2"]  # no warning either (filterwarnings = error)
    assert g(1, 0) == 22
    if kind == "s3":
        store = cache.store
        left = [o.name for o in store._bucket.list(store.prefix) if ".lease" in o.name]
        assert left == []  # no lease, no note of a wait
        cache.close()
        return
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(location)
        try:
            assert client.keys(b"*:w*") == []  # removed as each wait ended
        finally:
            client.close()
        cache.close()
        return
    for lock_file in (tmp_path / "c").rglob(".lock"):  # no byte locked, no wait noted
        fd = os.open(lock_file, os.O_RDWR)
        try:
            probe = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
            got = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, probe)
            assert struct.unpack("hhqqi4x", got)[0] == fcntl.F_UNLCK, lock_file
        finally:
            os.close(fd)


RING = """
import json, os, sys, time, warnings
from memojar import Cache
cfg = json.loads(sys.argv[1])
me, locs = cfg["n"], cfg["locs"]
N = len(locs)
made, by_loc, steps = {}, {}, {}
os.environ["RING_MEET"], os.environ["RING_ME"] = cfg["meet"], str(me)
def all_hold():  # each holds its own step: then each calls the next one's (what this
    meet = os.environ["RING_MEET"]  # reads is the same code and values in every process)
    open(os.path.join(meet, os.environ["RING_ME"]), "w").close()
    end = time.monotonic() + 60
    while len(os.listdir(meet)) < N and time.monotonic() < end:
        time.sleep(0.01)
def make(cache):
    @cache.cached(ignore=("first",))
    def step(n, first):
        if first:
            all_hold(); return steps[(n + 1) % N]((n + 1) % N, False) + 1
        return n * 10
    return step
for k, loc in enumerate(locs):
    if loc not in made:
        made[loc] = Cache(loc, lock_timeout=cfg["timeout"])
        by_loc[loc] = make(made[loc])
    steps[k] = by_loc[loc]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    print(steps[me](me, True))
for w in caught:
    print(w.message)
"""


def _ring(locs: list[list[str]], timeout: float = LONG) -> tuple[list[str], float]:
    """Process ``n`` (one per list of ``locs``: where it keeps step ``k``, its own spelling)
    holds step ``n`` and, once every process holds its own, calls step ``n + 1`` (the last
    calls step 0): a ring. The seconds from then until the last is done."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as meet:
        procs = [subprocess.Popen(
            [sys.executable, "-c", RING, json.dumps({"n": n, "locs": mine,
                                                     "timeout": timeout, "meet": meet})],
            stdout=subprocess.PIPE, text=True) for n, mine in enumerate(locs)]
        while len(os.listdir(meet)) < len(locs) and all(p.poll() is None for p in procs):
            time.sleep(0.01)
        start = time.monotonic()
        outs = [p.communicate(timeout=timeout * 3)[0] for p in procs]
    return outs, time.monotonic() - start


def _ring_results_right(outs: list[str]) -> bool:
    """Process ``n`` gets step ``n + j``'s value plus ``j`` (its own key's computed by
    the one that broke the ring ``j - 1`` places on, the rest read along the ring)."""
    size = len(outs)
    return all(int(out.split()[0]) in {10 * ((n + j) % size) + j for j in range(1, size + 1)}
               for n, out in enumerate(outs))


@pytest.mark.parametrize(("kind", "size"), [("file", 3), ("file", 4), ("redis", 3),
                                            ("s3", 3)])
def test_a_ring_of_processes_is_broken_at_once(
        kind: str, size: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Each waiter notes the locks it holds and those whose holders wait (through others)
    for them, and looks again while it waits: the waiter whose wait closes the ring finds
    the lock it waits for among them (before: each waited lock_timeout, 60 s here)."""
    location = (str(tmp_path / "c") if kind == "file"
                else request.getfixturevalue(f"{kind}_location"))
    outs, took = _ring([[location] * size] * size)
    said = "\n".join(outs)
    assert took < 20, f"{took:.1f} s: {said}"
    assert said.count("is being computed by another process") >= 1, said
    assert "lock_timeout)" not in said, said  # nobody waited it out
    assert _ring_results_right(outs), said


def test_a_cycle_through_a_symlinked_directory_is_broken_at_once(tmp_path: Path) -> None:
    """Two processes name one cache directory differently (a symlink and its target):
    the same lock files, and the notes of their waits are those of the same locks
    (before: each spelling hashed its own path, and the cycle waited lock_timeout)."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    link = str(tmp_path / "link")
    outs, took = _ring([[str(real)] * 2, [link] * 2])
    said = "\n".join(outs)
    assert took < 20, f"{took:.1f} s: {said}"
    assert said.count("is being computed by another process") >= 1, said
    assert _ring_results_right(outs), said


def test_a_cycle_between_two_processes_is_broken_at_once_for_a_user_refused_info(
        own_redis: Any, tmp_path: Path) -> None:
    """A Redis user of least privilege (``+@all -@dangerous``: INFO is ``@dangerous``) may
    not ask the server's ``run_id``, from which a lock's id is made: before, no id, no note
    of the wait, and the cycle cost lock_timeout (helper-237 found it). The store's URL
    names the server then."""
    server = own_redis()
    server.client().acl_setuser("app", enabled=True, passwords=["+pw"], keys=["*"],
                                channels=["*"], commands=["+@all", "-@dangerous"])
    location = server.url(0).replace("redis://", "redis://app:pw@")
    outs, took = _two_processes(location, LONG, tmp_path / "ready")
    said = "\n".join(outs)
    assert took < 20, f"{took:.1f} s: {said}"  # before: lock_timeout (60 s here)
    assert said.count("is being computed by another process") >= 1, said


def test_a_cycle_across_two_redis_servers_is_broken_at_once(own_redis: Any) -> None:
    """Step 0 on one server, step 1 on another: each wait is noted on the server of the
    lock waited for, naming the held one whatever its server (before: notes were made
    only between leases of one server, and the cycle waited lock_timeout)."""
    one, two = own_redis(), own_redis()
    locs = [one.url(db=0), two.url(db=0)]
    outs, took = _ring([locs, locs])
    said = "\n".join(outs)
    assert took < 20, f"{took:.1f} s: {said}"
    assert said.count("is being computed by another process") >= 1, said
    assert _ring_results_right(outs), said


def test_a_call_waiting_for_its_own_key_through_a_symlink_computes_at_once(
        tmp_path: Path) -> None:
    """One thread holds f(1) of Cache("real") and calls f(1) of Cache("link") (the same
    directory, the same lock): it would wait for itself. Its lock's id is the lock file's
    device and inode, so the wait is seen as one for a lock it holds (before: lock_timeout,
    60 s here, then computed)."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    by_real, by_link = (Cache(p, lock_timeout=LONG) for p in (real, tmp_path / "link"))

    def f(x: int, outer: bool) -> int:
        return inner(x, False) + 1 if outer else 10

    outer = by_real.cached(ignore=("outer",))(f)
    inner = by_link.cached(ignore=("outer",))(f)
    start = time.monotonic()
    with pytest.warns(MemojarWarning, match=CYCLE):
        assert outer(1, True) == 11
    assert time.monotonic() - start < 10
    assert inner(1, False) == 11  # one entry: the outer call's


MEET = """
import os, sys, time
from memojar import _decorator
meet_dir = sys.argv.pop()
def meet(step):
    mine = os.path.join(meet_dir, step + sys.argv[3])
    if os.path.exists(mine):
        return
    open(mine, "w").close()
    end = time.monotonic() + 60
    while (len([n for n in os.listdir(meet_dir) if n.startswith(step)]) < 2
           and time.monotonic() < end):
        time.sleep(0.01)
def noting(note):  # each looks once both have noted
    def noted(self, *args):
        note(self, *args)
        meet("noted")
    return noted
from memojar import _locks, _redislease, _s3store
for kind in (_locks._RangeLock, _redislease._RedisKeyLock, _s3store._Lease):
    kind.note_waiting = noting(kind.note_waiting)
if hasattr(_decorator, "_Across"):  # and acts once both have looked
    looked = _decorator._Across.look
    def look(self):
        cycle = looked(self)
        meet("looked")
        return cycle
    _decorator._Across.look = look
else:  # before: one call that noted, then looked
    noted = _decorator._Memo._noted
    def _noted(*args):
        cycle = noted(*args)
        meet("looked")
        return cycle
    _decorator._Memo._noted = staticmethod(_noted)
"""


@pytest.mark.parametrize("kind", ["file", "redis", "s3"])
def test_two_processes_closing_a_cycle_at_once_break_it_once(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Both hold their key, both note their wait, then both look (each held at each step
    until the other is there too): each sees the other's note. One breaks the cycle (the
    one waiting for the lock of the smaller id), the other waits for it and reads its
    value: one computation without the lock, not two (before: both computed the other's
    key, results 21 and 11, the misfire README's Known limits owned)."""
    import subprocess

    location = (str(tmp_path / "c") if kind == "file"
                else request.getfixturevalue(f"{kind}_location"))
    meet_dir = tmp_path / "meet"
    meet_dir.mkdir()
    start = time.monotonic()
    program = MEET + CROSS.replace("time.sleep(1)", 'meet("held")')  # both hold their own
    procs = [subprocess.Popen([sys.executable, "-c", program, location, str(LONG),
                               str(who), "sync", str(meet_dir)],
                              stdout=subprocess.PIPE, text=True) for who in (1, 2)]
    outs = [p.communicate(timeout=LONG * 2)[0] for p in procs]
    said = "\n".join(outs)
    assert time.monotonic() - start < LONG, said  # not waited out (with the start-ups)
    assert "(lock_timeout)" not in said, said
    assert len(list(meet_dir.iterdir())) == 6, said  # both held, noted, looked
    assert said.count("is being computed by another process") == 1, said
    assert sorted(int(out.split()[0]) for out in outs) in ([11, 12], [21, 22]), said


def test_a_cycle_through_a_directory_and_a_redis_cache_is_broken_at_once(
        tmp_path: Path, redis_location: str) -> None:
    """Step 0 in a directory cache, step 1 on Redis: a lock's id means the same whatever
    its store, so a wait for a lease notes the held byte-range lock, and the other way
    round (before: each store noted only its own locks, and the cycle waited
    lock_timeout)."""
    locs = [str(tmp_path / "c"), redis_location]
    outs, took = _ring([locs, locs])
    said = "\n".join(outs)
    assert took < 20, f"{took:.1f} s: {said}"
    assert said.count("is being computed by another process") >= 1, said
    assert _ring_results_right(outs), said


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_a_chain_of_waits_across_processes_is_no_cycle(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Process 0 holds step 0 and waits for step 1, whose holder waits for step 2, whose
    holder computes for 3 s (it waits for nothing): what is behind each wait grows along
    the chain and is looked at again while they wait, and nobody breaks anything: each
    key computed once, no warning."""
    location = (str(tmp_path / "c") if kind == "file"
                else request.getfixturevalue(f"{kind}_location"))
    chain = RING.replace("return steps[(n + 1) % N]((n + 1) % N, False) + 1",
                         "return 0 if n == N - 1 and not time.sleep(3) else "
                         "steps[(n + 1) % N]((n + 1) % N, False) + 1")
    assert chain != RING
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as meet:
        procs = [subprocess.Popen(
            [sys.executable, "-c", chain, json.dumps({"n": n, "locs": [location] * 3,
                                                      "timeout": LONG, "meet": meet})],
            stdout=subprocess.PIPE, text=True) for n in range(3)]
        outs = [p.communicate(timeout=LONG * 3)[0] for p in procs]
    said = "\n".join(outs)
    assert [int(out.split()[0]) for out in outs] == [2, 1, 0], said
    assert CYCLE not in said and "lock_timeout" not in said, said


FIRST_NOTE_REFUSED = """
import redis
from memojar import _redislease
_edge, _refused = _redislease._WaitNote.edge, []
def edge(self, i):  # the first request noting a wait is refused (a server out of memory)
    if not _refused:
        _refused.append(i)
        raise redis.exceptions.ResponseError("OOM command not allowed when used memory > "
                                             "'maxmemory'.")
    return _edge(self, i)
_redislease._WaitNote.edge = edge
"""


def test_a_cycle_whose_first_notes_were_refused_is_broken_once_they_are_sent_again(
        redis_location: str) -> None:
    """Two processes on Redis close a cycle, and the server refuses each one's first
    request noting its wait: each sends it again at its next look, and the cycle is
    broken in a second or two. Before, the ids were kept as noted though they never were
    (the renewer only extends what is there): neither saw the other's wait, and both
    waited lock_timeout."""
    import subprocess

    timeout = 20
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_NOTE_REFUSED + CROSS,
                               redis_location, str(timeout), str(who), "sync"],
                              stdout=subprocess.PIPE, text=True) for who in (1, 2)]
    outs = [p.communicate(timeout=timeout * 3)[0] for p in procs]
    took = time.monotonic() - start
    said = "\n".join(outs)
    assert took < timeout / 2, f"{took:.1f} s: {said}"
    assert "(lock_timeout)" not in said, said
    assert said.count("is being computed by another process") in (1, 2), said
