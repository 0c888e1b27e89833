"""``Cache.close()`` of a remote store, and the store used after it: a closed store keeps
its leases, renews the ones it takes later, comes back after a fault, and closing it under
calls of other threads costs them nothing."""

from __future__ import annotations

import importlib
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from memojar import Cache, MemojarWarning, _cache
from memojar._cache import open_store
from memojar._store import Renewer
from redis_server import RedisServer
from remote_kit import FN, HANG, SECRET, counted, k, others_than

LEASES = {"redis": ("_redislease", "LOCK_TTL"), "s3": ("_s3store", "LEASE_TTL")}


@pytest.mark.real_leases  # the lease must outlive the products' lease length
@pytest.mark.parametrize("kind", ["redis", "s3"])
def test_leases_held_at_close_and_taken_after_it_are_renewed(
    kind: str, request: pytest.FixtureRequest,
) -> None:
    """Before: ``close`` stopped the renewer for good, so a call computing in another thread
    (or any call after ``close``) lost its lease after the lease's length, another caller
    computed the same value, and the first one's result was not stored ("not cached")."""
    location = request.getfixturevalue(f"{kind}_location")
    module, name = LEASES[kind]
    ttl = getattr(importlib.import_module(f"memojar.{module}"), name)
    store, other = open_store(location, None, True), open_store(location, None, True)
    held = store.lock(FN, k(1))
    assert held.acquire()
    store.close()  # while held
    taken = store.lock(FN, k(2))
    assert taken.acquire()  # after close
    # A waiter takes a lease over once it has seen it unchanged for the lease's length
    # (S3) or it expired (Redis): look now, and again past that length.
    waiters = [other.lock(FN, key) for key in (k(1), k(2))]
    assert not any(waiter.acquire(blocking=False) for waiter in waiters)
    time.sleep(ttl * 1.5)  # only renewals keep them
    for waiter in waiters:
        waiter._next_try = 0.0  # S3: not the backoff's answer, the lease's
        assert waiter.acquire(blocking=False) is False, waiter.name
    held.release()
    taken.release()
    theirs = other.lock(FN, k(1))
    assert theirs.acquire(blocking=False)
    theirs.release()
    store.close()
    other.close()


def test_a_closed_cache_caches_again_once_its_server_answers(
    own_redis: Callable[[], RedisServer],
) -> None:
    """Before: ``close`` stopped the breaker's prober and left it noted as running, so the
    first fault after ``close`` made every later call of the process skip the server."""
    server = own_redis()
    cache = Cache(server.url(0, socket_timeout=0.5), secret=SECRET)
    double, calls = counted(cache)
    assert double(1) == 2
    cache.close()
    server.pause()
    try:
        with pytest.warns(MemojarWarning, match="not cached"):
            assert double(2) == 4
    finally:
        server.resume()
    deadline = time.monotonic() + HANG
    while True:  # the server answers again: within a probe's round, calls cache again
        time.sleep(0.3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MemojarWarning)
            assert double(3) == 6
        if double.cache_contains(3):
            break
        assert time.monotonic() < deadline, "a closed cache never used its server again"
    assert double(1) == 2
    assert calls.count(1) == 1
    cache.close()


def test_closing_a_cache_under_calls_of_other_threads_costs_them_nothing(
    redis_location: str,
) -> None:
    """Before: ``close`` disconnected the connections other threads were using, and their
    calls raised redis-py's ``ValueError: I/O operation on closed file`` or
    ``AttributeError`` instead of returning their result (and the fault made later calls
    skip the server for good)."""
    cache = Cache(redis_location, secret=SECRET)

    @cache.cached
    def double(x: int) -> int:
        return 2 * x

    failures: list[BaseException] = []
    wrong: list[tuple[int, int]] = []
    stop = time.monotonic() + 3.0

    def caller(start: int) -> None:
        i = start
        while time.monotonic() < stop:
            i += 1
            try:
                got = double(i % 40)
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                failures.append(exc)
                continue
            if got != 2 * (i % 40):
                wrong.append((i, got))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemojarWarning)  # a slow server: not the point
        threads = [threading.Thread(target=caller, args=(n * 1000,)) for n in range(3)]
        for thread in threads:
            thread.start()
        while time.monotonic() < stop:
            cache.close()
            time.sleep(0.002)
        for thread in threads:
            thread.join(HANG)
    assert not failures, failures[:3]
    assert not wrong
    assert double.cache_contains(1)  # still caching after all those closes
    cache.close()


def test_the_statistics_merge_after_close_leaves_no_connection(
    own_redis: Callable[[], RedisServer],
) -> None:
    """The statistics thread merges a closed cache's counts of the calls before ``close``:
    the connection it used is closed as the merge ends. Before, it stayed open, idle, for as
    long as the closed cache was referenced (every cache closed less than 5 s after a call
    left one)."""
    server = own_redis()
    cache = Cache(server.url(0), secret=SECRET)
    double, _ = counted(cache)
    client = server.client()

    try:
        assert double(1) == 2
        assert double(1) == 2
        cache.close()
        assert others_than(client) == []
        _cache._FLUSHER.merge_all()  # the statistics thread's round
        assert others_than(client) == []
        assert client.keys("*stats")  # merged
    finally:
        client.close()
    assert double(1) == 2  # a later call connects again
    assert double.cache_contains(1)


class _Lease:
    def __init__(self, renewer: Renewer, renew: Callable[[_Lease], bool]) -> None:
        self.name = "lease"
        self.renewer = renewer
        self._renew = renew
        self.rounds = 0

    def renew(self) -> bool:
        self.rounds += 1
        return self._renew(self)

    def disown(self) -> None:
        pass


def _until_idle(renewer: Renewer) -> None:
    deadline = time.monotonic() + HANG
    while renewer._thread is not None:
        assert time.monotonic() < deadline
        renewer.wake()
        time.sleep(0.01)


def test_a_lease_released_during_a_renewal_round_is_not_reported_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A holder releases its lease (``discard``, then the server removes it) while the
    renewer's round renews it: the renewal is refused, and that is no lost lease. Before: a
    WARNING "expired while held" after a call that stored its value."""
    renewer = Renewer(0.01, "test-renewer")

    def released_meanwhile(lease: _Lease) -> bool:
        renewer.discard(lease)  # as ``release`` does, before removing the lease
        return False  # the server no longer has it

    lease = _Lease(renewer, released_meanwhile)
    with caplog.at_level(logging.DEBUG, logger="memojar"):
        renewer.add(lease)
        _until_idle(renewer)
    assert lease.rounds == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_renewal_failing_with_any_error_keeps_the_renewer_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client closed under a renewal fails with ``ValueError`` (redis-py): the renewer
    logs it and renews at its next round. Before: the thread died with a traceback on
    stderr, and held leases were renewed no more."""
    renewer = Renewer(0.01, "test-renewer")

    def fails_then_releases(lease: _Lease) -> Any:
        if lease.rounds == 1:
            raise ValueError("I/O operation on closed file.")
        renewer.discard(lease)
        return True

    lease = _Lease(renewer, fails_then_releases)
    with caplog.at_level(logging.DEBUG, logger="memojar"):
        renewer.add(lease)
        _until_idle(renewer)
    assert lease.rounds == 2
    assert "renewing 'lease' failed" in caplog.text


def test_a_failure_after_the_releases_finished_keeps_the_renewer_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hook run after a round's releases (``after_jobs``: a closed Redis store closes
    the connections they used) fails: the renewer logs it and goes on renewing the leases
    held. Were it to end the thread, they would expire unrenewed."""
    def fails() -> None:
        raise ValueError("I/O operation on closed file.")

    renewer = Renewer(0.01, "test-renewer", fails)

    def renewed_twice(lease: _Lease) -> bool:
        if lease.rounds == 2:
            renewer.discard(lease)
        return True

    lease = _Lease(renewer, renewed_twice)
    with caplog.at_level(logging.DEBUG, logger="memojar"):
        renewer.later(lambda: True, 1.0)  # a release finished in the first round
        renewer.add(lease)
        _until_idle(renewer)
    assert lease.rounds == 2
    assert "after the releases finished" in caplog.text
