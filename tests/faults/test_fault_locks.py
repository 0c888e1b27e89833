"""Attacks on the key lock: forks while it is held, re-entry, and locks held by others.

A held key lock makes every other caller of the key wait. These tests check that nothing
keeps a key locked longer than its holder computes (a forked child, a pool of workers), that
a caller never waits for itself, and that a lock held by someone else costs at most
``lock_timeout``. Every process here has a time limit: a hang fails the test, never the run.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from faultkit import DAEMON_DURING_A_CALL, finish, read_line, spawn

from memojar import Cache, MemojarWarning, _locks

# --- a lock held by another process ------------------------------------------------------

HOLDER = """
import os, time
from memojar import Cache

lock = Cache(os.environ["CACHE"]).store.lock(os.environ["NAME"], os.environ["KEY"])
assert lock.acquire(blocking=False)
print("held", flush=True)
time.sleep(60)
"""


def _hold_lock(location: str, func, *args) -> object:
    """A process holding the key lock of ``func(*args)`` in ``location`` until killed."""
    holder = spawn(HOLDER, CACHE=location, NAME=func.__memojar__.name,
                   KEY=func.cache_key(*args))
    assert read_line(holder, timeout=30) == "held"
    return holder


def _stop(proc) -> None:
    proc.kill()
    proc.communicate()


def _stop_group(proc) -> None:
    """Kill a process that made itself a process group leader, and everything it forked."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # gone already
        pass
    _stop(proc)


def test_lock_held_by_another_process_costs_lock_timeout_not_a_hang(location: str) -> None:
    cache = Cache(location, lock_timeout=1)
    calls = []

    @cache.cached
    def double(x):
        calls.append(x)
        return x * 2

    holder = _hold_lock(location, double, 3)
    try:
        start = time.monotonic()
        with pytest.warns(MemojarWarning, match=r"waited 1 s \(lock_timeout\) for another "
                          r"caller computing .*double"):
            assert double(3) == 6
        elapsed = time.monotonic() - start
    finally:
        _stop(holder)
    assert 0.9 < elapsed < 10
    assert calls == [3]
    assert double(3) == 6  # stored despite the lock: a hit now
    assert calls == [3]


def test_lock_timeout_bounds_the_async_wait_too(location: str) -> None:
    import asyncio

    cache = Cache(location, lock_timeout=0.5)

    @cache.cached
    async def double(x):
        return x * 2

    holder = _hold_lock(location, double, 4)
    try:
        with pytest.warns(MemojarWarning, match=r"waited 0.5 s \(lock_timeout\)"):
            assert asyncio.run(asyncio.wait_for(double(4), 20)) == 8
    finally:
        _stop(holder)


@pytest.mark.parametrize("bad", ["10", None, True])
def test_lock_timeout_must_be_seconds(tmp_path: Path, bad: object) -> None:
    with pytest.raises(TypeError, match="lock_timeout= must be seconds"):
        Cache(tmp_path / "cache", lock_timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, float("nan")])
def test_lock_timeout_must_not_be_negative(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="lock_timeout= must be zero or more seconds"):
        Cache(tmp_path / "cache", lock_timeout=bad)


# --- forks --------------------------------------------------------------------------------

FORK_JOB = """
import multiprocessing, os, sys, time
from memojar import Cache

cache = Cache(os.environ["CACHE"])
pools = []

@cache.cached
def slow(x):
    fork = multiprocessing.get_context("fork")
    if os.environ.get("ROLE") == "pool":  # workers forked while the key is locked, kept alive
        pools.append(fork.Pool(1))
    elif os.environ.get("ROLE") == "executor":
        from concurrent.futures import ProcessPoolExecutor

        pools.append(ProcessPoolExecutor(1, mp_context=fork))
        pools[-1].submit(abs, -1).result()  # its worker is forked now
    with open(os.environ["LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    print("computing", flush=True)
    time.sleep(1.5)
    return x * 10
"""

POOL_OWNER = """
import os, time
os.setpgrp()  # the test kills the owner and its pool as one group
from forkjob import slow
print(slow(7), flush=True)
time.sleep(60)  # the pool, forked while the key was locked, lives on
"""

THREAD_FORKER = """
import os, threading, time
from forkjob import slow

result = []
worker = threading.Thread(target=lambda: result.append(slow(7)))
worker.start()
time.sleep(0.3)  # the worker holds the key lock, computing
pid = os.fork()  # a child forked by another thread while the lock is held
if pid == 0:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # let the test read the parent's output to its end
    os.dup2(devnull, 2)
    time.sleep(60)
    os._exit(0)
print("forked", pid, flush=True)
worker.join()
print(result[0], flush=True)
time.sleep(60)  # the child lives on
"""

WAITER = """
import time
from forkjob import slow
start = time.monotonic()
print(slow(7), slow.cache_info().misses, round(time.monotonic() - start, 2), flush=True)
"""


def _fork_env(tmp_path: Path, role: str) -> dict[str, str]:
    (tmp_path / "forkjob.py").write_text(FORK_JOB)
    return {"CACHE": str(tmp_path / "cache"), "LOG": str(tmp_path / "computations.log"),
            "PYTHONPATH": str(tmp_path), "ROLE": role}


@pytest.mark.slow
@pytest.mark.parametrize("role", ["pool", "executor"])
def test_pool_forked_while_locked_does_not_keep_the_key_locked(tmp_path: Path, role: str
                                                                ) -> None:
    env = _fork_env(tmp_path, role)
    owner = spawn(POOL_OWNER, **env)
    waiter = None
    try:
        assert read_line(owner, timeout=30) == "computing"
        waiter = spawn(WAITER, **env)  # waits for the lock while the owner computes
        assert read_line(owner, timeout=30) == "70"
        value, misses, _ = finish(waiter, timeout=15).split()
    finally:
        _stop_group(owner)
        if waiter is not None:
            _stop(waiter)
    assert (value, misses) == ("70", "0")  # the waiter read the stored value
    assert len((tmp_path / "computations.log").read_text().splitlines()) == 1


@pytest.mark.slow
def test_fork_by_another_thread_while_locked_does_not_keep_the_key_locked(
    tmp_path: Path,
) -> None:
    env = _fork_env(tmp_path, "thread")
    forker = spawn(THREAD_FORKER, **env)
    waiter = None
    child = ""
    try:
        assert read_line(forker, timeout=30) == "computing"
        forked, child = read_line(forker, timeout=30).split()
        assert forked == "forked"
        waiter = spawn(WAITER, **env)
        assert read_line(forker, timeout=30) == "70"
        value, misses, _ = finish(waiter, timeout=15).split()
    finally:
        if child:
            os.kill(int(child), signal.SIGKILL)
        for proc in (forker, waiter):
            if proc is not None:
                _stop(proc)
    assert (value, misses) == ("70", "0")
    assert len((tmp_path / "computations.log").read_text().splitlines()) == 1


CHILD_RETURNS = """
import os, sys, time
from memojar import Cache

cache = Cache(os.environ["CACHE"])

class ChildDone(Exception):
    pass

@cache.cached
def forks(x):
    pid = os.fork()
    if pid == 0:
        raise ChildDone  # the child leaves through memojar's code, releasing what it holds
    os.waitpid(pid, 0)
    with open(os.environ["LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    print("child gone", flush=True)
    time.sleep(1.5)  # still computing, still holding the key lock
    return x + 1

try:
    print(forks(1), forks.cache_info().misses, flush=True)
except ChildDone:
    os._exit(0)
"""


@pytest.mark.slow
def test_forked_child_never_releases_the_parents_lock(tmp_path: Path) -> None:
    env = {"CACHE": str(tmp_path / "cache"), "LOG": str(tmp_path / "computations.log")}
    parent = spawn(CHILD_RETURNS, **env)
    waiter = None
    try:
        assert read_line(parent, timeout=30) == "child gone"
        waiter = spawn(CHILD_RETURNS, **env)  # must wait for the parent, not compute
        assert finish(parent, timeout=30).split() == ["2", "1"]
        assert finish(waiter, timeout=30).split() == ["2", "0"]
    finally:
        for proc in (parent, waiter):
            if proc is not None:
                _stop(proc)
    assert len((tmp_path / "computations.log").read_text().splitlines()) == 1


# --- re-entry -------------------------------------------------------------------------------

REENTRY = """
import asyncio, os, sys, threading, warnings
warnings.simplefilter("error")  # (no lock_timeout warning: the inner call never waits)
from memojar import Cache

cache = Cache(os.environ["CACHE"])
once = True

@cache.cached
def f(x):  # CPython's test_lru_bug_35780: a call of f(20) within f(20)
    global once
    rv = f".{x}."
    if x == 20 and once:
        once = False
        rv = f(x)
    return rv

for x in range(15):
    assert f(x) == f".{x}.", x
print("bpo-35780", f(20), flush=True)

@cache.cached(ignore=("depth",))
def countdown(x, depth):  # the same key at every level: depth is ignored
    return depth if depth == 0 else countdown(x, depth - 1)

print("ignored", countdown(1, 30), flush=True)

@cache.cached
def endless(x):
    return endless(x)

try:
    endless(1)
except RecursionError:
    print("endless RecursionError", flush=True)
lock = cache.store.lock(endless.__memojar__.name, endless.cache_key(1))
print("released", lock.acquire(blocking=False), flush=True)

@cache.cached(ignore=("depth",))
async def acountdown(x, depth):
    return depth if depth == 0 else await acountdown(x, depth - 1)

print("async", asyncio.run(asyncio.wait_for(acountdown(1, 10), 30)), flush=True)
"""


def test_a_function_calling_itself_with_the_same_key_does_not_wait_for_itself(
    tmp_path: Path,
) -> None:
    out = finish(spawn(REENTRY, CACHE=str(tmp_path / "cache")), timeout=60)
    assert out.splitlines() == [
        "bpo-35780 .20.", "ignored 0", "endless RecursionError", "released True", "async 0",
    ]


# --- the caller closes every descriptor while a key is locked (a daemon) -------------------

def test_a_lock_whose_descriptor_the_caller_closed_costs_no_result(tmp_path: Path) -> None:
    """The kernel released the lock with its description: releasing it is not an error
    that takes the computed value from the caller."""
    out = finish(spawn(DAEMON_DURING_A_CALL, CACHE=str(tmp_path / "c")), 60)
    assert out.split() == ["101", "102", "103", "102", "[]"]


# Ten calls hold their keys' locks at once; the caller then closes every descriptor and opens
# a file of its own at every number memojar held, before the calls return.
REUSED_WHILE_LOCKED = """
import os, threading
from memojar import Cache

mine, n = os.environ["MINE"], 10
barrier, done = threading.Barrier(n + 1), threading.Event()

@Cache(os.environ["CACHE"]).cached
def work(x):
    if x >= 0:
        barrier.wait(20)
        assert done.wait(20)
    return x + 100

work(-1)
out = []
threads = [threading.Thread(target=lambda i=i: out.append(work(i))) for i in range(n)]
for thread in threads:
    thread.start()
barrier.wait(20)
held = [int(k) for k in os.listdir("/proc/self/fd")]
os.closerange(3, 4096)
fd = os.open(mine, os.O_RDONLY)
numbers = [k for k in held if k > fd]
for k in numbers:
    os.dup2(fd, k)
done.set()
for thread in threads:
    thread.join(20)
ino = os.fstat(fd).st_ino

def still_mine(k):
    try:
        return os.fstat(k).st_ino == ino
    except OSError:  # closed
        return False

print(sorted(out) == list(range(100, 100 + n)), len(numbers) > n,
      [k for k in numbers if not still_mine(k)])
"""


def test_lock_descriptor_numbers_the_caller_reused_are_never_closed(tmp_path: Path) -> None:
    """A released lock puts its description back for the next miss, or closes it when
    enough are kept: never a number that is no longer memojar's."""
    (tmp_path / "mine.txt").write_text("mine\n")
    env = {"CACHE": str(tmp_path / "c"), "MINE": str(tmp_path / "mine.txt")}
    assert finish(spawn(REUSED_WHILE_LOCKED, **env), 60).split() == ["True", "True", "[]"]


# A call holds its key's lock; the caller closes every descriptor and opens its own at every
# number but the function folder's and the held lock's. Another thread's miss then opens the
# lock file again at the held lock's number: two locks with one description, until neither
# may put it back twice for two threads to share.
SHARED_AFTER_REUSE = """
import os, threading, time
from memojar import Cache

cache = Cache(os.environ["CACHE"])
started, done = threading.Event(), threading.Event()
calls = []

@cache.cached
def work(x):
    calls.append(x)
    if x == 1:
        started.set()
        assert done.wait(20)
    if x == 3:
        time.sleep(0.5)
    return x + 100

work(0)  # the folder, the lock file, one idle description of it (taken by work(1))
fdir = os.path.dirname(os.path.dirname(cache.store.path(work.__memojar__.name,
                                                        work.cache_key(0))))
thread = threading.Thread(target=work, args=(1,))
thread.start()
assert started.wait(20)

def target(n):
    try:
        return os.readlink(f"/proc/self/fd/{n}")
    except OSError:
        return None

held = {int(n): target(n) for n in os.listdir("/proc/self/fd")}
keep = {n for n, path in held.items() if path in (fdir, os.path.join(fdir, ".lock"))}
os.closerange(3, 4096)
fd = os.open(os.environ["MINE"], os.O_RDONLY)
os.dup2(fd, 1000)
os.close(fd)
for n in range(3, max(held) + 8):
    if n not in keep:
        os.dup2(1000, n)
print(len(keep), work(2))  # opens the folder and the lock file at the numbers kept free
done.set()
thread.join(20)
threads = [threading.Thread(target=work, args=(3,)) for _ in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(20)
print(calls)
"""


def test_a_reused_lock_description_is_never_shared_by_two_locks(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("mine\n")
    env = {"CACHE": str(tmp_path / "c"), "MINE": str(tmp_path / "mine.txt")}
    out = finish(spawn(SHARED_AFTER_REUSE, **env), 60).splitlines()
    assert out == ["2 102", "[0, 1, 2, 3]"]  # work(3) by one of the two threads only


WAITS_THEN_FORKS = """
import os, sys, threading, time
from memojar import _locks

folder, key = os.environ["FOLDER"], "ab" * 16
waiting = threading.Event()
fcntl = _locks._fcntl

def spy(fd, command, arg):  # tells when the waiter is about to wait for the lock
    if command == _locks._SETLKW and threading.current_thread().name == "waiter":
        waiting.set()
    return fcntl(fd, command, arg)

_locks._fcntl = spy
first = _locks.key_lock(folder, key, folder + "/entry.pkl")
first.acquire()
got = threading.Event()

def wait():
    _locks.key_lock(folder, key, folder + "/entry.pkl").acquire()
    got.set()

threading.Thread(target=wait, name="waiter", daemon=True).start()
assert waiting.wait(30)
up, said = os.pipe()
pid = os.fork()
if pid == 0:  # a child that outlives its parent (a worker, a daemon)
    os.write(said, b"up")  # its fork handlers have run (a loaded machine delays them)
    time.sleep(120)
    os._exit(0)
assert os.read(up, 2) == b"up"
first.release()
assert got.wait(30)  # the waiter holds the key now, with the description it waited on
print(pid, flush=True)
time.sleep(120)
"""


def _key_free_after_the_forking_holder_is_killed(script: str, folder: Path) -> bool:
    """Run ``script`` (it takes the key's lock, forks a long-lived child, prints the child's
    pid), kill it, and say whether the key is free while the child lives on."""
    holder = spawn(script, FOLDER=str(folder))
    child = 0
    try:
        child = int(read_line(holder, timeout=60))
        holder.kill()
        holder.wait(30)
        lock = _locks.key_lock(str(folder), "ab" * 16, str(folder / "entry.pkl"))
        free = lock.acquire(blocking=False)
        if free:
            lock.release()
        return free
    finally:
        if child:
            os.kill(child, signal.SIGKILL)
        _stop(holder)


@pytest.mark.skipif(not _locks.LOCKS_IN_FUNCTION_DIR, reason="byte-range locks only")
def test_a_child_forked_while_a_thread_waits_for_a_key_does_not_keep_it_locked(
        tmp_path: Path) -> None:
    """A fork while another thread waits for a key lock: the child kept a copy of the
    description the thread waited on (neither held nor idle at that moment, so not closed
    in the child), and the lock the thread then took outlived its process, killed, for as
    long as the child lived: every caller of the key waited. The child closes it now."""
    assert _key_free_after_the_forking_holder_is_killed(WAITS_THEN_FORKS, tmp_path), \
        "the key stayed locked after its holder was killed"


FORKS_AS_IT_OPENS = """
import os, time
from memojar import _locks

folder, key = os.environ["FOLDER"], "ab" * 16
identity = _locks._identity
child = []

def forking_identity(fd):  # another thread forks while this one is in the fstat
    if not child:
        up, said = os.pipe()
        child.append(os.fork())
        if child[0] == 0:  # a child that outlives its parent (a worker, a daemon)
            os.write(said, b"up")  # its fork handlers have run (a loaded machine delays them)
            time.sleep(120)
            os._exit(0)
        assert os.read(up, 2) == b"up"
    return identity(fd)

_locks._identity = forking_identity
lock = _locks.key_lock(folder, key, folder + "/entry.pkl")
lock.acquire()
print(child[0], flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not _locks.LOCKS_IN_FUNCTION_DIR, reason="byte-range locks only")
def test_a_child_forked_as_a_lock_file_is_opened_does_not_keep_the_key_locked(
        tmp_path: Path) -> None:
    """A fork by another thread while a lock's description was in no table (just opened,
    in the ``fstat`` after the ``open``): the child kept a copy, the lock taken on it
    outlived its holder, killed, as long as the child lived. A description that was in no
    table at a fork is never used for a lock."""
    assert _key_free_after_the_forking_holder_is_killed(FORKS_AS_IT_OPENS, tmp_path), \
        "the key stayed locked after its holder was killed"
