"""A coroutine function's calls under trio (and anyio's trio backend): the few things
memojar's async paths do with the event loop, done by trio's means.

Those paths are written for asyncio: they poll a held lock with ``asyncio.sleep``, hand a
remote store's calls to worker threads with ``asyncio.to_thread``, start a stale value's
recomputation as a task of the caller's loop, and know a caller by its asyncio task. Under
trio there is no asyncio loop: each of these asks ``running()`` first (a dictionary look-up
when trio was never imported) and is then done here. Nothing here imports trio: it is
found in ``sys.modules``, imported by the program running it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def running() -> Any:
    """The trio module if this thread runs a trio task now, else None."""
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        trio.lowlevel.current_task()
    except RuntimeError:  # not inside trio.run
        return None
    return trio


def current_task() -> Any:
    """The trio task running, or None."""
    trio = running()
    return None if trio is None else trio.lowlevel.current_task()


async def sleep(seconds: float) -> None:
    trio = sys.modules["trio"]
    await trio.sleep(seconds)


async def in_thread(call: Callable[..., Any], args: tuple[Any, ...], finish: bool) -> Any:
    """``_decorator._in_thread`` under trio, with the same promises. With ``finish`` the call
    runs shielded from cancellation: trio raises the cancellation at the caller's next
    checkpoint. Otherwise a cancelled caller stops waiting (the thread goes on: the
    decorator's ``_Undoable`` gives back a lock it took after all)."""
    trio = sys.modules["trio"]
    if finish:
        with trio.CancelScope(shield=True):
            return await trio.to_thread.run_sync(call, *args)
    return await trio.to_thread.run_sync(call, *args, abandon_on_cancel=True)


class Loop:
    """The two methods of an asyncio loop that a stale hit's background recomputation
    uses (``_Memo._revalidating``, ``_Memo._spawn_task``), for a trio run: a callback
    scheduled from any thread, and a task (a trio system task: it lives as long as the run,
    as an asyncio task lives as long as its loop) whose end is reported to callbacks."""

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token = sys.modules["trio"].lowlevel.current_trio_token()

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self._token.run_sync_soon(callback, *args)

    def create_task(self, coroutine: Any) -> _Task:
        task = _Task()

        async def run() -> None:
            try:
                await coroutine
            finally:
                callbacks, task.callbacks = task.callbacks or [], None
                for callback in callbacks:
                    callback(task)

        try:
            sys.modules["trio"].lowlevel.spawn_system_task(run)
        except RuntimeError:  # the run is ending: never started, done at once (an error
            coroutine.close()  # raised in trio's callback would crash the run)
            task.callbacks = None
        return task


class _Task:
    __slots__ = ("__weakref__", "callbacks")  # weak: ``_Memo._spawn_task``'s finalizer

    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], None]] | None = []  # None once done

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self.callbacks is None:
            callback(self)
        else:
            self.callbacks.append(callback)
