"""Who holds and who waits for which key's lock in this process: a wait-for graph, so that
a lock-order cycle between threads or tasks (cached ``f(a)`` calls ``g(b)`` while another
thread's ``g(b)`` calls ``f(a)``: each holds one key's lock and waits for the other's) is
seen by the waiter that closes it as it starts waiting, instead of after ``lock_timeout``.

An owner is the asyncio (or trio) task running (a coroutine's miss, and a plain function's
miss called from it: its thread waits for the task), by a weak reference, or else the thread.
Weak: a task whose loop is closed under it is collected unfinished, and its coroutine's
clean-up then releases the lock it holds (a note holding the task kept the lock held for the
process's life). The collector clears the reference before that clean-up runs: a cleared
one that was never hashed (the task never waited) cannot be looked up, and waits for
nothing (before, the look of another caller starting to wait meanwhile raised
``TypeError: weak object has gone away`` from its call). A lock is noted held by its owner
once taken (``hold``) and forgotten before it is released (``let_go``); an owner notes the
lock it waits for (``wait``) before it looks for a cycle, so of the waiters closing a cycle
at the same moment at least one sees it (both may: each then computes without the lock).

No lock guards the tables: each step is one dict operation, atomic under the GIL, and a
signal handler calling a cached function in a thread that is noting a lock or waiting
(``done`` puts back the wait it interrupted) never waits for itself.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from . import _trio

Lock = tuple[str, str, str]  # (store location, function, key)

# A lock held in this process -> the decorator's list of the call holding it: [its KeyLock,
# its owner] (the call's own list, so that noting it allocates nothing).
_holder: dict[Lock, list[Any]] = {}
_waiting: dict[Any, Lock] = {}  # an owner waiting -> the lock it waits for
# A lock held in this process -> the thread that took it (``_this_thread``)
_taken_in: dict[Lock, tuple[int, object]] = {}
_ident = threading.get_ident
_here = threading.local()
_weak = weakref.ref


def owner() -> Any:
    """The task or thread calling."""
    aio = sys.modules.get("asyncio")  # no task runs without it imported
    if aio is not None:
        loop = aio._get_running_loop()
        if loop is not None:
            task = aio.current_task(loop)
            if task is not None:
                return _weak(task)
    task = _trio.current_task()
    return _ident() if task is None else _weak(task)


def hold(lock: Lock, taken: list[Any]) -> None:
    """The call of ``taken`` ([its KeyLock, its owner]) holds ``lock``."""
    _holder[lock] = taken
    _taken_in[lock] = _this_thread()  # a task's: the thread running its loop (``stalled``)


def _this_thread() -> tuple[int, object]:
    """The calling thread: its ident, and a mark of its own. An ident alone is given again
    to a later thread (one started after this one ended, as for each slice of a loop run
    by a thread per slice): before, that thread took a task's key for its own loop's, left
    stopped, and computed it a second time."""
    try:
        mark: tuple[int, object] = _here.mark
    except AttributeError:
        mark = _here.mark = (_ident(), object())
    return mark


def let_go(lock: Lock, taken: list[Any]) -> None:
    """The call of ``taken`` releases ``lock`` (or, not holding it, leaves it to its
    holder)."""
    if _holder.get(lock) is taken:
        _holder.pop(lock, None)
        _taken_in.pop(lock, None)


def waits_for(who: Any) -> Lock | None:
    """What ``who`` waits for now: a signal handler's call may interrupt a wait, and the
    wait goes on after it (``done``). Read before ``wait``, outside the ``try`` whose end
    calls ``done``: an interrupt then leaves no wait noted."""
    return _waiting.get(who)


def wait(lock: Lock, who: Any) -> list[Lock] | None:
    """``who`` starts waiting for ``lock``: the cycle the wait would close, if any (the locks
    waited for along it, from ``lock`` to the one ``who`` holds)."""
    _waiting[who] = lock
    path = [lock]
    at = lock
    for _ in range(len(_waiting) + 1):  # a cycle of others', not through ``who``, ends it
        taken = _holder.get(at)
        if taken is None:
            return None
        holder = taken[1]
        if holder == who:  # a thread's ident is an int made per call: ``==``
            return path
        try:
            nxt = _waiting.get(holder)
        except TypeError:  # a task's weak reference, cleared and never hashed (module docstring)
            return None
        if nxt is None:
            return None
        path.append(nxt)
        at = nxt
    return None


def stalled(lock: Lock, blocking: bool) -> str | None:
    """What keeps ``lock``'s holder, if an asyncio task, from going on while this caller
    waits (else None). "stopped": its loop is neither running nor closed. Ctrl-C out of
    ``loop.run_until_complete`` (IPython's terminal awaits a cell so) lands in the loop's
    wait, not in the task, and leaves the task pending: it goes on only when its loop
    runs again, which the thread that stopped it cannot do while it waits for the task
    (before, ``asyncio.run`` of the key there waited ``lock_timeout``; a closed loop's
    task is collected, and gives its lock back). "blocked": its loop runs in this thread,
    which a caller waiting by blocking it (``blocking``: a coroutine driven in a
    callback of the loop, in no task, as by Twisted's ``asyncioreactor``) stops with the
    task (before, for ``lock_timeout``)."""
    taken = _holder.get(lock)
    holder = taken[1] if taken is not None else None
    task = holder() if isinstance(holder, weakref.ref) else None
    get_loop = getattr(task, "get_loop", None)  # an asyncio task's (not a trio one's)
    if get_loop is None:
        return None
    loop = get_loop()
    if not loop.is_running():
        # Stopped for good only as seen from the thread that ran it, or once that thread has
        # ended: another thread's loop may be between two runs (a GUI's tick:
        # ``loop.stop()``, then ``run_forever()`` again), and goes on there. Before, a call
        # there computed the key a second time. Ended: Ctrl-C out of the main thread's
        # ``run_until_complete`` while another thread waited for the key; the process's
        # exit then joined that thread, which waited ``lock_timeout`` (the main thread is
        # no longer alive once the interpreter shuts down). The main thread's end alone:
        # a loop run in slices, each by a thread started for it (a thread per request; one
        # ``_thread`` starts, never listed), goes on with the next one's (before, taken for
        # stopped: its task's key computed a second time).
        if loop.is_closed():
            return None
        ran = _taken_in.get(lock)
        if ran is None or (ran is not _this_thread() and not _main_ended(ran[0])):
            return None
        return "stopped"
    if blocking and loop is sys.modules["asyncio"]._get_running_loop():
        return "blocked"
    return None


def _main_ended(ident: int) -> bool:
    """Whether ``ident`` is the main thread and it has ended: the interpreter shuts down."""
    main = threading.main_thread()
    return main.ident == ident and not main.is_alive()


def stalled_meanwhile(lock: Lock, blocking: bool, why: list[str],
                      look: Callable[[], bool] | None) -> bool:
    """A blocking wait's look between its tries (``KeyLock.acquire_within``): True, and in
    ``why`` what, once ``lock``'s holder is ``stalled``; else ``look``'s. Looked at again at
    each try, not only as the wait starts: the holder's loop may stop while this caller
    waits (Ctrl-C out of the main thread's ``run_until_complete``)."""
    now = stalled(lock, blocking)
    if now is not None:
        why.append(now)
        return True
    return look is not None and look()


def done(who: Any, before: Lock | None) -> None:
    """``who`` waits no more (for what ``wait`` noted); the wait it interrupted
    (``before``, from ``waits_for``), if any, goes on."""
    if before is None:
        _waiting.pop(who, None)
    else:
        _waiting[who] = before


def drop_all() -> None:
    """In a forked child: the parent's threads and tasks are not this process's."""
    _holder.clear()
    _waiting.clear()
    _taken_in.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=drop_all)
