"""``@cached async def`` under trio (and anyio's trio backend, which runs trio): a trio
program's calls compute once between its tasks, wait without blocking the run, call a
remote store from worker threads, leave no lock held when cancelled, and recompute a stale
value in the background, as an asyncio program's do. memojar knew only asyncio: under
trio every task was "this thread" to its wait-for graph, so a task waiting for another's
computation of the same key was taken for a lock-order cycle and computed it too, with a
warning; a wait, a remote store's call and a stale hit raised ``RuntimeError: no running
event loop``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache
from test_cancellation import (
    HANG,
    lock_is_free,
    ran_throughout,
    remote,
    storing_slowly_in_a_finally,
    tick,
)
from test_cancellation import location as location  # the fixture: file, Redis, S3

trio = pytest.importorskip("trio", reason="trio is a dev dependency (pip install -e '.[dev]')")


def line_of(marker: str) -> int:
    """The number of the line of this file that ends with ``marker``."""
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.endswith(marker))


def test_trio_tasks_compute_each_key_once(location: str) -> None:
    """Thirty tasks of a nursery, ten a key on three keys: one computation a key, every
    task its own key's value, no warning (``filterwarnings = error``), no lock left."""
    computed: list[int] = []

    @Cache(location, lock_timeout=HANG, secret="s").cached
    async def f(x: int) -> tuple[int, str]:
        computed.append(x)
        await trio.sleep(0.2)
        return x, "value"

    got: dict[int, Any] = {}

    async def one(i: int) -> None:
        got[i] = await f(i % 3)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(one, i)

    trio.run(main)
    assert got == {i: (i % 3, "value") for i in range(30)}
    assert sorted(computed) == [0, 1, 2]
    assert all(lock_is_free(location, f, x) for x in range(3))


def test_trio_calls_cancelled_while_computing_and_waiting_leave_no_lock(location: str
                                                                        ) -> None:
    """A cancel scope ends a task computing a key and the two waiting for it: the
    cancellation reaches each, the lock is free, and the next call computes at once."""
    computed: list[int] = []

    @Cache(location, lock_timeout=HANG, secret="s").cached
    async def f(x: int) -> int:
        computed.append(x)
        await trio.sleep(HANG)
        return x

    async def main() -> bool:
        with trio.move_on_after(1.0) as scope:
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(f, 1)
        return scope.cancelled_caught

    assert trio.run(main)
    assert computed == [1]
    assert lock_is_free(location, f, 1)


def test_a_stale_value_is_recomputed_in_the_background_under_trio(tmp_path: Path) -> None:
    """A stale hit within ``stale_while_revalidate`` returns the stale value at once and
    starts the recomputation as a task of the trio run; a later call sees the new value."""
    value = ["old"]

    @Cache(tmp_path / "cache").cached(ttl=0.2, stale_while_revalidate=HANG)
    async def f(x: int) -> str:
        await trio.sleep(0.01)
        return value[0]

    assert trio.run(f, 1) == "old"
    time.sleep(0.3)  # stale, within the window
    value[0] = "new"

    async def main() -> list[str]:
        seen = [await f(1)]  # served stale; its recomputation started
        for _ in range(200):
            await trio.sleep(0.02)
            seen.append(await f(1))
            if seen[-1] == "new":
                break
        return seen

    seen = trio.run(main)
    assert seen[0] == "old"
    assert seen[-1] == "new"



# A trio program (no asyncio imported: trio does not import it) whose task calls cached
# ``f(1)``, a plain function calling ``g(1)``, while another thread's ``g(1)`` calls
# ``f(1)``; prints each side's result and the seconds the two took.
CYCLE_FROM_TRIO = """
import sys, threading, time, warnings
import trio
from memojar import Cache, _waits
warnings.simplefilter("ignore")
cache = Cache(sys.argv[1], lock_timeout=60)
barrier = threading.Barrier(2)

@cache.cached(ignore=("who",))
def f(x, who):
    if who == 1:
        barrier.wait()
        return g(x, who) + 1
    return 10

@cache.cached(ignore=("who",))
def g(x, who):
    if who == 2:
        barrier.wait()
        return f(x, who) + 1
    return 20

async def in_trio():
    return f(1, 1)

out = {}
threads = [threading.Thread(target=lambda: out.__setitem__(1, trio.run(in_trio))),
           threading.Thread(target=lambda: out.__setitem__(2, g(1, 2)))]
start = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
assert "asyncio" not in sys.modules
assert not _waits._holder and not _waits._waiting
print(sorted(out.items()), time.monotonic() - start)
"""


def test_a_plain_function_called_from_a_trio_task_closes_a_cycle_seen_at_once(
        tmp_path: Path) -> None:
    """A trio task's plain cached function and another thread's call each other: the
    cycle is seen at once, as between two threads. Before, the task's lock was noted held
    by the thread (the miss's inline ``_waits.owner`` asked only whether asyncio was
    imported) and its wait by the task: neither waiter found the other's note, and both
    waited lock_timeout (60 s). In a process of its own: pytest's plugins import asyncio."""
    done = subprocess.run([sys.executable, "-c", CYCLE_FROM_TRIO, str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=180, check=True)
    out, took = done.stdout.rsplit(" ", 1)
    assert out in ("[(1, 21), (2, 22)]", "[(1, 12), (2, 11)]")
    assert float(took) < 30, f"{float(took):.1f} s: the cycle was waited out"


def test_a_warning_of_a_call_trio_runs_itself_points_at_the_line_that_ran_it(tmp_path: Path
                                                                            ) -> None:
    """``trio.run(f, x)`` of a cached function whose result cannot be pickled: the warning
    points at the line that called ``trio.run``, past trio's frames, as one of
    ``asyncio.run(f(x))`` points past asyncio's. Before, it pointed inside trio's run loop
    (only asyncio's frames were passed over)."""
    import threading

    from memojar import MemojarWarning

    @Cache(tmp_path / "cache").cached
    async def unpicklable(x: int) -> Any:
        return threading.Lock()

    with pytest.warns(MemojarWarning, match="cannot be pickled") as caught:
        trio.run(unpicklable, 1)  # RAN-BY-TRIO
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line_of("# RAN-BY-TRIO"))]


@remote
def test_the_no_secret_warning_of_a_first_read_under_trio_points_at_the_awaiting_line(
        location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under trio too, a Redis or S3 cache without a secret warns at its first read at the
    line that awaited the call. Before, the read ran in trio's worker thread with no site
    given, and the warning pointed inside trio (``trio/_threads.py``)."""
    from memojar import MemojarWarning, _store

    monkeypatch.setattr(_store, "_UNSIGNED_WARNED", set())  # once per place: this test's

    @Cache(location).cached
    async def double(x: int) -> int:
        return 2 * x

    async def main() -> int:
        return await double(1)  # AWAIT-UNDER-TRIO

    with pytest.warns(MemojarWarning, match="has no secret") as caught:
        assert trio.run(main) == 2
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line_of("# AWAIT-UNDER-TRIO"))]


@remote
def test_a_cached_call_in_an_async_generators_aclose_under_trio_keeps_the_run_free(
        location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under trio too, a remote store's calls of a cached call awaited in an async
    generator's ``finally`` during ``aclose()`` run in worker threads: the run's other
    tasks go on meanwhile. Before, they were made on the run's thread (the shortcut for a
    coroutine closed by the collector), which stopped every task for the store's write."""
    f, numbers, _ = storing_slowly_in_a_finally(location, monkeypatch)

    async def main() -> bool:
        ticks: list[float] = []

        async with trio.open_nursery() as nursery:
            nursery.start_soon(tick, ticks, trio.sleep)
            generator = numbers()
            assert await generator.__anext__() == 1
            start = time.monotonic()
            await generator.aclose()
            nursery.cancel_scope.cancel()
        return ran_throughout(ticks, start, time.monotonic())

    assert trio.run(main)  # before: no tick for a second
    assert lock_is_free(location, f, 1)
