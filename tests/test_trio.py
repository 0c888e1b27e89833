"""``@cached async def`` under trio (and anyio's trio backend, which runs trio): a trio
program's calls compute once between its tasks, wait without blocking the run, call a
remote store from worker threads, leave no lock held when cancelled, and recompute a stale
value in the background, as an asyncio program's do. memojar knew only asyncio: under
trio every task was "this thread" to its wait-for graph, so a task waiting for another's
computation of the same key was taken for a lock-order cycle and computed it too, with a
warning; a wait, a remote store's call and a stale hit raised ``RuntimeError: no running
event loop``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache
from test_cancellation import HANG, lock_is_free
from test_cancellation import location as location  # the fixture: file, Redis, S3

trio = pytest.importorskip("trio", reason="trio is a dev dependency (pip install -e '.[dev]')")


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
