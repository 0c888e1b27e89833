"""Attacks on the remote stores' leases across ``os.fork``: a process holding a key's lease
forks, and the child stores a value, releases the lock it inherited, or takes a lock of its
own while the parent's renewer was busy. A child never holds (nor releases) its parent's
lease, and never hangs on a lock its parent's thread held at the fork (a store's, or one of
memojar's own in-process locks: the cache table's, a function's, the ``disabled()`` switch's).

Children report by exit status (``os._exit``); each is bounded by ``signal.alarm``.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memojar._cache import open_store
from memojar._store import Store

FN = "tests.module.function"
KEY = f"{1:032x}"
OTHER = f"{2:032x}"
CHILD_LIMIT = 10  # seconds: a child still running then is hung (SIGALRM ends it)


def in_child(work: Callable[[], None]) -> int:
    """Fork; the child runs ``work`` (bounded by SIGALRM); its exit status, or -signal."""
    with warnings.catch_warnings():  # 3.12+: "multi-threaded, fork() may deadlock", the attack
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            signal.alarm(CHILD_LIMIT)
            work()
            status = 0
        finally:
            os._exit(status)
    deadline = time.monotonic() + CHILD_LIMIT + 5
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -signal.SIGKILL


@pytest.fixture(params=["redis", "s3"])
def remote(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_location"))


def held_elsewhere(location: str) -> bool:
    """Whether another process (a store of its own) finds the key's lock held."""
    other = open_store(location, None, True)
    lock = other.lock(FN, KEY)
    try:
        if lock.acquire(blocking=False):
            lock.release()
            return False
        return True
    finally:
        other.close()


def test_a_forked_child_that_releases_leaves_its_parents_lease_held(remote: str) -> None:
    """Old: the child's copy of the lock deleted the parent's lease, so a third process
    computed the same key at once, and the parent's value was then refused ("lock expired")."""
    store = open_store(remote, None, True)
    lock = store.lock(FN, KEY)
    assert lock.acquire(blocking=False)
    try:
        assert in_child(lock.release) == 0
        assert held_elsewhere(remote)
        store.write(FN, KEY, [b"the parent's value"])  # still the holder: stored
        assert bytes(store.read(FN, KEY)) == b"the parent's value"
    finally:
        lock.release()
        store.close()
    assert not held_elsewhere(remote)


def test_a_forked_childs_write_does_not_ride_on_its_parents_lease(remote: str) -> None:
    """The child holds no lock: its write is an unlocked one (stored), and the parent's
    lease, which the child never had, is untouched by its write and its release."""
    store = open_store(remote, None, True)
    lock = store.lock(FN, KEY)
    assert lock.acquire(blocking=False)

    def child() -> None:
        store.write(FN, KEY, [b"the child's value"])
        lock.release()

    try:
        assert in_child(child) == 0
        assert bytes(store.read(FN, KEY)) == b"the child's value"
        assert held_elsewhere(remote)
    finally:
        lock.release()
        store.close()


def test_a_child_forked_while_the_renewer_was_busy_takes_locks(remote: str) -> None:
    """Old: the renewer's mutex, held by a thread of the parent at the fork, stayed held in
    the child for ever: the child's first lock hung."""
    store: Store = open_store(remote, None, True)
    lock = store.lock(FN, KEY)
    assert lock.acquire(blocking=False)
    renewer = store._renewer  # type: ignore[attr-defined]
    busy, done = threading.Event(), threading.Event()

    def renewing() -> None:  # what the renewer thread does for a moment each pass
        with renewer._mutex:
            busy.set()
            done.wait(CHILD_LIMIT)

    thread = threading.Thread(target=renewing)
    thread.start()
    try:
        assert busy.wait(5)

        def child() -> None:
            mine = store.lock(FN, OTHER)
            assert mine.acquire(blocking=False)
            mine.release()

        assert in_child(child) == 0
    finally:
        done.set()
        thread.join()
        lock.release()
        store.close()


def _held_by_a_thread(lock: Any) -> Callable[[], None]:
    """Hold ``lock`` in a thread of this process, as one of memojar's would for a moment;
    the returned function lets it go."""
    busy, done = threading.Event(), threading.Event()

    def holding() -> None:
        with lock:
            busy.set()
            done.wait(CHILD_LIMIT + 5)

    thread = threading.Thread(target=holding)
    thread.start()
    assert busy.wait(5)

    def let_go() -> None:
        done.set()
        thread.join()

    return let_go


@pytest.mark.parametrize("moment", ["making a cache", "filling the memory tier",
                                    "marking a background recomputation",
                                    "opening a disabled() block", "noting a file's digest",
                                    "making a function's identity",
                                    "reading a wrapper's code",
                                    "counting a cache's changes"])
def test_a_child_forked_while_a_thread_held_one_of_memojars_locks_does_not_hang(
        tmp_path: Path, moment: str) -> None:
    """Old: a module's (or a function's) ``threading.Lock``, held by another thread of the
    parent at the fork, stayed held in the child for ever, and the child's first call that
    took it hung: ``cached(cache_dir=...)`` while another thread made a cache (held across
    the making of its folder: a fork from a thread pool hit it one time in six), a miss with
    ``memory=`` while another thread filled the tier, a stale hit while another marked a
    background recomputation, ``memojar.disabled()``, a ``files=`` call, the first call of
    a function while another thread made the identity of one (a lock since Python 3.12's
    ``cached_property`` has none), the decoration of a ``functools.wraps`` wrapper while
    another thread read a wrapper's code or defaults for the first time, a ``prune()``
    while another thread held the cache's tally (registering as a writer at its first
    change of a cache, which reads and creates files: 16 forks in 150 from a process whose
    other thread wrote in new caches)."""
    import memojar
    from memojar import _cache, _control, _decorator, _depends

    cache = memojar.Cache(tmp_path / "c")
    data = tmp_path / "data.txt"
    data.write_text("x")
    fresh = tmp_path / "other.txt"  # hashed first in the child
    fresh.write_text("y")
    if moment == "noting a file's digest":
        time.sleep(1.1)  # a digest is noted once the file's ctime is over a second old

    @cache.cached(memory=4, ttl=0.01, stale_while_revalidate=600, files=("path",))
    def f(x: int, path: str = str(data)) -> int:
        return x + 1

    assert f(0) == 1
    memo = f.__memojar__  # type: ignore[attr-defined]
    lock = {"making a cache": _cache._caches_lock,
            "filling the memory tier": memo.revalidating_lock,
            "marking a background recomputation": memo.revalidating_lock,
            "opening a disabled() block": _control.SWITCH._lock,
            "noting a file's digest": _depends._hashes_lock,
            "making a function's identity": _decorator._MadeOnce.lock,
            "reading a wrapper's code": _decorator._SEEN_LOCK,
            "counting a cache's changes": cache.store._tallied.lock}[moment]
    if moment == "marking a background recomputation":
        memo.revalidating.add(f.cache_key(0))  # the parent's thread recomputes it now
    if moment == "counting a cache's changes":
        cache.clear()  # the child's prune removes nothing (a removal renewed the lock first)

    def child() -> None:
        if moment == "making a cache":
            g = memojar.cached(cache_dir=str(tmp_path / "other"))(lambda x: x * 2)
            assert g(2) == 4
        elif moment == "opening a disabled() block":
            with memojar.disabled():
                assert f(5) == 6
        elif moment == "making a function's identity":
            g = cache.cached(lambda x: x * 3)
            assert g(2) == 6
        elif moment == "counting a cache's changes":
            assert cache.prune() >= 0
        elif moment == "reading a wrapper's code":
            def triple(x: int) -> int:
                return x * 3

            @functools.wraps(triple)
            def wrapper(x: int, scale: int = 1) -> int:
                return triple(x) * scale

            assert cache.cached(wrapper)(2) == 6
        elif moment == "marking a background recomputation":
            time.sleep(0.05)  # f(0) is stale now
            assert f(0) == 1  # the stale value, recomputed in the background here
            deadline = time.monotonic() + 5
            while f.cache_info().misses < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert f.cache_info().misses >= 1
        else:  # a miss: fills the tier and notes the file's digest
            assert f(7, str(fresh)) == 8

    let_go = _held_by_a_thread(lock)
    try:
        assert in_child(child) == 0
    finally:
        let_go()


def test_a_child_forked_after_its_parent_read_a_write_back_reads_back_its_own(
        redis_server: Any) -> None:
    """The parent's write timed out once, so its store has the client of the look at the
    entry (``_checker``, a quarter of the timeout) with a connection in its pool; it forks,
    and parent and child each have a write time out and read it back at once. Each is told
    of its own write (both stored: no warning, no wrong "not stored"), and neither hangs:
    the child's look never goes out on its parent's connection. (It holds by redis-py's
    pool, which a child finds by its pid and empties; with that check taken out of the
    look's pool, the child's look went out on its parent's connection (status 3 here), and
    in a script forking the same way the parent read the child's reply as its own and said
    "not stored" of a stored entry, or the child's look timed out: 1 run in 3.)"""
    from remote_kit import ReplyDropper

    with ReplyDropper(redis_server.port) as dropper:
        store = open_store(dropper.front(redis_server.url(0)) + "?socket_timeout=1",
                           None, True)
        store.write(FN, OTHER, [b"warm"])  # the commit's script loaded
        commit = b"EVALSHA\r\n$40\r\n" + store._commit.sha.encode()  # type: ignore[attr-defined]
        dropper.drop(commit, silent=True)
        store.write(FN, OTHER, [b"read back once"])  # timed out, read back: stored
        checker = store._checker_client.connection_pool  # type: ignore[attr-defined]
        parents = _ports(checker)  # the look's connection, in its pool
        assert parents
        dropper.drop(commit, times=2, silent=True)
        child_key, parent_key = f"{3:032x}", f"{4:032x}"
        child_value, parent_value = b"the child's" * 40, b"the parent's" * 40
        with warnings.catch_warnings():  # 3.12+: "multi-threaded, fork() may deadlock"
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: its write at once, as the parent's
            status = 1
            try:
                signal.alarm(CHILD_LIMIT)
                store.write(FN, child_key, [child_value])
                status = 3 if _ports(checker) & parents else 0  # 3: its parent's connection
            finally:
                os._exit(status)
        try:
            store.write(FN, parent_key, [parent_value])  # stored, read back: no raise
        finally:
            deadline = time.monotonic() + CHILD_LIMIT + 5
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:  # hung
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)
        # the child's write stored and read back on a connection of its own
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(dropper.dropped) == 3
        assert bytes(store.read(FN, child_key)) == child_value
        assert bytes(store.read(FN, parent_key)) == parent_value
        store.close()


def _ports(pool: Any) -> set[int]:
    """The local ports of a redis-py pool's connected connections (idle or lent)."""
    ports = set()
    for connection in [*pool._available_connections, *pool._in_use_connections]:
        sock = getattr(connection, "_sock", None)
        if sock is not None:
            ports.add(sock.getsockname()[1])
    return ports


# Holds the size ledger's lock in a thread, forks a long-lived child (a worker, a server),
# prints its pid and is killed while it still holds the lock.
KILLED_HOLDING_THE_LEDGER = """
import os, signal, threading, time
import memojar
from memojar import _filestore

root = os.environ["CACHE"]
f = memojar.Cache(root, max_size=10**7).cached(lambda n: bytes(n))
f(5)  # the ledger and its lock file are made
held = threading.Event()

def holding():
    lock = _filestore._flock(os.path.join(root, ".size.lock"))  # as a recount holds it
    held.set()
    time.sleep(60)

threading.Thread(target=holding, daemon=True).start()
held.wait()
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_child_forked_while_the_ledgers_lock_was_held_does_not_keep_it(
        tmp_path: Path) -> None:
    """A process is killed while a thread of it holds the size ledger's lock (a recount
    of a large cache takes seconds), after forking a child that lives on. Before, the
    child kept its copy of the lock's descriptor, and with it the lock, for its whole
    life: every write with max_size, in every process, waited 60 s (``LOCK_WAIT``) and
    returned its value unstored. Now the child closes its copy at the fork (unlocking
    nothing), so the kernel releases the lock with its holder."""
    import fcntl
    import subprocess

    from faultkit import read_line, spawn

    import memojar

    root = tmp_path / "c"
    proc = spawn(KILLED_HOLDING_THE_LEDGER, CACHE=str(root))
    child = int(read_line(proc))
    try:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode == -signal.SIGKILL
        fd = os.open(root / ".size.lock", os.O_RDWR)
        try:
            deadline = time.monotonic() + 5  # (the child closes its copy once it runs)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:  # kept held: before, for the child's whole life
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            os.close(fd)
        f = memojar.Cache(root, max_size=10**7).cached(lambda n: bytes(n))
        start = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert f(7) == bytes(7)
        assert time.monotonic() - start < 10
        assert f.cache_contains(7)
    finally:
        os.kill(child, signal.SIGKILL)
        for pipe in (proc.stdout, proc.stderr):  # (the child had them: not read to the end)
            if pipe is not None:
                pipe.close()


FORKED_WHILE_THE_FIRST_IDENTITY_READS_SYSCONFIG = """
import os, signal, sys, sysconfig, threading, time, warnings

sys.path.insert(0, os.environ["WORK"])
begun = threading.Event()
# Python 3.12+ reads its configuration under a lock of sysconfig's (3.11: no lock)
name = "_init_config_vars" if hasattr(sysconfig, "_init_config_vars") else "get_paths"
read = getattr(sysconfig, name)


def slowly(*args, **kwargs):  # the configuration read from a slow disk
    begun.set()
    time.sleep(1)
    return read(*args, **kwargs)


setattr(sysconfig, name, slowly)
import work

first = threading.Thread(target=work.f, args=(1,))
first.start()  # its identity asks sysconfig where the libraries are
assert begun.wait(10)
warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "multi-threaded", the attack
pid = os.fork()
if pid == 0:
    signal.alarm(10)
    os._exit(0 if work.f(2) == 3 else 1)
first.join()
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_a_child_forked_while_a_thread_makes_the_first_identity_does_not_hang(
        tmp_path: Path) -> None:
    """A thread's first call of a cached function asks ``sysconfig`` where the libraries
    are (its identity follows only the user's code), which on Python 3.12+ reads the
    configuration once under a lock of its own; another thread forks meanwhile. Before,
    the child got that lock held by a thread it does not have, and its own first call of
    the function hung (a fork-from-a-thread storm: a forked child stuck in
    ``sysconfig.get_config_vars`` for good). Now the fork waits for the reading to end."""
    from faultkit import finish, spawn

    (tmp_path / "work.py").write_text(
        "import os\nimport memojar\n\ncache = memojar.Cache(os.environ['CACHE'])\n\n\n"
        "def helper(x):\n    return x + 1\n\n\n@cache.cached\ndef f(x):\n    return helper(x)\n"
    )
    proc = spawn(FORKED_WHILE_THE_FIRST_IDENTITY_READS_SYSCONFIG, WORK=str(tmp_path),
                 CACHE=str(tmp_path / "c"))
    assert finish(proc, 60).strip() == "0"  # before: -14, the child's SIGALRM


FORKED_WHILE_THE_FIRST_CACHE_IMPORTS_ITS_STORE = """
import os, signal, sys, threading, time, warnings
import memojar, memojar._cache

begun = threading.Event()


class Slow:  # a module on a slow disk: its import takes a second
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == os.environ["SLOW"]:
            begun.set()
            time.sleep(1)
        return None  # found by the usual finders


sys.meta_path.insert(0, Slow)
root = os.environ["CACHE"]
os.environ["XDG_CACHE_HOME"] = os.path.join(root, "default")
os.environ.pop("MEMOJAR_DIR", None)  # (the default folder: platformdirs')
if os.environ["SLOW"] == "platformdirs.api":  # the first default folder imports it
    first = threading.Thread(target=memojar._cache.default_directory)
else:  # the process's first Cache imports memojar._filestore
    first = threading.Thread(target=memojar.Cache, args=(os.path.join(root, "a"),))
first.start()
assert begun.wait(10)
warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "multi-threaded", the attack
pid = os.fork()
if pid == 0:
    signal.alarm(10)
    f = memojar.cached(lambda x: x + 1)
    os._exit(0 if f(2) == 3 else 1)
first.join()
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@pytest.mark.parametrize("slow", ["memojar._locks", "platformdirs.api"])
def test_a_child_forked_while_a_thread_makes_the_first_cache_does_not_hang(
        tmp_path: Path, slow: str) -> None:
    """A thread makes the process's first ``Cache``, which imports the file store's
    module (tens of milliseconds); another thread forks meanwhile. Before, the child got
    that module locked by the importing thread, which it lacks, and its own first
    ``Cache`` waited for the import for ever (a fork-from-a-thread storm: a child stuck in
    ``_ModuleLock.acquire`` under ``_cache._file_store``); so too for the default
    folder's ``platformdirs``. Now the fork waits for the import to end."""
    from faultkit import finish, spawn

    proc = spawn(FORKED_WHILE_THE_FIRST_CACHE_IMPORTS_ITS_STORE, CACHE=str(tmp_path),
                 SLOW=slow)
    assert finish(proc, 60).strip() == "0"  # before: -14, the child's SIGALRM
