"""Attacks on what was merged on 30 November: a function's code reassigned while calls run."""

from __future__ import annotations

import asyncio
import threading

import memojar

_started = threading.Event()
_go = threading.Event()


def _slow_a(x):
    _started.set()
    _go.wait(10)
    return ("A", x)


def _b(x):
    return ("B", x)


async def _aslow_a(x):
    _started.set()
    while not _go.is_set():
        await asyncio.sleep(0.01)
    return ("A", x)


async def _ab(x):
    return ("B", x)


def _reassigned_while_running(f, new_code, call):
    """``call(1)`` runs the old code in a thread; meanwhile the code is reassigned and a
    call of another key renews the memo; then the old call finishes. Returns what the
    new code's ``call(1)`` gives afterwards."""
    _started.clear()
    _go.clear()
    thread = threading.Thread(target=call, args=(1,))
    thread.start()
    assert _started.wait(10)
    f.__wrapped__.__code__ = new_code
    assert call(2) == ("B", 2)  # renews: a new identity for the new code
    _go.set()
    thread.join(10)
    assert not thread.is_alive()
    return call(1)


def test_a_call_running_old_code_stores_nothing_under_the_new_code(tmp_path):
    f = memojar.cached(cache_dir=tmp_path)(_copy(_slow_a))
    assert _reassigned_while_running(f, _b.__code__, f) == ("B", 1)


def test_same_with_the_memory_tier(tmp_path):
    f = memojar.cached(cache_dir=tmp_path, memory=16)(_copy(_slow_a))
    assert _reassigned_while_running(f, _b.__code__, f) == ("B", 1)


def test_same_for_async_def(tmp_path):
    f = memojar.cached(cache_dir=tmp_path)(_copy(_aslow_a))

    def call(x):
        return asyncio.run(f(x))

    assert _reassigned_while_running(f, _ab.__code__, call) == ("B", 1)


def _copy(func):
    """A fresh function object of ``func``'s code (its ``__code__`` is reassigned)."""
    import types

    return types.FunctionType(func.__code__, func.__globals__, func.__name__)
