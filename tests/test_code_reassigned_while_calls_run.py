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


def _c_but_2(x):
    if x == 2:
        raise ValueError("no value for 2")  # stores nothing: nothing is swept
    return ("C", x)


def _renewed_by_another_thread(f):
    """Another thread's call, after the code was reassigned: it renews the memo (its own
    call raises, so nothing is stored and no entry of the old code is swept)."""
    f.__wrapped__.__code__ = _c_but_2.__code__

    def call():
        with pytest.raises(ValueError, match="no value for 2"):
            f(2)

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_a_reader_made_while_another_thread_renews_is_not_kept(tmp_path, monkeypatch):
    """The reader (made at a memo's first hit, for its identity) made for the old code while
    another thread's call renewed the memo for the new code: it was kept, and every later
    call of the new code returned the old code's stored values."""
    _go.set()
    memojar.cached(cache_dir=tmp_path)(_copy(_b))(1)  # the old code's entry
    f = memojar.cached(cache_dir=tmp_path)(_copy(_b))
    make_reader = memojar._entry.make_reader

    def made_meanwhile(*args):
        monkeypatch.setattr(memojar._entry, "make_reader", make_reader)
        thread = _renewed_by_another_thread(f)
        thread.join(10)
        assert not thread.is_alive()
        return make_reader(*args)

    monkeypatch.setattr(memojar._entry, "make_reader", made_meanwhile)
    assert f(1) == ("B", 1)  # began under the old code: its value
    assert [f(1), f(1)] == [("C", 1), ("C", 1)]
    assert f.cache_info()[:2] == (2, 2)  # f(1) read, f(2) raised, f(1) stored, then read


class _NotingLock:
    """An RLock that notes when a thread but the main one comes to take it."""

    def __init__(self):
        self.lock, self.tried = threading.RLock(), threading.Event()

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            self.tried.set()
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


def test_an_identity_made_while_another_thread_renews_is_not_kept(tmp_path, monkeypatch):
    """The identity made for the old code (at the first call) while another thread's call
    renewed the memo for the new code: it was kept, and every later call of the new code
    returned the old code's stored values, and stored its own under the old identity."""
    _go.set()
    memojar.cached(cache_dir=tmp_path)(_copy(_b))(1)  # the old code's entry
    f = memojar.cached(cache_dir=tmp_path)(_copy(_b))
    lock = _NotingLock()
    monkeypatch.setattr(memojar._decorator._MadeOnce, "lock", lock)
    digest, threads = memojar._decorator.identity_digest, []

    def made_meanwhile(rows):
        monkeypatch.setattr(memojar._decorator, "identity_digest", digest)
        threads.append(_renewed_by_another_thread(f))
        assert lock.tried.wait(10)  # it renewed, or waits to (where the renew takes it)
        return digest(rows)

    monkeypatch.setattr(memojar._decorator, "identity_digest", made_meanwhile)
    assert f(1) == ("B", 1)  # began under the old code: its value
    threads[0].join(10)
    assert not threads[0].is_alive()
    assert [f(1), f(1)] == [("C", 1), ("C", 1)]


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "wrapped"])
def test_a_walk_of_code_reassigned_while_it_ran_is_not_kept(tmp_path, monkeypatch, wrapped):
    """The walk of what a function depends on (``_identity.dependencies``), made for the old
    code while another thread reassigned it and renewed the memo (which forgot the walks
    made before): it was kept, the next identity was made of it, and the new code's value
    was stored under the old code's identity; the old code, set again, then got the new
    code's value (in an attack of three threads calling a wrapped function while a fourth
    flipped its code, every entry of one code, in 2 runs of 40)."""
    from memojar import _identity

    inner = _copy(_b)
    f = memojar.cached(cache_dir=tmp_path)(_passing(inner) if wrapped else inner)
    walk = _identity._walk_dependencies

    def reassigned_meanwhile(target):
        monkeypatch.setattr(_identity, "_walk_dependencies", walk)  # once
        rows = walk(target)
        inner.__code__ = _a.__code__
        thread = threading.Thread(target=f.cache_key, args=(1,))  # renews
        thread.start()
        thread.join(10)
        return rows

    monkeypatch.setattr(_identity, "_walk_dependencies", reassigned_meanwhile)
    assert f(1) == ("A", 1)
    assert f(1) == ("A", 1)
    inner.__code__ = _b.__code__
    assert f(1) == ("B", 1)  # before: ("A", 1), stored under the identity of B's code


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "wrapped"])
def test_an_identity_walked_while_the_code_was_reassigned_and_back_is_not_kept(
        tmp_path, monkeypatch, wrapped):
    """The identity made at a first call, walked while another thread reassigned the code
    and set it back (A, B, A) before any call looked: made of B's code, it was kept for A,
    every value of A was stored under B's identity, and B, set later, got A's values (in
    an attack of three threads calling while a fourth flipped the code, 3 runs of 80 of a
    plain function, every entry of one code)."""
    from memojar import _identity

    inner = _copy(_b)
    f = memojar.cached(cache_dir=tmp_path)(_passing(inner) if wrapped else inner)
    walk = _identity._walk_dependencies

    def reassigned_and_back(target):
        monkeypatch.setattr(_identity, "_walk_dependencies", walk)  # once
        code = inner.__code__
        inner.__code__ = _a.__code__
        try:
            return walk(target)
        finally:
            inner.__code__ = code

    monkeypatch.setattr(_identity, "_walk_dependencies", reassigned_and_back)
    assert f(1) == ("B", 1)
    assert f(1) == ("B", 1)
    inner.__code__ = _a.__code__
    assert f(1) == ("A", 1)  # before: ("B", 1), stored under the identity of A's code
    inner.__code__ = _b.__code__
    assert f(1) == ("B", 1)


def _a(x):
    return ("A", x)


def _passing(fn):
    """A decorator of ``functools.wraps`` that passes the call on."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def _scaling(fn):
    """A decorator whose wrapper takes parameters of its own (bound by its own signature)."""
    import functools

    @functools.wraps(fn)
    def wrapper(x, scale=1, verbose=False):
        return fn(x) * scale

    return wrapper


def _plain(x):
    return x


def test_a_decorator_binder_made_while_its_defaults_are_reassigned_is_not_kept(
        tmp_path, monkeypatch):
    """The binder of a decorator's own signature (a ``functools.wraps`` wrapper taking
    ``scale=`` and ``verbose=``), made while another thread reassigned the wrapper's
    defaults: it was kept as made for the new ones, so every later call it bound applied
    the old default (``f(3, verbose=True)`` keyed as ``scale=1``, computed with
    ``scale=10``), and ``f(3, scale=1, verbose=True)`` got 30."""
    f = memojar.cached(cache_dir=tmp_path)(_scaling(_plain))
    wrapper = f.__wrapped__
    make_binder = memojar._decorator.make_binder

    def made_meanwhile(*args, **kwargs):
        monkeypatch.setattr(memojar._decorator, "make_binder", make_binder)
        thread = threading.Thread(target=setattr, args=(wrapper, "__defaults__", (10, False)))
        thread.start()  # another thread, while the binder is made
        thread.join(10)
        return make_binder(*args, **kwargs)

    monkeypatch.setattr(memojar._decorator, "make_binder", made_meanwhile)
    f(2, verbose=True)  # the first call its own signature binds: the binder is made
    assert wrapper.__defaults__ == (10, False)
    assert f(3, verbose=True) == 30
    assert f(3, scale=1, verbose=True) == 3


def test_a_call_bound_by_a_decorators_signature_as_its_defaults_are_reassigned_is_bound(
        tmp_path):
    """A call only the decorator's own signature binds (``f(3, verbose=True)``), made as
    another thread reassigned the wrapper's defaults (between the call's look at them and
    its binding): its binding failed by the wrapped function's signature, the memo was
    renewed for the new defaults, and the wrapped function's binder was asked again,
    not the wrapper's: the call raised the wrapped function's TypeError ("got an
    unexpected keyword argument 'verbose'"), 1 call in about 1,000 with a thread
    flipping the defaults."""
    f = memojar.cached(cache_dir=tmp_path)(_scaling(_plain))
    memo = f.__memojar__
    bind = memo.binder

    def reassigned_meanwhile(*args, **kwargs):
        memo.binder = bind  # once
        thread = threading.Thread(
            target=setattr, args=(f.__wrapped__, "__defaults__", (10, False)))
        thread.start()
        thread.join(10)
        return bind(*args, **kwargs)

    memo.binder = reassigned_meanwhile
    assert f(3, verbose=True) == 30  # before: TypeError
    assert f(3, scale=1, verbose=True) == 3
    assert f.cache_info().misses == 2


def _adding(x, y=1):
    return x + y


def _after_its_key(f, meanwhile):
    """Once: ``meanwhile()`` runs in another thread after the next call's key was made
    (as its entry is read), and that call goes on once the thread is done."""
    store = f.__memojar__.store
    read = store.read

    def then_read(name, key):
        del store.read  # once
        thread = threading.Thread(target=meanwhile)
        thread.start()
        thread.join(10)
        return read(name, key)

    store.read = then_read


def test_a_value_of_defaults_reassigned_after_its_key_was_made_is_not_stored(tmp_path):
    """A call whose key was made (its default applied) before another thread reassigned the
    function's defaults, and which then ran with the new default: its value was stored
    under the key of the old one, and ``f(1, 1)`` got ``1 + 2``."""
    func = _copy(_adding)
    func.__defaults__ = (1,)
    f = memojar.cached(cache_dir=tmp_path)(func)
    _after_its_key(f, lambda: setattr(func, "__defaults__", (2,)))
    assert f(1) == 3  # began with y=1, ran with y=2: its value, not stored as y=1's
    assert f(1, 1) == 2
    assert f(1) == 3


def test_a_value_of_a_decorators_defaults_reassigned_after_its_key_was_made_is_not_stored(
        tmp_path):
    """A call bound by a decorator's own signature (``f(3, verbose=True)``: the wrapper's
    ``scale=`` default applied to its key), whose wrapper's defaults another thread
    reassigned after its key was made, and which then ran with the new default: its value
    was stored under the key of the old one, and ``f(3, scale=1, verbose=True)`` got 30."""
    f = memojar.cached(cache_dir=tmp_path)(_scaling(_plain))
    _after_its_key(f, lambda: setattr(f.__wrapped__, "__defaults__", (10, False)))
    assert f(3, verbose=True) == 30  # began with scale=1, ran with 10: not stored as 1's
    assert f(3, scale=1, verbose=True) == 3
    assert f(3, verbose=True) == 30


def _reassigned_and_called(func, call):
    """Another thread's work: ``func``'s default set to 2, then a call of the cached
    function (``call``), which renews its memo for it."""

    def other():
        func.__defaults__ = (2,)
        assert call(5) == 7

    return other


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
def test_a_value_of_defaults_another_threads_call_renewed_after_its_key_was_made_is_not_stored(
        tmp_path, memory):
    """As above, and the other thread then called the function (its call renewed the
    memo for the new default before this one's miss looked): the miss found nothing
    reassigned since the renew, and stored ``1 + 2`` under the key of ``f(1, 1)``."""
    func = _copy(_adding)
    func.__defaults__ = (1,)
    f = memojar.cached(cache_dir=tmp_path, memory=memory)(func)
    _after_its_key(f, _reassigned_and_called(func, f))
    assert f(1) == 3  # began with y=1, ran with y=2: its value, not stored as y=1's
    assert f(1, 1) == 2
    assert f(1) == 3


async def _aadding(x, y=1):
    return x + y


def test_an_async_value_of_defaults_another_threads_call_renewed_meanwhile_is_not_stored(
        tmp_path):
    """The same for a coroutine function (``_started``, not ``_compute``)."""
    func = _copy(_aadding)
    func.__defaults__ = (1,)
    f = memojar.cached(cache_dir=tmp_path)(func)
    _after_its_key(f, _reassigned_and_called(func, lambda x: asyncio.run(f(x))))
    assert asyncio.run(f(1)) == 3
    assert asyncio.run(f(1, 1)) == 2
