"""A function's code reassigned while calls of it run in other threads: no call stores or
holds a value of one code under the identity of another."""

from __future__ import annotations

import asyncio
import threading

import pytest

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


def test_a_call_running_old_code_stores_nothing_under_the_new_code_with_memory(tmp_path):
    f = memojar.cached(cache_dir=tmp_path, memory=16)(_copy(_slow_a))
    assert _reassigned_while_running(f, _b.__code__, f) == ("B", 1)


def test_an_async_call_running_old_code_stores_nothing_under_the_new_code(tmp_path):
    f = memojar.cached(cache_dir=tmp_path)(_copy(_aslow_a))

    def call(x):
        return asyncio.run(f(x))

    assert _reassigned_while_running(f, _ab.__code__, call) == ("B", 1)


def _copy(func):
    """A fresh function object of ``func``'s code (its ``__code__`` is reassigned)."""
    import types

    return types.FunctionType(func.__code__, func.__globals__, func.__name__)


def _raises_for_2(x):
    if x == 2:
        raise ValueError("no value for 2")
    return ("B", x)


def test_the_memory_tier_holds_no_value_read_for_the_code_of_before(tmp_path):
    """A hit read from disk for the old code, held after another thread reassigned the code
    and called (renew, then ``forget`` set the stamp back): every later call of the new
    code got the old code's value from memory."""
    f = memojar.cached(cache_dir=tmp_path, memory=16)(_copy(_b))
    f.__wrapped__.__code__ = _slow_a.__code__
    _go.set()
    assert f(1) == ("A", 1)
    memo = f.__memojar__
    memo.recent.clear()  # on disk only: the next call reads it
    read = memo.get_expiring

    def read_then_reassigned(key, call):
        got = read(key, call)
        memo.get_expiring = read
        f.__wrapped__.__code__ = _raises_for_2.__code__  # another thread meanwhile ...
        with pytest.raises(ValueError, match="no value for 2"):
            f(2)  # ... calls: renew, then forget (nothing stored, nothing swept)
        return got

    memo.get_expiring = read_then_reassigned
    assert f(1) == ("A", 1)  # started under the old code: its value
    assert f(1) == ("B", 1)
