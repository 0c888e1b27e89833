"""What every remote store does the same way, run on each (Redis, S3): the trust warning
of a cache without a secret (``Store``'s, given once), and ``@cached(cache_dir=URL)``; and
what processes sharing a store do to each other, on every store (the directory too): two
code versions of one function, two secrets."""

from __future__ import annotations

import asyncio
import pickle
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python
from memojar import Cache, MemojarWarning, _entry, cached
from remote_kit import (
    HANG,
    PLANTED_WARNING,
    SECRET,
    Planted,
    ReplyDropper,
    counted,
    entry_object,
    evalsha,
    past_the_fault,
    short_timeout,
    split,
)


@pytest.fixture(params=["redis", "s3"])
def remote_location(request: pytest.FixtureRequest) -> Any:
    if request.param == "redis":
        pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[dev]')")
    return request.getfixturevalue(f"{request.param}_location")


def _redis(location: str, request: pytest.FixtureRequest) -> Any:
    """A plain redis-py client on ``location``'s database (close it)."""
    return request.getfixturevalue("redis_server").client(int(location.rsplit("/", 1)[1]))


def _stored(location: str, request: pytest.FixtureRequest) -> set[str]:
    """Every key (Redis) or object (S3) at ``location``, listed by a plain client behind the
    store's back."""
    if location.startswith("redis://"):
        client = _redis(location, request)
        try:
            return {name.decode() for name in client.scan_iter()}
        finally:
            client.close()
    bucket, prefix = split(location)
    pages = request.getfixturevalue("s3_server").client().get_paginator(
        "list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _plant(location: str, request: pytest.FixtureRequest, name: str, data: bytes) -> None:
    """Write ``data`` as the key (Redis) or object (S3) ``name``, behind the store's back."""
    if location.startswith("redis://"):
        client = _redis(location, request)
        try:
            client.set(name, data)
        finally:
            client.close()
    else:
        request.getfixturevalue("s3_server").client().put_object(
            Bucket=split(location)[0], Key=name, Body=data)


def _entry_name(location: str, f: Any, *args: Any) -> str:
    """The key ``memojar:<function>:<key>`` (Redis) or the object ``<prefix>/<function's
    folder>/<key>.pkl`` (S3) of ``f(*args)``'s entry."""
    if location.startswith("redis://"):
        return f"memojar:{f.__memojar__.name}:{f.cache_key(*args)}"
    return entry_object(location, f, *args)


def test_cache_round_trip(remote_location: str, request: pytest.FixtureRequest) -> None:
    """A value stored where the store says (``_entry_name``), hit, listed, counted, found and
    cleared."""
    cache = Cache(remote_location, secret=SECRET)
    double, calls = counted(cache)
    assert double(21) == 42
    assert double(21) == 42
    assert calls == [21]
    key = double.cache_key(21)
    assert [n for n in _stored(remote_location, request) if key in n] == [
        _entry_name(remote_location, double, 21)]
    (info,) = cache.entries()
    assert info.function.endswith("double")
    assert info.key == key
    assert cache.stats().entries == 1
    assert double.cache_contains(21)
    assert cache.clear() == 1
    assert not double.cache_contains(21)
    cache.close()


@pytest.mark.parametrize("attacker_secret", [None, b"another-secret"],
                         ids=["unsigned", "wrong-key"])
def test_planted_entries_are_never_unpickled(remote_location: str, tmp_path: Path,
                                             request: pytest.FixtureRequest,
                                             attacker_secret: bytes | None) -> None:
    """An entry written behind the store's back, unsigned or signed with another secret, is
    never loaded: the call warns, computes, and replaces it."""
    double, calls = counted(Cache(remote_location, secret=SECRET))
    assert double(21) == 42
    memo = double.__memojar__  # type: ignore[attr-defined]
    marker = tmp_path / "unpickled"
    planted = _entry.encode(
        Planted(marker), ident=memo.ident, key=double.cache_key(21), created=time.time(),
        expires=None, compute_time=0.0, secret=attacker_secret,
    )
    _plant(remote_location, request, _entry_name(remote_location, double, 21),
           b"".join(bytes(memoryview(c)) for c in planted))
    with pytest.warns(MemojarWarning, match=PLANTED_WARNING):  # named, once per cache
        assert double(21) == 42
    assert calls == [21, 21]
    assert not marker.exists()
    assert double(21) == 42  # the recomputed entry replaced the planted one
    assert calls == [21, 21]
    assert not marker.exists()


def test_the_planted_payload_does_run_when_unpickled(tmp_path: Path) -> None:
    """The control for the test above: this payload would have left its marker."""
    marker = tmp_path / "unpickled"
    pickle.loads(pickle.dumps(Planted(marker))).close()
    assert marker.exists()


def test_unsigned_cache_warns_once(remote_location: str) -> None:
    warnings.resetwarnings()  # the fixture ignores this warning for store-level tests
    warnings.simplefilter("error")
    double, _ = counted(Cache(remote_location))
    with pytest.warns(MemojarWarning) as record:
        assert [double(1), double(1), double(2)] == [2, 2, 4]
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert "has no secret: its entries are not authenticated" in messages[0]
    assert remote_location.partition("?")[0] in messages[0]


def test_the_no_secret_warning_comes_once_per_location_not_per_cache(
        remote_location: str) -> None:
    """Before: once per Cache object (on S3 until now), so a service making a Cache per
    request or per task said it at each one's first call."""
    warnings.resetwarnings()  # the fixture ignores this warning for store-level tests
    warnings.simplefilter("always")  # as pytest, IPython or -W default show it: every time
    with pytest.warns(MemojarWarning) as record:
        for _ in range(3):
            double, _ = counted(Cache(remote_location))
            assert double(1) == double(1) == 2
    assert len(record) == 1, [str(w.message) for w in record]


def test_signed_cache_does_not_warn(remote_location: str) -> None:
    warnings.resetwarnings()
    warnings.simplefilter("error")
    double, _ = counted(Cache(remote_location, secret=SECRET))
    assert double(1) == double(1) == 2  # any warning fails


def test_cached_with_a_remote_cache_dir(remote_location: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMOJAR_SECRET", SECRET)
    calls = []

    @cached(cache_dir=remote_location)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(x=3)] == [9, 9, 9]
    assert calls == [3]
    assert square.cache_info().entries == 1
    assert square.cache_delete(3) is True
    assert square.cache_delete(3) is False


# --- a write whose reply is withheld --------------------------------------------------------

@pytest.fixture
def remote_dropper(remote_location: str,
                   request: pytest.FixtureRequest) -> Iterator[ReplyDropper]:
    """A proxy in front of ``remote_location``'s server (the session's) that loses chosen
    replies."""
    kind = remote_location.partition("://")[0]
    with ReplyDropper(request.getfixturevalue(f"{kind}_server").port) as proxy:
        yield proxy


def _write_and_look(location: str, f: Any, *args: Any) -> tuple[bytes, bytes]:
    """What the request writing ``f(*args)``'s entry holds, and what the look at an entry's
    header (the read back of a write that failed) holds, on ``f``'s store at ``location``."""
    store = f.__memojar__.store
    if store.kind == "Redis":
        return evalsha(store._commit), b"GETRANGE"
    bucket, _ = split(location)
    return (f"PUT /{bucket}/{entry_object(location, f, *args)} ".encode(),
            b"\r\nRange: bytes=0-")


def test_a_write_whose_reply_and_check_timed_out_says_it_may_be_cached(
        remote_location: str, remote_dropper: ReplyDropper) -> None:
    """The entry's write and the read that would tell whether it was stored both go
    unanswered: the warning says that nothing is known, and that the server did not answer
    in time (not that the connection dropped: it did not). The entry was stored: once the
    store is past the fault, the next call hits."""
    cache = Cache(short_timeout(remote_dropper.front(remote_location)), secret=SECRET)
    double, calls = counted(cache)
    double(0)  # (Redis's commit script is loaded: the next EVALSHA of it runs)
    for needle in _write_and_look(remote_location, double, 2):
        remote_dropper.drop(needle, silent=True)
    with pytest.warns(MemojarWarning) as warned:
        assert double(2) == 4
    assert len(remote_dropper.dropped) == 2
    (message,) = [str(w.message) for w in warned]
    assert "not cached" not in message, message
    assert "dropped" not in message, message
    scheme = remote_location.partition("://")[0]
    assert re.search(rf"returned; whether it was cached is unknown: {scheme}://.* did not "
                     r"answer its write within the store.s timeout, and reading the entry "
                     r"back failed", message), message
    past_the_fault(cache.store)
    assert double(2) == 4
    assert calls == [0, 2]  # a hit: it was stored
    cache.close()


# --- two code versions of one function sharing a store --------------------------------------

_SHARED_SCRIPT = """
import sys
sys.path.insert(0, {folder!r})
from memojar import Cache
import sharedmod

f = Cache({url!r}, secret={secret!r}).cached(sharedmod.load)
print([f(x) for x in sys.argv[1:]], f.cache_info().misses)
"""


@pytest.mark.parametrize("location", ["file", "redis", "s3"], indirect=True)
def test_two_code_versions_sharing_a_store_replace_each_other_s_entries(
    location: str, tmp_path: Any
) -> None:
    """Two processes running different code of one function (two machines, two checkouts)
    on one store: each call gets its own code's value, never the other's; and each code
    finds the other's entry incompatible, removes it and stores its own, so they recompute
    in turn: the same on every store (README: Sharing a cache)."""
    scripts = []
    for name, body in (("old", "return ['old', x]"), ("new", "return ['new', x]")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "sharedmod.py").write_text(f"def load(x):\n    {body}\n")
        scripts.append(_SHARED_SCRIPT.format(folder=str(folder), url=str(location),
                                             secret=SECRET))

    def run(script: str, *args: str) -> str:
        return run_python(script, *args, timeout=120).strip()

    old, new = scripts
    assert run(old, "a", "b") == "[['old', 'a'], ['old', 'b']] 2"
    assert run(old, "a", "b") == "[['old', 'a'], ['old', 'b']] 0"
    assert run(new, "a") == "[['new', 'a']] 1"  # replaced old's 'a'; its first store swept 'b'
    assert run(old, "a", "b") == "[['old', 'a'], ['old', 'b']] 2"
    assert run(new, "a") == "[['new', 'a']] 1"


_SECRET_SCRIPT = """
import sys, warnings
from memojar import Cache, MemojarWarning

def load(x):
    return x * 2

f = Cache({url!r}, secret=sys.argv[1]).cached(load)
with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    values = [f(1), f(2), f(1)]
said = [str(w.message) for w in record if issubclass(w.category, MemojarWarning)]
print(values, f.cache_info().misses, len(said), said[0] if said else "")
"""


@pytest.mark.parametrize("location", ["file", "redis", "s3"], indirect=True)
def test_processes_under_different_secrets_are_warned_once(location: str) -> None:
    """Two processes sharing a store under different secrets never load each other's
    entries and replace them in turn: each is told why, once (before: silently)."""
    script = _SECRET_SCRIPT.format(url=str(location))

    def run(secret: str) -> str:
        return run_python(script, secret, timeout=120).strip()

    assert run("one") == "[2, 4, 2] 2 0"
    assert run("one") == "[2, 4, 2] 0 0"
    out = run("two")
    assert out.startswith("[2, 4, 2] 2 1 an entry of __main__.load in "), out
    assert "is signed with another secret (or was forged)" in out
    assert "Give every process sharing this cache the same secret" in out
    assert run("one").startswith("[2, 4, 2] 2 1 an entry of __main__.load")


# --- waiting for a key another caller holds -------------------------------------------------

class _Paused(Exception):
    """Raised by the waiting loop's first pause (the wait has begun)."""


def _lock_requests(store: Any) -> list[str]:
    """What ``store`` asks its server about key locks, recorded as it is sent: a Redis
    ``SET NX`` script of a lock, an S3 request on a lease object."""
    sent: list[str] = []
    if store.kind == "Redis":
        client, acquire = store._client, store._acquire
        real = client.execute_command

        def execute_command(*args: Any, **kwargs: Any) -> Any:
            if args[0] == "EVALSHA" and args[1] == acquire.sha:
                sent.append(f"acquire {args[3]!r}")
            return real(*args, **kwargs)

        client.execute_command = execute_command
    else:
        def before_call(model: Any, params: dict[str, Any], **kwargs: Any) -> None:
            if str(params.get("Key", "")).endswith(".lease"):
                sent.append(f"{model.name} {params['Key']}")

        store._bucket.client.meta.events.register("before-parameter-build.s3", before_call)
    return sent


def test_a_held_key_costs_one_try_before_the_wait(remote_location: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller finding the key locked by another starts waiting after one try of the lock.
    Old: the decorator tried once and the waiting loop at once again, before any pause: a
    second request to the server (Redis's ``SET NX``) for nothing."""
    import memojar._store as store_module

    holder, _ = counted(Cache(remote_location, secret=SECRET))
    waiter, calls = counted(Cache(remote_location, secret=SECRET))
    memo = waiter.__memojar__  # type: ignore[attr-defined]
    held = holder.__memojar__.store.lock(memo.name, waiter.cache_key(1))  # type: ignore[attr-defined]
    assert held.acquire(blocking=False)
    sent = _lock_requests(memo.store)

    def sleep(seconds: float) -> None:
        raise _Paused

    monkeypatch.setattr(store_module, "time", type("Clock", (), {
        "monotonic": staticmethod(time.monotonic), "time": staticmethod(time.time),
        "sleep": staticmethod(sleep)}))
    try:
        with pytest.raises(_Paused):
            waiter(1)
    finally:
        monkeypatch.undo()
        held.release()
    if memo.store.kind == "Redis":
        assert len(sent) == 1 and sent[0].endswith(":lock'"), sent
    else:  # the lease's conditional creation, refused, then a look at the lease held
        assert [s.split()[0] for s in sent] == ["PutObject", "HeadObject"], sent
    assert calls == []


class _Tallied:
    """A key lock that tallies the takes of it, and gives itself back only once ``hold``
    is set (a holder that keeps the key after storing its value)."""

    def __init__(self, lock: Any, taken: list[int], hold: threading.Event | None) -> None:
        self.lock, self.taken, self.hold = lock, taken, hold
        self.tries = 0

    def _tally(self, took: bool) -> bool:
        self.tries += 1
        if took:
            self.taken.append(1)
        return took

    def acquire(self, blocking: bool = True) -> bool:
        return self._tally(self.lock.acquire(blocking))

    def acquire_within(self, *args: Any) -> bool:
        return self._tally(self.lock.acquire_within(*args))

    def poll(self, *args: Any) -> bool | None:
        taken = self.lock.poll(*args)
        self._tally(taken is True)
        return taken

    def release(self) -> None:
        if self.hold is not None:
            assert self.hold.wait(HANG * 3)
        self.lock.release()


def _tallied(cache: Cache, taken: list[int], locks: list[_Tallied],
             hold: threading.Event | None = None) -> None:
    store, real = cache.store, cache.store.lock

    def lock(function: str, key: str) -> Any:
        locks.append(_Tallied(real(function, key), taken, hold))
        return locks[-1]

    store.lock = lock  # type: ignore[method-assign]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["def", "async"])
@pytest.mark.parametrize("location", ["file", "redis", "s3"], indirect=True)
def test_waiters_read_the_stored_value_without_taking_the_lock(location: str,
                                                               asynchronous: bool) -> None:
    """Callers waiting for another's computation of their key get its value as soon as it
    is stored, each reading the entry: none takes the lock after it just to read it. The
    holder here keeps the lock after storing, so the waiters can only have read.

    Old: each waiter took the lock in turn (a lease on S3: a conditional PUT, a read, a
    DELETE, with backoffs between), so the last of 20 waiters on S3 got the value seconds
    after it was stored (benchmarks/waiters.py); here they would wait for the lock until
    this holder gave it back."""
    started, go, hold = threading.Event(), threading.Event(), threading.Event()
    calls: list[int] = []

    def slow(x: int) -> int:
        calls.append(x)
        started.set()
        assert go.wait(HANG)
        return x * 2

    async def aslow(x: int) -> int:
        calls.append(x)
        started.set()
        assert await asyncio.to_thread(go.wait, HANG)
        return x * 2

    def caller(cache: Cache) -> Callable[[int], int]:
        if not asynchronous:
            return cache.cached(slow)
        f = cache.cached(aslow)
        return lambda x: asyncio.run(f(x))

    holder_cache = Cache(location, secret=SECRET)
    holder_taken: list[int] = []
    _tallied(holder_cache, holder_taken, [], hold)
    holder = caller(holder_cache)
    waiter_taken: list[int] = []
    waiter_locks: list[_Tallied] = []
    waiters, caches = [], []
    for _ in range(4):  # each with a store of its own: as on other machines
        cache = Cache(location, secret=SECRET, lock_timeout=HANG * 2)
        _tallied(cache, waiter_taken, waiter_locks)
        waiters.append(caller(cache))
        caches.append(cache)
    values: dict[int, int] = {}
    holding = threading.Thread(target=lambda: values.__setitem__(-1, holder(21)))
    holding.start()
    threads = [threading.Thread(target=lambda i=i: values.__setitem__(i, waiters[i](21)))
               for i in range(len(waiters))]
    try:
        assert started.wait(HANG)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + HANG  # for all of them
        while len(waiter_locks) < len(waiters) or not all(w.tries for w in waiter_locks):
            assert time.monotonic() < deadline, "the waiters never tried the lock"
            time.sleep(0.01)
        go.set()  # the holder stores its value, and keeps the lock
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
        assert not any(t.is_alive() for t in threads), "waiters waited for the lock"
    finally:
        go.set()
        hold.set()
        holding.join(HANG)
        for thread in threads:
            if thread.ident is not None:
                thread.join(HANG)
    assert values == {-1: 42, 0: 42, 1: 42, 2: 42, 3: 42}
    assert calls == [21]
    assert holder_taken == [1] and waiter_taken == []
    # each waiter hit: a Cache's stats count this process's calls on its location, through
    # any Cache of it (the holder computed), so each of the four says four
    assert [c.stats().hits for c in caches] == [4, 4, 4, 4]


def test_a_release_the_server_cannot_take_is_tried_again_until_its_deadline() -> None:
    """``Renewer.attempt``: a release that fails now (the job returns False) is tried again
    at the renewer's rounds, and no longer once its ``within`` has passed."""
    from memojar._store import Renewer

    renewer = Renewer(0.02, "memojar-test-renewer")
    tries: list[float] = []

    def refused() -> bool:
        tries.append(time.monotonic())
        return False

    try:
        start = time.monotonic()
        renewer.attempt(refused, 0.3)
        time.sleep(1.0)
        assert len(tries) >= 3  # now, then at least twice at the rounds
        count = len(tries)
        time.sleep(0.3)
        assert len(tries) == count  # none past the deadline
        assert tries[-1] - start >= 0.2  # tried for about as long as ``within``
    finally:
        renewer.stop()
