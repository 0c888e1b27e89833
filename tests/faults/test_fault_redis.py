"""Attacks on the Redis store with a real server: a frozen server (SIGSTOP), a stall longer
than a lock's lease, a planted chunk pointer, and an event loop waiting on the network.

Each test starts its own redis-server, since it freezes or floods it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultkit import LEASE_HOLDER as HOLDER
from faultkit import finish, read_line, spawn

pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[dev]')")

import redis

from memojar import Cache, MemojarWarning
from memojar._redisstore import CONFIRM_SHARE, LOCK_TTL, RedisStore
from redis_server import RedisServer, redis_server_path

SECRET = "fault-secret"
TIMEOUT = 1.0  # the stores' socket_timeout in these tests
SLACK = 0.6  # seconds of scheduling noise allowed on a busy 2-core machine (< TIMEOUT)
HANG = 30


@pytest.fixture
def server() -> Iterator[RedisServer]:
    if redis_server_path() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    started = RedisServer.start()
    yield started
    started.stop()


# --- no call waits longer than socket_timeout in all --------------------------------------

@pytest.mark.parametrize("options", [{}, {"retry_on_timeout": "yes"}],
                         ids=["", "retry_on_timeout in the URL"])
@pytest.mark.parametrize("when", ["before-the-call", "during-the-computation"])
def test_a_frozen_server_costs_a_call_one_socket_timeout_at_most(
    server: RedisServer, when: str, options: dict[str, str]
) -> None:
    """Old: the read, the write and the lock's release each waited socket_timeout again;
    with redis-py's ``retry_on_timeout`` in the URL, a request that timed out was tried
    again (two socket_timeouts).

    Frozen during the computation, the write may be what times out: it was sent (the
    frozen server may run it once it resumes), so the store reads the entry back, waiting
    a quarter of the timeout more, and the warning says that whether it was cached is
    unknown (before: "not cached", which the resumed server could make false). If the
    lease's renewal timed out first, the write was never sent: "not cached"."""
    cache = Cache(server.url(0, socket_timeout=TIMEOUT, **options), secret=SECRET)
    computing = 1.5  # longer than a fixed fail-fast pause of 1 s

    @cache.cached
    def work(x: int) -> int:
        if when == "during-the-computation":
            server.pause()
        time.sleep(computing)
        return x * 2

    if when == "before-the-call":
        server.pause()
    try:
        # During the computation, the lease's renewal (every 0.5 s) may time out before
        # the write is sent: the store then skips the write, and "not cached" is true.
        with pytest.warns(MemojarWarning, match="not cached" if when == "before-the-call"
                          else "not cached|whether it was cached is unknown: .* did not "
                               "answer its write within the store's timeout"):
            start = time.monotonic()
            assert work(1) == 2
            waited = time.monotonic() - start - computing
    finally:
        server.resume()
    allowed = TIMEOUT * (1 if when == "before-the-call" else 1 + CONFIRM_SHARE)
    assert waited < allowed + SLACK, f"waited {waited:.2f} s for a frozen server"


def test_a_call_waiting_for_a_connection_of_a_frozen_server_waits_one_timeout_at_most(
    server: RedisServer,
) -> None:
    """``max_connections=1``: another thread's request holds the one connection when the
    server freezes, and a call then waits for that connection. When the other request
    times out, the call fails over to computing at once (warned, not cached), one
    socket_timeout at most in all. Before, it took the connection given back and sent its
    read to the frozen server: a socket_timeout more, nearly two in all."""
    cache = Cache(server.url(0, socket_timeout=TIMEOUT, max_connections=1), secret=SECRET)

    @cache.cached
    def work(x: int) -> int:
        return x * 2

    client = cache.store._client  # type: ignore[attr-defined]
    client.ping()
    server.pause()

    def another_request() -> None:
        with contextlib.suppress(redis.RedisError):
            client.get("x")  # times out

    other = threading.Thread(target=another_request)
    try:
        other.start()
        time.sleep(0.3)  # its GET sent, on the pool's one connection
        with pytest.warns(MemojarWarning, match="not cached"):
            start = time.monotonic()
            assert work(1) == 2
            took = time.monotonic() - start
    finally:
        server.resume()
        other.join(HANG)
    assert took < TIMEOUT - 0.3 + SLACK, f"waited {took:.2f} s for a frozen server"


@pytest.mark.parametrize("user", ["default", "without PING"])
def test_the_store_answers_again_once_the_server_does(server: RedisServer, user: str) -> None:
    """Without PING: a user of least privilege may lack it (an ACL of ``+@read +@write
    +@scripting`` leaves out ``@connection``; ``rename-command PING ""``), and the server
    refusing the probe's ping answers all the same. Before, the probe took that refusal for
    a server still down: after one timeout, every later call of the process computed and
    stored nothing, with a warning each."""
    url = server.url(0, socket_timeout=TIMEOUT)
    if user != "default":
        server.client().acl_setuser("app", enabled=True, passwords=["+pw"], keys=["*"],
                                    channels=["*"], commands=["+@all", "-ping"])
        url = url.replace("redis://", "redis://app:pw@")
    cache = Cache(url, secret=SECRET)
    calls = []

    @cache.cached
    def work(x: int) -> int:
        calls.append(x)
        return x

    server.pause()
    try:
        with pytest.warns(MemojarWarning, match="not cached"):
            work(1)
    finally:
        server.resume()
    _until_up(cache)
    assert work(2) == work(2) == 2  # stored and hit: no warning (filterwarnings = error)
    assert calls == [1, 2]


def _until_up(cache: Cache) -> None:
    """Wait until the cache's store answers again after a fault."""
    deadline = time.monotonic() + HANG
    while True:
        try:
            cache.stats()
            return
        except OSError:
            assert time.monotonic() < deadline, "the store never saw the server again"
            time.sleep(0.05)


# --- a stall longer than the lock's lease -------------------------------------------------

_calls: list[int] = []
_started = threading.Event()
_go = threading.Event()


def slow_double(x: int) -> int:
    """The first call waits for ``_go``; later calls (the other caller's) return at once."""
    _calls.append(x)
    if len(_calls) == 1:
        _started.set()
        _go.wait(HANG)
    return x * 2


def test_a_lease_lost_in_a_stall_is_never_silent(server: RedisServer) -> None:
    """A holds the lock; the server freezes past the lease; B then computes the same key.
    A's late value is returned, not stored over B's, and A is told why."""
    _calls.clear()
    _started.clear()
    _go.clear()
    url = server.url(0, socket_timeout=TIMEOUT)
    first, second = Cache(url, secret=SECRET), Cache(url, secret=SECRET)
    a, b = first.cached(slow_double), second.cached(slow_double)
    entry = f"memojar:{a.__memojar__.name}:{a.cache_key(1)}".encode()
    results: list[Any] = []

    def stall_then_call_b() -> None:
        assert _started.wait(HANG)
        server.pause()
        time.sleep(LOCK_TTL + 1.0)  # the lease runs out while nobody can renew it
        server.resume()
        results.append(b(1))  # the lock has expired: B computes
        _until_up(first)
        _go.set()

    helper = threading.Thread(target=stall_then_call_b)
    helper.start()
    try:
        with pytest.warns(MemojarWarning, match="lock on the key expired"):
            assert a(1) == 2
    finally:
        _go.set()
        server.resume()
        helper.join(HANG)
    assert results == [2]
    assert _calls == [1, 1]
    stored = server.client().get(entry)
    assert stored is not None and b.cache_contains(1)  # B's entry, which A did not replace
    assert a(1) == 2 and _calls == [1, 1]


LEASE_JOB = """
import os, time
from memojar import Cache

cache = Cache(os.environ["URL"], secret=os.environ["SECRET"])

@cache.cached
def work(x):
    with open(os.environ["LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    if os.environ.get("HOLDER"):
        print("computing", flush=True)
        time.sleep(1.0)  # the SIGSTOP lands here, with the lock held
    return x * 2
"""


def test_a_holder_frozen_past_its_lease_does_not_store_over_the_next(
    server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process holding the lock is frozen (SIGSTOP) longer than the lease: no thread of
    it can renew. Another caller computes and stores; the frozen one, resumed, is told and
    stores nothing."""
    (tmp_path / "leasejob.py").write_text(LEASE_JOB)
    log = tmp_path / "computations.log"
    env = {"URL": server.url(0, socket_timeout=TIMEOUT), "SECRET": SECRET, "LOG": str(log)}
    holder = spawn(HOLDER, HOLDER="1", PYTHONPATH=str(tmp_path), **env)
    try:
        assert read_line(holder) == "computing"
        os.kill(holder.pid, signal.SIGSTOP)
        time.sleep(LOCK_TTL + 1.0)
        caller = spawn("from leasejob import work; print(work(1))", PYTHONPATH=str(tmp_path),
                       **env)
        assert finish(caller, HANG).strip() == "2"  # the lock had expired: computed there
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    out = finish(holder, HANG).splitlines()
    assert out[0] == "2"
    assert any("lock on the key expired" in line for line in out[1:]), out
    assert len(log.read_text().split()) == 2  # two computations, and the holder was told
    again = spawn("from leasejob import work; print(work(1))", PYTHONPATH=str(tmp_path), **env)
    assert finish(again, HANG).strip() == "2"
    assert len(log.read_text().split()) == 2  # the second caller's value was kept


# --- a planted chunk pointer ------------------------------------------------------------

@pytest.mark.parametrize("pointer", [
    b"MJCH 1 0123456789abcdef 1 999999999999999\n",  # the format before signatures
    b"MJCH 2 0123456789abcdef 999999999 999999999999999 -\n",
], ids=["format-1", "format-2"])
@pytest.mark.parametrize("secret", [None, SECRET], ids=["unsigned", "signed"])
def test_a_planted_pointer_costs_a_miss_not_a_memory_error(
    server: RedisServer, pointer: bytes, secret: str | None
) -> None:
    """Old: the pointer's size was allocated before a chunk was read: MemoryError, every call."""
    cache = Cache(server.url(0), secret=secret)
    calls = []

    @cache.cached
    def work(x: int) -> int:
        calls.append(x)
        return x + 1

    planted = f"memojar:{work.__memojar__.name}:{work.cache_key(1)}".encode()
    context = pytest.warns(MemojarWarning, match="no secret") if secret is None else _nothing()
    with context:
        for _ in range(3):
            server.client().set(planted, pointer)
            assert work(1) == 2
    assert calls == [1, 1, 1]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_pointer_whose_signature_does_not_verify_is_never_followed(
    server: RedisServer,
) -> None:
    client = server.client()
    url = server.url(0, chunk_size=1000)
    writer = RedisStore(url, secret=b"k1")
    writer.write("f", "0" * 32, [b"a" * 5000])
    assert bytes(writer.read("f", "0" * 32)) == b"a" * 5000
    name = b"memojar:f:" + b"0" * 32
    pointer = client.get(name)
    first, rest = pointer.split(b"\n", 1)
    forged = first.rsplit(b" ", 1)[0] + b" " + b"0" * 32 + b"\n" + rest
    client.set(name, forged)
    assert writer.read("f", "0" * 32) is None
    client.set(name, pointer)
    assert RedisStore(url, secret=b"k2").read("f", "0" * 32) is None  # another secret
    assert bytes(writer.read("f", "0" * 32)) == b"a" * 5000


# --- the event loop never waits on the network ------------------------------------------

def test_an_async_function_never_blocks_the_loop_on_a_frozen_server(server: RedisServer) -> None:
    """Old: the coroutine read Redis in the loop's thread, freezing every task for a
    socket_timeout (1 s) on every run. A busy machine can stall any loop past 0.1 s now and
    then: the best of three runs, each on a cache of its own (a store that has met a lost
    server fails fast, so a second run on it would not wait on the network at all)."""

    def frozen_run(db: int) -> float:
        cache = Cache(server.url(db, socket_timeout=TIMEOUT), secret=SECRET)

        @cache.cached
        async def triple(x: int) -> int:
            await asyncio.sleep(0.05)
            return 3 * x

        async def main() -> tuple[list[int], float]:
            lag = 0.0
            done = asyncio.Event()

            async def ticker() -> None:
                nonlocal lag
                while not done.is_set():
                    before = time.monotonic()
                    await asyncio.sleep(0.01)
                    lag = max(lag, time.monotonic() - before - 0.01)

            ticking = asyncio.create_task(ticker())
            await asyncio.sleep(0.05)
            values = await asyncio.gather(triple(1), triple(2), triple(1))
            done.set()
            await ticking
            return list(values), lag

        assert asyncio.run(main())[0] == [3, 6, 3]  # warm: the server answers
        server.pause()
        try:
            with pytest.warns(MemojarWarning, match="not cached"):
                values, lag = asyncio.run(main())
        finally:
            server.resume()
        assert values == [3, 6, 3]
        return lag

    lags: list[float] = []
    for db in range(3):
        lags.append(frozen_run(db))
        if lags[-1] < 0.1:
            break
    assert min(lags) < 0.1, f"the event loop stalled {', '.join(f'{x:.3f}' for x in lags)} s"


def test_a_lock_taken_for_a_cancelled_caller_is_given_back(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker thread's acquire outlives the caller's cancellation: the lock it takes
    then is released, not held and renewed for nobody."""
    cache = Cache(server.url(0), secret=SECRET)
    store = cache.store
    in_flight = threading.Event()
    make_lock = store.lock

    def slow_lock(function: str, key: str) -> Any:
        lock = make_lock(function, key)
        acquire = lock.acquire

        def late_acquire(*args: Any, **kwargs: Any) -> bool:
            in_flight.set()
            time.sleep(0.3)  # the caller is cancelled meanwhile
            return acquire(*args, **kwargs)

        lock.acquire = late_acquire  # type: ignore[method-assign]
        return lock

    monkeypatch.setattr(store, "lock", slow_lock)

    @cache.cached
    async def never(x: int) -> int:
        raise AssertionError("a cancelled caller computed")

    async def main() -> None:
        task = asyncio.create_task(never(1))
        while not in_flight.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    name = f"memojar:{never.__memojar__.name}:{never.cache_key(1)}:lock".encode()
    client = server.client()
    deadline = time.monotonic() + LOCK_TTL + 1.0  # past the lease: held only if renewed
    while time.monotonic() < deadline and client.exists(name):
        time.sleep(0.05)
    assert not client.exists(name), "the lock of a cancelled caller is still held"
    assert time.monotonic() < deadline - LOCK_TTL, "released by expiry, not given back"
