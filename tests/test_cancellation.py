"""asyncio cancellation of ``@cached async def`` calls at every point where they wait: a
cancelled call leaves no key lock or lease held, no ``_held`` mark and no temporary file; a
value the function returned before the cancellation is stored (the store was reachable);
callers waiting on a cancelled leader go on and compute once between them; no wrong value.

On the file store a miss waits only in the function's own awaits (the store's calls are
made inline); on Redis and S3 every store call runs in a worker thread of the event loop's
default executor, and the tests step that executor job by job (``SteppedExecutor``), so
that a task is cancelled while each store call in turn is queued, and while it runs."""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import functools
import gc
import glob
import itertools
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python
from interrupt_kit import SUPPORTED, Points
from memojar import Cache, _decorator, _locks, _waits
from memojar._cache import open_store

HANG = 20.0  # seconds: a wait longer than this is a hang, whatever the machine
LONG_LEASE = 60.0  # seconds: no lease expires during a test (see conftest.BEHAVIOUR_LEASE)
# seconds: the longest a call may take once nothing holds its key, below lock_timeout (5 s or
# 10 s: what a lock left held costs, with a warning these tests report). Not less: on a loaded
# 2-core machine (CI installing the other Pythons' venvs beside the suite) a next call that
# found nothing held has taken over 1.5 s.
QUICK = 4.0
RELEASED = 3.0  # seconds within which a lock taken after a cancellation is given back
# The same on Redis and S3: a miss there is several round trips, and the test's S3 server
# (moto) answers from a thread of this process, slow on a loaded machine.
QUICK_REMOTE = 8.0


@pytest.fixture(params=["file", "redis", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "file":
        return str(tmp_path / "cache")
    from memojar import _redislease, _s3store

    monkeypatch.setattr(_redislease, "LOCK_TTL", LONG_LEASE)
    monkeypatch.setattr(_s3store, "LEASE_TTL", LONG_LEASE)
    return str(request.getfixturevalue(f"{request.param}_location"))


remote = pytest.mark.parametrize("location", ["redis", "s3"], indirect=True)


def lock_is_free(location: str, func: Any, x: Any) -> bool:
    """Whether a caller of another store (as another process would) gets the key's lock
    within RELEASED seconds: a lock a cancelled call took after all is given back by the
    worker thread that took it, a moment after the cancellation reached the caller (on a
    loaded machine, after this check had looked once: CI's README run); one left held stays
    held (for lock_timeout, or the lease's 60 s)."""
    memo = func.__memojar__
    lock = open_store(location, None, True).lock(memo.name, func.cache_key(x))
    deadline = time.monotonic() + RELEASED
    while not lock.acquire(blocking=False):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    lock.release()
    return True


def left_behind(location: str, func: Any, x: Any) -> list[str]:
    """A held lock or a temporary file (cleaned up, so the next round starts clean)."""
    left = []
    if not lock_is_free(location, func, x):
        left.append("the key's lock is held")
    if "://" not in location:
        temporary = glob.glob(f"{location}/**/*.tmp", recursive=True)
        if temporary:
            left.append(f"temporary files {temporary}")
    return left


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {HANG} s for {what}")
        await asyncio.sleep(0.001)


async def outcome_of(task: asyncio.Task[Any]) -> Any:
    """The task's value, or "cancelled"; within HANG seconds."""
    done, _ = await asyncio.wait({task}, timeout=HANG)
    assert done, "a cancelled call hung"
    return "cancelled" if task.cancelled() else task.result()


# --- the file store: the function's own awaits ------------------------------------------


def test_a_call_cancelled_at_each_await_on_the_file_store_leaves_nothing(tmp_path: Path
                                                                         ) -> None:
    location = str(tmp_path / "cache")
    returned: list[int] = []

    @Cache(location, lock_timeout=5, secret="s").cached
    async def f(x: int) -> int:
        for _ in range(3):
            await asyncio.sleep(0)
        returned.append(x)
        return x * 2

    async def main() -> list[Any]:
        broken: list[Any] = []
        for k in range(100):
            f.cache_delete(3)
            returned.clear()
            marks: list[Any] = []

            async def call(marks: list[Any] = marks) -> int:
                try:
                    return await f(3)
                finally:
                    marks.append(_decorator._held.get())

            task = asyncio.create_task(call())
            for _ in range(k):
                await asyncio.sleep(0)
            if task.done():
                assert task.result() == 6
                assert k > 3  # cancelled at the function's awaits before this
                return broken
            task.cancel()
            got = await outcome_of(task)
            left = left_behind(location, f, 3)
            if any(marks):  # (none if cancelled before it started)
                left.append(f"_held {marks}")
            if got not in ("cancelled", 6):
                left.append(f"value {got!r}")
            if returned and not f.cache_contains(3):
                left.append("the value returned was not stored")
            start = time.monotonic()
            if await asyncio.wait_for(f(3), HANG) != 6 or time.monotonic() - start > QUICK:
                left.append("the next call was wrong or waited")
            if left:
                broken.append((k, left))
        raise AssertionError("the call never completed")

    assert asyncio.run(main()) == []


# --- Redis and S3: every store call, queued and running ---------------------------------


class _Job:
    def __init__(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.started, self.go = threading.Event(), threading.Event()
        self.thread: threading.Thread | None = None
        self.mutex = threading.Lock()

    def start(self, hold: bool = False) -> None:
        """Give the job a thread; it calls its function at once, or with ``hold`` once
        ``go`` is set. Idempotent."""
        with self.mutex:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True)
                self.thread.start()
        if not hold:
            self.go.set()

    def _run(self) -> None:
        if not self.future.set_running_or_notify_cancel():  # cancelled while queued:
            self.started.set()  # never runs, as in a ThreadPoolExecutor
            return
        self.started.set()
        self.go.wait(HANG)
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class SteppedExecutor(concurrent.futures.ThreadPoolExecutor):
    """An event loop's default executor whose jobs wait in a queue until the test starts
    them one by one (``jobs[i].start()``), or all (``run_freely``)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.jobs: list[_Job] = []
        self.free = False
        self.mutex = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future[Any]:
        job = _Job(fn, args, kwargs)
        with self.mutex:
            self.jobs.append(job)
            free = self.free
        if free:
            job.start()
        return job.future

    def run_freely(self) -> None:
        with self.mutex:
            self.free = True
            jobs = list(self.jobs)
        for job in jobs:
            job.start()

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        self.run_freely()
        for job in list(self.jobs):
            if job.thread is not None:
                job.thread.join(HANG)
        super().shutdown(wait, **kwargs)


@remote
@pytest.mark.parametrize("running", [False, True], ids=["queued", "running"])
def test_a_call_cancelled_at_each_store_call_leaves_nothing_and_keeps_its_value(
        location: str, running: bool) -> None:
    """The task is cancelled while its k-th store call (read, lock, check, store, release)
    is queued in the executor, or running, for every k."""
    returned: list[int] = []

    @Cache(location, lock_timeout=10, secret="s").cached
    async def f(x: int) -> int:
        await asyncio.sleep(0)
        returned.append(x)
        return x * 2

    async def attempt(k: int) -> list[str] | None:
        """Cancel at the k-th store call, of a key of its own (a lock left held spoils no
        other round); None if the call made fewer."""
        x = 100 + k
        executor = SteppedExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        marks: list[Any] = []

        async def call() -> int:
            try:
                return await f(x)
            finally:
                marks.append(_decorator._held.get())

        task = asyncio.create_task(call())
        try:
            for i in range(k + 1):
                await until(lambda i=i: len(executor.jobs) > i or task.done(),  # type: ignore[misc]
                            f"store call {i}")
                if task.done():
                    assert task.result() == 2 * x
                    return None
                if i < k:
                    executor.jobs[i].start()
                    await until(executor.jobs[i].future.done, f"store call {i} to return")
            if running:
                executor.jobs[k].start(hold=True)
                await until(executor.jobs[k].started.is_set, f"store call {k} to start")
            task.cancel()
            for _ in range(3):
                await asyncio.sleep(0)  # the cancellation reaches the task
        finally:
            executor.run_freely()
        got = await outcome_of(task)
        left = left_behind(location, f, x)
        if any(marks):  # (none if cancelled before it started)
            left.append(f"_held {marks}")
        if got not in ("cancelled", 2 * x):
            left.append(f"value {got!r}")
        if returned and not f.cache_contains(x):
            left.append("the value returned was not stored")
        asyncio.get_running_loop().set_default_executor(plain)
        executor.shutdown()
        start = time.monotonic()
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            got = await asyncio.wait_for(f(x), HANG)
            if got != 2 * x or time.monotonic() - start > QUICK_REMOTE:
                left.append(f"the next call gave {got!r} in {time.monotonic() - start:.2f} s")
        left.extend(str(w.message)[:40] for w in warned)
        return left

    plain = concurrent.futures.ThreadPoolExecutor(4)  # for the call after each round

    async def main() -> list[Any]:
        broken: list[Any] = []
        for k in range(30):
            returned.clear()
            left = await attempt(k)
            if left is None:
                assert k >= 4  # read, lock, check, store, release at least
                return broken
            if left:
                broken.append((k, left))
        return [*broken, "the call never completed"]

    try:
        assert asyncio.run(main()) == []
    finally:
        plain.shutdown()


# --- waiters of a cancelled leader --------------------------------------------------------


def test_waiters_of_a_cancelled_leader_go_on_and_compute_once(location: str) -> None:
    """A task computing a key is cancelled while 20 others wait for it: all 20 get the right
    value, at once, and one of them computes it."""
    started: list[int] = []

    @Cache(location, lock_timeout=HANG, secret="s").cached
    async def f(x: int) -> int:
        started.append(x)
        if len(started) == 1:  # the leader: stuck until cancelled
            await asyncio.Event().wait()
        await asyncio.sleep(0.05)
        return x * 2

    async def main() -> tuple[Any, list[Any], float]:
        leader = asyncio.create_task(f(3))
        await until(lambda: bool(started), "the leader to start")
        waiters = [asyncio.create_task(f(3)) for _ in range(20)]
        await asyncio.sleep(0.2)  # all waiting for the leader's lock
        assert not any(w.done() for w in waiters)
        leader.cancel()
        start = time.monotonic()
        values = [await outcome_of(w) for w in waiters]
        return await outcome_of(leader), values, time.monotonic() - start

    leader, values, took = asyncio.run(main())
    assert leader == "cancelled"
    assert values == [6] * 20
    # Not lock_timeout. The waiters take the key's lock in turn to read the entry: on the
    # test's S3 server (moto, answering from a thread of this process) about 0.25 s each.
    assert took < (1 if "://" not in location else 12)
    assert started == [3, 3]  # the leader, then one waiter
    assert left_behind(location, f, 3) == []


def collected_unfinished(call: Callable[[], Any], started: Callable[[], bool]) -> None:
    """``call()`` run as a task of a loop until ``started()``, the loop then closed and the
    task (its loop's only reference) collected unfinished. The coroutine is made here: one
    passed in stays referenced by the caller's frame on Python 3.10 (its arguments are
    taken off the caller's stack only once the callee returns), so it was never collected."""
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)  # the "destroyed" report
    loop.create_task(call())  # noqa: RUF006 - no reference kept: the loop's only
    loop.run_until_complete(until(started, "the computation to start"))
    loop.close()
    gc.collect()


@pytest.fixture(params=["by the collector", "by the statistics thread"])
def ends_unfinished(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
                    ) -> Callable[[Callable[[], Any], Callable[[], bool], Callable[[], bool]],
                                  None]:
    """``collected_unfinished``, then asserts ``released()``: at once, after the collection;
    or, in a process whose cycle collector does not run (an idle one, or one that allocates
    little: the task, its coroutine and the future it awaits are a cycle, freed only by
    it), within the statistics thread's period, which closes the task's coroutine
    (``_decorator.release_abandoned``; the suite's fixture leaves its round out:
    ``conftest``). Before, in such a process, the key stayed held until a collection
    happened to run, and every caller of it in any process waited lock_timeout (600 s by
    default)."""
    from memojar import _cache

    by_thread = request.param == "by the statistics thread"
    if by_thread:
        monkeypatch.setattr(_cache._FLUSHER, "flush",
                            functools.partial(_cache._Flusher.flush, _cache._FLUSHER))

    def ends(call: Callable[[], Any], started: Callable[[], bool],
             released: Callable[[], bool]) -> None:
        if not by_thread:
            collected_unfinished(call, started)
            assert released()
            return
        gc.collect()
        gc.disable()
        try:
            loop = asyncio.new_event_loop()
            loop.set_exception_handler(lambda loop, context: None)
            loop.create_task(call())  # noqa: RUF006 - no reference kept: the loop's only
            loop.run_until_complete(until(started, "the computation to start"))
            loop.close()
            del loop
            deadline = time.monotonic() + 2 * _cache.FLUSH_EVERY + HANG / 2
            while not released():
                assert time.monotonic() < deadline, "the key's lock stayed held"
        finally:
            gc.enable()
            gc.collect()

    return ends


def test_a_call_whose_loop_is_closed_under_it_gives_its_lock_back(
        location: str, ends_unfinished: Any) -> None:
    """A loop closed while one of its tasks computes a key (a test's loop closed at its end, a
    thread's loop at shutdown): the task is left unfinished ("Task was destroyed but it
    is pending") and the key's lock goes with it: the next caller, here or elsewhere,
    computes at once. Before, memojar's note of the lock's holder kept the task alive, so the
    lock stayed held for the process's life; on Redis and S3 the release, awaited in the
    coroutine the collector closed, could not run, and the lease was renewed for nobody."""
    entered: list[int] = []

    @Cache(location, lock_timeout=HANG, secret="s").cached
    async def slow(x: int) -> int:
        entered.append(x)
        await asyncio.sleep(HANG)
        return x

    ends_unfinished(lambda: slow(1), lambda: bool(entered),
                    lambda: lock_is_free(location, slow, 1))
    assert left_behind(location, slow, 1) == []


def test_a_call_waiting_while_a_collected_tasks_coroutine_closes_waits_for_it(
        tmp_path: Path) -> None:
    """A task holding a key is collected unfinished (its loop closed), and while its
    coroutine's clean-up runs (the function's own ``finally``, before memojar's releases
    the lock) another thread's call of the key starts waiting: it waits, then computes.
    Before, the lock's note named the task by a weak reference the collector had already
    cleared, never hashed (the task had not waited), and the waiter's look for a
    lock-order cycle hashed it: ``TypeError: weak object has gone away`` from its call."""
    entered: list[int] = []
    outcome: list[Any] = []
    done = threading.Event()

    def other_call() -> None:
        try:
            outcome.append(asyncio.run(slow(1)))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcome.append(exc)
        done.set()

    @Cache(tmp_path / "cache", lock_timeout=HANG).cached
    async def slow(x: int) -> int:
        entered.append(x)
        if len(entered) > 1:
            return x
        try:
            await asyncio.sleep(HANG)
        finally:  # closed by the collector: the other call waits meanwhile
            threading.Thread(target=other_call).start()
            deadline = time.monotonic() + HANG
            while not done.is_set() and not _waits._waiting:
                assert time.monotonic() < deadline, "the other call never waited"
                time.sleep(0.001)
            done.wait(0.5)  # its look for a cycle, after its note
        return x

    collected_unfinished(lambda: slow(1), lambda: bool(entered))
    assert done.wait(HANG)
    assert outcome == [1]  # before: [TypeError('weak object has gone away')]
    assert len(entered) == 2


def storing_slowly_in_a_finally(location: str, monkeypatch: pytest.MonkeyPatch
                                ) -> tuple[Any, Callable[[], Any], threading.Event]:
    """A cached ``f`` whose store of a computed value takes a second (a slow server), an
    async generator whose ``finally`` awaits ``f(1)`` (a miss): ``aclose()`` stores, and
    an event set as that store begins."""
    @Cache(location, lock_timeout=HANG, secret="s").cached
    async def f(x: int) -> int:
        return x

    memo = f.__memojar__
    computed = memo._computed

    storing = threading.Event()

    def slowly_computed(*args: Any) -> Any:
        storing.set()
        time.sleep(1.0)
        return computed(*args)

    monkeypatch.setattr(memo, "_computed", slowly_computed)

    async def numbers() -> Any:
        try:
            yield 1
        finally:
            assert await f(1) == 1

    return f, numbers, storing


async def tick(ticks: list[float], sleep: Callable[[float], Any]) -> None:
    """Note the time every 0.01 s, until cancelled (``ran_throughout``)."""
    while True:
        ticks.append(time.monotonic())
        await sleep(0.01)


def ran_throughout(ticks: list[float], start: float, end: float) -> bool:
    """Whether the ticks of a task sleeping 0.01 s at a time went on from ``start`` to
    ``end``, a second or more later (a loop that waited on the store: no tick for it)."""
    seen = [start, *[t for t in ticks if start < t < end], end]
    return end - start >= 1.0 and max(b - a for a, b in itertools.pairwise(seen)) < 0.5


@remote
def test_a_cached_call_in_an_async_generators_aclose_keeps_the_loop_free(
        location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote store's calls of a cached call awaited in an async generator's ``finally``
    while ``aclose()`` closes it (on a running loop) run in worker threads, as anywhere
    else: the loop runs its other tasks meanwhile. Before, the shortcut for a coroutine
    closed by the collector took the ``GeneratorExit`` being handled for one and made
    those calls on the loop's thread: here the store's write, slowed to a second, stopped
    every other task of the loop for that second."""
    f, numbers, _ = storing_slowly_in_a_finally(location, monkeypatch)

    async def main() -> bool:
        ticks: list[float] = []

        ticker = asyncio.create_task(tick(ticks, asyncio.sleep))
        generator = numbers()
        assert await generator.__anext__() == 1
        start = time.monotonic()
        await generator.aclose()
        ticker.cancel()
        return ran_throughout(ticks, start, time.monotonic())

    assert asyncio.run(main())  # before: no tick for a second
    assert f.cache_contains(1)
    assert left_behind(location, f, 1) == []


@remote
def test_an_anyio_cancel_scope_cancelling_a_store_keeps_the_loop_idle(
        location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """anyio's cancel scope (asyncio backend) ends a cached call while its store of the
    computed value runs: the store is finished, then the scope's cancellation is raised,
    and meanwhile the loop's thread waits idle. anyio cancels a task in a cancelled scope
    again at every turn of the loop until it leaves the scope: before, memojar's wait for
    the store, which goes on waiting, was woken at each, a core busy for the store's
    length (here 0.85 s of CPU in the loop's thread for a second's store). The scope is
    cancelled once the store has begun (before, 0.1 s after the call: on a loaded machine
    the key's lock on the server could take longer, and the call was cancelled before it
    computed anything)."""
    anyio = pytest.importorskip("anyio", reason="anyio is not installed")
    f, _, storing = storing_slowly_in_a_finally(location, monkeypatch)

    async def cancel_once_storing(scope: Any) -> None:
        while not storing.is_set():
            await anyio.sleep(0.01)
        scope.cancel()

    async def main() -> tuple[float, float]:
        start, busy = time.monotonic(), time.thread_time()
        async with anyio.create_task_group() as tasks:
            with anyio.CancelScope() as scope:
                tasks.start_soon(cancel_once_storing, scope)
                await f(1)
            tasks.cancel_scope.cancel()  # the canceller, if the call ended first
        return time.monotonic() - start, time.thread_time() - busy

    took, busy = anyio.run(main, backend="asyncio")
    assert took >= 1.0  # the store finished
    assert busy < 0.3
    assert f.cache_contains(1)
    assert left_behind(location, f, 1) == []


# --- stale-while-revalidate: the background task of a loop that ends ----------------------


def a_stale_entry(location: Path | str, **options: Any) -> Any:
    """A cached ``f`` (in ``Cache(location, **options)``) whose entry of ``f(1)`` ("old")
    is stale, within its window, and whose next computation of it returns "new"."""
    value = ["old"]

    @Cache(location, **options).cached(ttl=0.2, stale_while_revalidate=HANG)
    async def f(x: int) -> str:
        await asyncio.sleep(0.01)
        return value[0]

    assert asyncio.run(f(1)) == "old"
    time.sleep(0.3)  # stale, within the window
    value[0] = "new"
    return f


def revalidated_in_a_new_loop(f: Any) -> bool:
    """Whether stale hits of ``f(1)`` in a new loop start its recomputation: "old" served,
    then "new" (within HANG seconds)."""
    async def main() -> list[str]:
        seen = []
        for _ in range(int(HANG / 0.02)):
            seen.append(await f(1))
            if seen[-1] == "new":
                break
            await asyncio.sleep(0.02)
        return seen

    return asyncio.run(main())[-2:] == ["old", "new"]


def test_a_revalidation_whose_loop_is_closed_under_it_gives_its_key_back(
        location: str, ends_unfinished: Any) -> None:
    """A stale hit's background recomputation, a task of the caller's loop, is left
    computing when that loop is closed: it ends unfinished and gives back the key's lock
    and its mark of being recomputed, so another store's caller gets the lock at once and a
    stale hit here starts the recomputation again. Before, memojar's set of background
    tasks kept the task alive for the process's life, with both: every later caller here
    or elsewhere waited lock_timeout, and this process never refreshed the key."""
    entered: list[int] = []

    @Cache(location, lock_timeout=HANG, secret="s").cached(ttl=0.5,
                                                           stale_while_revalidate=HANG)
    async def f(x: int) -> int:
        entered.append(x)
        if len(entered) == 2:  # the first recomputation: its loop is closed under it
            await asyncio.sleep(HANG)
        return len(entered)

    assert asyncio.run(f(1)) == 1
    time.sleep(0.6)  # stale, within the window
    ends_unfinished(lambda: f(1), lambda: len(entered) == 2,
                    lambda: lock_is_free(location, f, 1))

    async def main() -> list[int]:
        seen = [await f(1)]
        deadline = time.monotonic() + HANG
        while seen[-1] == 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            seen.append(await f(1))
        return seen

    assert asyncio.run(main())[-1] == 3  # recomputed in the background again
    assert left_behind(location, f, 1) == []


def test_a_revalidation_whose_loop_is_closed_before_it_starts_lets_the_next_loop_revalidate(
        tmp_path: Path) -> None:
    """A stale hit in ``loop.run_until_complete``, the loop closed right after (as a test's
    loop is at its end): the recomputation's task never took its first step. It is
    collected, the key's mark of being recomputed goes with it, and a stale hit in the next
    loop starts a recomputation; nothing is said of memojar's coroutine (not "coroutine
    ... was never awaited"). Before, memojar's set of background tasks kept the task, and
    the key stayed marked for the process's life: never recomputed in the background by
    this process again."""
    f = a_stale_entry(tmp_path / "cache")
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)  # "Task was destroyed"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert loop.run_until_complete(f(1)) == "old"  # its recomputation never started
        loop.close()
        del loop
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert revalidated_in_a_new_loop(f)


def test_an_interrupt_as_a_revalidations_task_is_made_lets_the_next_loop_revalidate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``KeyboardInterrupt`` in the loop's callback that starts a stale hit's background
    recomputation, just after its task was made (a Ctrl-C lands between any two calls; the
    finalizer's making is the next one): the key must not stay marked as being recomputed.
    Before, the task's end was never reported to memojar (its callbacks not added yet), and
    the key stayed marked for the process's life: never recomputed in the background by this
    process again."""
    f = a_stale_entry(tmp_path / "cache")
    made = weakref.finalize

    def interrupted(target: Any, *args: Any) -> Any:
        if not isinstance(target, asyncio.Task):  # (the queued callback's, in _stale)
            return made(target, *args)
        monkeypatch.setattr(weakref, "finalize", made)  # once
        raise KeyboardInterrupt

    monkeypatch.setattr(weakref, "finalize", interrupted)
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)  # "Task was destroyed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a task never started, its coroutine never awaited
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(f(1))
        loop.close()  # the program goes on in another loop (a REPL, the next asyncio.run)
        del loop
        gc.collect()
    assert weakref.finalize is made  # the interrupt came where it was meant to
    assert not f.__memojar__.revalidating  # (else served stale until its window ends)
    assert revalidated_in_a_new_loop(f)


@remote
def test_a_stale_hit_read_as_its_loop_stops_lets_the_key_go_when_the_loop_is_closed(
        location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale hit on Redis or S3 is read in a worker thread; its caller gave up meanwhile
    (``wait_for``'s timeout), and the worker's callback that starts the recomputation is
    queued on a loop that no longer runs and is then closed (a test's loop at its end):
    the callback never runs. The key must not stay marked as being recomputed: a stale hit
    in the next loop starts a recomputation. Before, it stayed marked for the process's
    life, served stale until its window ended."""
    f = a_stale_entry(location, secret="s")
    memo = f.__memojar__
    go = threading.Event()
    read = memo.store.read

    def slow_read(*args: Any) -> Any:
        go.wait(HANG)
        return read(*args)

    monkeypatch.setattr(memo.store, "read", slow_read)
    loop = asyncio.new_event_loop()
    with pytest.raises(asyncio.TimeoutError):
        loop.run_until_complete(asyncio.wait_for(f(1), 0.2))
    go.set()
    deadline = time.monotonic() + HANG
    while not memo.revalidating and time.monotonic() < deadline:
        time.sleep(0.01)
    assert memo.revalidating  # marked; its callback queued on the stopped loop
    time.sleep(0.2)
    loop.close()
    del loop
    gc.collect()
    monkeypatch.setattr(memo.store, "read", read)
    assert not memo.revalidating
    assert revalidated_in_a_new_loop(f)


def test_a_revalidation_cancelled_with_its_loop_lets_the_next_loop_revalidate(tmp_path: Path
                                                                              ) -> None:
    """A stale hit in ``asyncio.run`` starts the recomputation as a task of that loop; the
    loop ends at once and cancels the task before its first step. The key must not stay
    marked as being recomputed: a stale hit in the next loop starts a recomputation."""
    f = a_stale_entry(tmp_path / "cache")
    assert asyncio.run(f(1)) == "old"  # served stale; its recomputation cancelled unrun
    assert revalidated_in_a_new_loop(f)


# --- an interrupt (not a cancellation) inside an async miss -------------------------------


@pytest.mark.skipif(not SUPPORTED, reason="needs opcode tracing that reports a code object's "
                    "first traced run (CPython 3.11 and 3.12 do)")
@pytest.mark.parametrize("refresh", [False, True], ids=["miss", "refresh"])
# An interrupt between making a coroutine and awaiting it leaves it unawaited: Python says so.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_an_interrupt_at_every_point_of_an_async_miss_leaves_no_lock(tmp_path: Path,
                                                                     refresh: bool) -> None:
    """A ``KeyboardInterrupt`` raised at any point of memojar's code during an awaited miss
    on the file store (Ctrl-C in a notebook, whose loop does not turn it into a
    cancellation): the key's lock is not left held and the next call computes at once."""
    location = str(tmp_path / "cache")

    @Cache(location, lock_timeout=0.5).cached
    async def f(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    def before() -> None:
        if refresh:
            asyncio.run(f(3))
        else:
            f.cache_delete(3)

    def call() -> Any:
        return asyncio.run(f.refresh(3) if refresh else f(3))

    assert asyncio.run(f(3)) == 6  # folders made, the reader built
    points = Points(call, before)
    assert points.count > 30
    broken = []
    for injector in points.interrupts():
        left = left_behind(location, f, 3)
        if _decorator._held.get():
            left.append(f"_held {_decorator._held.get()}")
            _decorator._held.set(())
        if _waits._holder or _waits._waiting:  # noted for the cycle check (``_waits``)
            left.append(f"_waits {_waits._holder} {_waits._waiting}")
            _waits._holder.clear()
            _waits._waiting.clear()
        for lock in list(_locks._held.values()):  # so that one leak spoils no other round
            lock.release()
        if left:
            broken.append((injector.where, left))
        assert asyncio.run(f(3)) == 6
    assert broken == []


def test_a_cancelled_store_keeps_nothing_of_the_call_for_the_cycle_collector() -> None:
    """A remote store's write (or lock release) is finished in a worker thread whatever
    happens to its caller; a cancellation that arrived meanwhile is raised once it returns.
    It was raised from a local variable of the frame in its own traceback: a cycle that
    kept the call's arguments (the entry being stored) until the cycle collector ran,
    which a program with a big heap does rarely."""
    import gc
    import weakref

    class Entry:
        pass

    async def cancelled_while_storing() -> weakref.ref[Entry]:
        started, gate = threading.Event(), threading.Event()
        entry = Entry()
        ref = weakref.ref(entry)

        def store(value: Entry) -> bool:
            started.set()
            gate.wait(30)
            return True

        task = asyncio.ensure_future(_decorator._in_thread(store, entry, finish=True))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.01)  # the cancellation arrives while the store runs
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        del entry, task
        return ref

    gc.collect()
    gc.disable()
    try:
        ref = asyncio.run(cancelled_while_storing())
        assert ref() is None, "the cancelled call's argument is kept in a reference cycle"
    finally:
        gc.enable()


def test_a_key_held_by_a_task_of_a_loop_ctrl_c_stopped_is_computed_at_once(location: str
                                                                          ) -> None:
    """Ctrl-C out of ``loop.run_until_complete`` (IPython's terminal awaits a cell so)
    lands in the loop's wait, not in the task: the task computing a key is left pending,
    its loop stopped, not closed. ``asyncio.run`` of that key in the same thread then
    computes it at once, with a warning saying why; the task, resumed when its loop runs
    again, ends with the same value. Before, the call waited lock_timeout (600 s by
    default) for a task only that loop, which the thread was not running, could go on."""
    entered: list[int] = []

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    @Cache(location, lock_timeout=HANG, secret="s").cached
    async def slow(x: int) -> int:
        entered.append(x)
        if len(entered) == 1:  # raised out of the loop's wait, as SIGINT's is
            asyncio.get_running_loop().call_soon(ctrl_c)
        await asyncio.sleep(0.5)
        return x * 2

    loop = asyncio.new_event_loop()
    try:
        pending = loop.create_task(slow(1))
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(pending)
        assert not pending.done()
        start = time.monotonic()
        with pytest.warns(UserWarning, match="event loop that is not running"):
            assert asyncio.run(slow(1)) == 2
        assert time.monotonic() - start < QUICK  # before: HANG (lock_timeout)
        assert loop.run_until_complete(pending) == 2  # its loop run again: it ends
    finally:
        loop.close()
    assert entered == [1, 1]
    assert left_behind(location, slow, 1) == []


CTRL_C_WHILE_ANOTHER_THREAD_WAITS = """
import asyncio, sys, threading, time
from memojar import Cache

entered = []

def ctrl_c():
    raise KeyboardInterrupt

@Cache(sys.argv[1], lock_timeout=60, secret="s").cached
async def slow(x):
    entered.append(threading.current_thread().name)
    if len(entered) == 1:  # raised out of the loop's wait, as SIGINT's is
        asyncio.get_running_loop().call_later(0.5, ctrl_c)
    await asyncio.sleep(1.0)
    return x * 2

def waiter():
    print("waiter got", asyncio.run(slow(1)), flush=True)

loop = asyncio.new_event_loop()
task = loop.create_task(slow(1))
loop.call_later(0.1, threading.Thread(target=waiter, name="waiter").start)
try:
    loop.run_until_complete(task)
except KeyboardInterrupt:
    print("Ctrl-C", flush=True)  # the program ends: the interpreter joins the waiter
"""


def test_a_thread_waiting_for_a_task_of_the_main_loop_ctrl_c_stopped_lets_the_process_exit(
        tmp_path: Path) -> None:
    """A thread's call waits for a key a task of the main thread's loop computes; Ctrl-C
    out of that loop's ``run_until_complete`` leaves the task pending, and the program
    ends. The waiter, its wait started while the loop ran, sees the loop stopped for good
    (the main thread has ended) and computes the key at once, with a warning, so the
    process exits. Before, only the start of a wait looked: the interpreter's exit joined
    the waiter, which waited lock_timeout (60 s here, 600 s by default)."""
    start = time.monotonic()
    out = run_python(CTRL_C_WHILE_ANOTHER_THREAD_WAITS, str(tmp_path / "cache"), timeout=HANG)
    assert out.split("\n")[:2] == ["Ctrl-C", "waiter got 2"]
    assert time.monotonic() - start < HANG / 2


@pytest.mark.parametrize("location", ["redis"], indirect=True)
def test_a_call_cancelled_while_its_lease_is_being_taken_gives_it_back(
        location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task is cancelled while its request for the key's lease is on its way (a slow
    server): its release, made at once from another worker thread, reaches the server
    first. Before, that release found no lease, forgot its token, and the request then
    took the lease, which nobody gave back: every caller of the key waited for it to
    expire (LOCK_TTL, 2 s by default; 60 s here)."""

    @Cache(location, lock_timeout=HANG, secret="s").cached
    async def f(x: int) -> int:
        return x * 2

    store = f.__memojar__.store
    acquire = store._acquire
    sent = threading.Event()

    def slowly(*args: Any, **kwargs: Any) -> Any:
        sent.set()
        time.sleep(0.5)  # the request on its way
        return acquire(*args, **kwargs)

    async def main() -> Any:
        monkeypatch.setattr(store, "_acquire", slowly)
        task = asyncio.create_task(f(1))
        await asyncio.to_thread(sent.wait, HANG)
        task.cancel()
        outcome = await outcome_of(task)
        monkeypatch.setattr(store, "_acquire", acquire)
        await asyncio.sleep(1.0)  # the request answered
        return outcome

    _cancelled_then_not_waited_for(location, f, main)


def _cancelled_then_not_waited_for(location: str, f: Any,
                                   cancelling: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """``cancelling()`` cancels a call of ``f(1)``; its lease is then gone, and the next
    call does not wait for it to expire."""
    assert asyncio.run(cancelling()) == "cancelled"
    assert left_behind(location, f, 1) == []
    start = time.monotonic()
    assert asyncio.run(f(1)) == 2
    assert time.monotonic() - start < QUICK_REMOTE


@pytest.mark.parametrize("location", ["s3"], indirect=True)
def test_a_call_cancelled_while_its_s3_lease_is_being_written_gives_it_back(
        location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 store's case of the one above: a task is cancelled while the write creating
    its key's lease is on its way (a slow server); its release, made at once from another
    worker thread, reaches the server first and finds no lease. The lease the write then
    creates is given back all the same (the holding's token is set before the write, and
    the release looks for it again until it is found): the next call does not wait for it
    to expire (LEASE_TTL; 60 s here). It holds by two guards, each enough here: the
    write's worker thread gives the lease back once the write returns after its caller
    left (``_decorator._Undoable``), and the release looks for the holding's lease by its
    token again at the renewer's rounds (``_Lease._let_go``); with neither, this fails."""
    from memojar import _s3store

    @Cache(location, lock_timeout=HANG, secret="s").cached
    async def f(x: int) -> int:
        return x * 2

    put = _s3store._Lease._put
    sent = threading.Event()

    def slowly(self: Any, token: str, **condition: Any) -> str:
        if condition.get("if_none_match") and not sent.is_set():
            sent.set()
            time.sleep(0.5)  # the write on its way
        return put(self, token, **condition)

    async def main() -> Any:
        monkeypatch.setattr(_s3store._Lease, "_put", slowly)
        task = asyncio.create_task(f(1))
        await asyncio.to_thread(sent.wait, HANG)
        task.cancel()
        outcome = await outcome_of(task)
        await asyncio.sleep(1.0)  # the write answered
        monkeypatch.setattr(_s3store._Lease, "_put", put)
        return outcome

    _cancelled_then_not_waited_for(location, f, main)


def _slow_noting_its_threads(location: str) -> tuple[Callable[[int], Any], list[str]]:
    """A cached coroutine taking a second, and the names of the threads that ran it."""
    entered: list[str] = []

    @Cache(location, lock_timeout=HANG, secret="s").cached
    async def slow(x: int) -> int:
        entered.append(threading.current_thread().name)
        await asyncio.sleep(1.0)
        return x * 2

    return slow, entered


def test_a_key_held_by_a_task_of_a_loop_another_thread_runs_in_slices_is_waited_for(
        location: str) -> None:
    """A thread running its loop in slices (a GUI's tick: ``loop.stop()``, then
    ``run_forever()`` again) has a task computing a key; another thread's call of the key,
    made while that loop is stopped between slices, waits for the task, which that thread
    goes on with. Before, it was judged left by Ctrl-C: computed a second time, with a
    warning that waiting would last lock_timeout."""
    slow, entered = _slow_noting_its_threads(location)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def ticks() -> None:
        task = loop.create_task(slow(1))
        while not task.done():
            loop.call_later(0.02, loop.stop)
            loop.run_forever()
            if entered:  # the task holds the key
                started.set()
            time.sleep(0.2)  # the GUI's own work: the loop stopped meanwhile

    ticking = threading.Thread(target=ticks, name="ticking")
    ticking.start()
    try:
        assert started.wait(HANG)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert asyncio.run(slow(1)) == 2
    finally:
        ticking.join(HANG)
        loop.close()
    assert entered == ["ticking"]


@pytest.mark.parametrize("runner", ["threading", "_thread"])
def test_a_key_held_by_a_task_of_a_loop_each_slice_of_which_a_new_thread_runs_is_waited_for(
        location: str, runner: str) -> None:
    """A loop run in slices, each by a thread started for it (a server's thread per request
    driving one shared loop; a thread ``_thread`` starts, which ``threading`` never lists),
    has a task computing a key; another thread's call of the key, made while that loop is
    stopped between slices and the thread that took the key has ended, waits for the task,
    which the next slice goes on with. Before, an ended thread of any kind was taken for the
    Ctrl-C'd main thread of an exiting program: computed a second time, with a warning."""
    slow, entered = _slow_noting_its_threads(location)
    loop = asyncio.new_event_loop()
    task = loop.create_task(slow(1))

    def run_slice() -> None:  # in a thread of its own, joined
        done = threading.Event()

        def tick() -> None:
            loop.call_later(0.02, loop.stop)
            loop.run_forever()
            done.set()

        if runner == "threading":
            threading.Thread(target=tick).start()
        else:
            _thread.start_new_thread(tick, ())
        assert done.wait(HANG)

    got: list[Any] = []

    def waiter() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got.append(asyncio.run(slow(1)))

    try:
        while not entered:
            run_slice()
        waiting = threading.Thread(target=waiter, name="waiter")
        waiting.start()
        while not task.done():
            time.sleep(0.2)  # the loop stopped meanwhile: the waiter looks at each try
            run_slice()
        waiting.join(HANG)
    finally:
        loop.close()
    assert got == [2]
    assert len(entered) == 1
