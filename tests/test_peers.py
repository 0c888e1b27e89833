"""Behaviours of the peers' own test suites that apply to a disk cache, ported.

From CPython's ``Lib/test/test_functools.py`` (``TestLRU``): star arguments, bpo-36650
(``f()`` and ``f(**{})``), exceptions not cached, typed keys, methods of equal-valued
instances, ``copy``/``deepcopy``/``pickle`` of the decorated function (and of a cached
method, staticmethod and partial), weak references (and their collection), counts and
``__wrapped__``, the wrapper assignments, types at every depth. (bpo-35780, a call of its
own arguments while it computes, is ``faults/test_fault_locks.py``'s re-entry test.)
From joblib's ``joblib/test/test_memory.py``: a function redefined in the same session (or
its ``__code__`` replaced), lambdas that share a name (also made by ``eval``), lambdas and
partials over a helper counting its calls, ``ignore=``, keyword-only arguments, results
the caller mutates, a pickled function, ``cache_contains``, the module file edited, a
notebook cell's function in ``joblib.Parallel`` and across sessions, racing workers,
short runs not stored, mapped hits. (The in-memory parts, ``maxsize`` and
``cache_parameters``, do not apply.)
From cachier's tests (pickle core, general, varargs, async, metrics, cleanup, entry size;
the store-agnostic ones on every store kind, as cachier runs them on its redis and s3
cores) and diskcache's memoize and Cache tests (test_core, test_fanout, test_recipes):
see the headings below for how each peer's option maps onto memojar's.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import decimal
import fractions
import functools
import gc
import inspect
import logging
import os
import pickle
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memojar
from conftest import STORE_KINDS, run_python
from memojar import Cache, MemojarWarning

np = pytest.importorskip("numpy")


# A test of behaviour every store kind shares runs on each (the module's tests run on the
# file store otherwise).
EVERY_STORE = pytest.mark.parametrize("cache_dir", STORE_KINDS, indirect=True)


def square(x: int) -> int:  # module level: pickles by reference, as in test_pickle
    return x * x


# --- CPython TestLRU ----------------------------------------------------------------------

def test_lru_star_arg_handling(cache_dir: Path) -> None:
    @Cache(cache_dir).cached
    def f(*args: Any) -> Any:
        return args

    for _ in range(2):  # a miss, then a hit
        assert f(1, 2) == (1, 2)
        assert f((1, 2)) == ((1, 2),)


def test_lru_bug_36650_no_arguments_and_empty_keywords_are_one_call(cache_dir: Path) -> None:
    calls: list[Any] = []

    @Cache(cache_dir).cached
    def f(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return (len(args), len(kwargs))

    assert (f(), f(**{}), f(*()), f(1), f(k=1), f(k=1)) == ((0, 0),) * 3 + ((1, 0), (0, 1),
                                                                          (0, 1))
    assert calls == [((), {}), ((1,), {}), ((), {"k": 1})]


def test_lru_star_arguments_and_keywords_never_collide(cache_dir: Path) -> None:
    @Cache(cache_dir).cached
    def f(*args: Any, **kwargs: Any) -> Any:
        return (args, kwargs)

    calls = [((1,), {"b": 2}), ((), {"a": 1}), (("a", 1), {}), ((("a", 1),), {}),
             (({"a": 1},), {}), ((), {"kwargs": {}}), ((((), {}),), {})]
    for _ in range(2):
        assert [f(*a, **k) for a, k in calls] == calls


def test_lru_with_exceptions_are_not_cached(cache_dir: Path) -> None:
    calls: list[int] = []

    @Cache(cache_dir).cached
    def f(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise IndexError(x)
        return x

    for _ in range(2):
        with pytest.raises(IndexError):
            f(1)
    assert (f(1), f(1), calls) == (1, 1, [1, 1, 1])


def test_lru_with_types_equal_values_of_different_types_are_different_calls(
    cache_dir: Path,
) -> None:
    @Cache(cache_dir).cached
    def kind(x: Any = 0) -> str:
        return type(x).__name__

    values = [1, 1.0, True, decimal.Decimal(1), fractions.Fraction(1), np.int64(1)]
    for _ in range(2):
        assert [kind(x=v) for v in values] == ["int", "float", "bool", "Decimal",
                                               "Fraction", "int64"]


def test_lru_method_instances_of_an_int_subclass(cache_dir: Path) -> None:
    cache = Cache(cache_dir)

    class X(int):
        @cache.cached
        def f(self, x: int) -> Any:
            return (int(self), x)

    for _ in range(2):
        assert (X(1).f(1), X(2).f(1), X(1).f(2)) == ((1, 1), (2, 1), (1, 2))


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy,
                                       lambda f: pickle.loads(pickle.dumps(f))])
def test_copy_deepcopy_and_pickle_give_a_working_function(duplicate: Any, cache_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cached_square = Cache(cache_dir).cached(square)
    monkeypatch.setattr(__import__(__name__), "square", cached_square, raising=True)
    assert cached_square(3) == 9
    copied = duplicate(cached_square)
    assert copied(3) == 9
    assert copied(4) == 16


# An endless recursion through the making of a key (the cached function called again while
# its own key is made) ends as it does without memojar, with a RecursionError, at once. Each
# level used to retry the failed key (memo pickling, then each argument alone to name the
# bad one), so the unwinding took time exponential in the depth: a hang.
_REENTRY = {
    # TestLRU.test_lru_reentrancy_with_len: builtins.len replaced by its cached self, which
    # memojar's own code calls while it makes the key.
    "builtins.len replaced": """
        import builtins
        old_len = builtins.len
        builtins.len = cache.cached(old_len)
        try:
            builtins.len("abc")
        finally:
            builtins.len = old_len
    """,
    "an argument's __reduce__ calling the function": """
        class Arg:
            def __reduce__(self):
                f(self)
                return (Arg, ())

        @cache.cached
        def f(x):
            return 1

        f(Arg())
    """,
}


@pytest.mark.parametrize("reentry", _REENTRY.values(), ids=_REENTRY.keys())
def test_lru_reentrancy_with_len_ends_with_a_recursion_error_never_a_hang(
    reentry: str, tmp_path: Path,
) -> None:
    out = run_python(textwrap.dedent(f"""
        import memojar, time
        cache = memojar.Cache({str(tmp_path / "cache")!r})
        start = time.monotonic()
        try:
    """) + textwrap.indent(textwrap.dedent(reentry), "    ") + textwrap.dedent("""
        except RecursionError:
            print("RecursionError", time.monotonic() - start < 10)
    """), timeout=60)
    assert out.split() == ["RecursionError", "True"]


def test_lru_cache_weakrefable(cache_dir: Path) -> None:
    @Cache(cache_dir).cached
    def f(x: int) -> int:
        return x

    assert weakref.ref(f)() is f


def test_lru_with_keyword_args_recursion_counts_and_cache_clear(cache_dir: Path) -> None:
    # TestLRU.test_lru_with_keyword_args: a recursion by keyword, fib(n=n - 1), is one
    # entry a value, and cache_clear() empties the entries and the counts.
    @Cache(cache_dir).cached
    def fib(n: int) -> int:
        return n if n < 2 else fib(n=n - 1) + fib(n=n - 2)

    assert [fib(n=n) for n in range(16)] == [_fibiter(n) for n in range(16)]
    assert fib.cache_info()[:3] == (28, 16, 16)
    assert fib.cache_clear() == 16
    assert fib.cache_info()[:3] == (0, 0, 0)
    assert fib(n=15) == 610
    assert fib.cache_info()[:3] == (13, 16, 16)


@pytest.mark.parametrize("memory", [None, 64])
def test_lru_cache_threaded_calls_and_cache_clear(cache_dir: Path, memory: int | None) -> None:
    # TestLRU.test_lru_cache_threaded: threads calling the function (a switch interval of a
    # microsecond) while another clears it: every call returns its own value, none raises.
    def orig(x: int, y: int) -> int:
        return 3 * x + y

    f = Cache(cache_dir).cached(memory=memory)(orig)
    n, m = 5, 11
    start, wrong = threading.Event(), []

    def full(k: int) -> None:
        start.wait(10)
        for _ in range(m):
            got = f(k, 0)
            if got != orig(k, 0):
                wrong.append((k, got))

    def clear() -> None:
        start.wait(10)
        for _ in range(2 * m):
            f.cache_clear()

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for targets in ([], [clear]):  # filling, then filling while cleared
            threads = [threading.Thread(target=t) for t in targets]
            threads += [threading.Thread(target=full, args=(k,)) for k in range(n)]
            start.clear()
            for t in threads:
                t.start()
            start.set()
            for t in threads:
                t.join(60)
            assert not any(t.is_alive() for t in threads)
            if not targets:
                assert f.cache_info()[:3] == (n * m - n, n, n)
    finally:
        sys.setswitchinterval(switch)
    assert wrong == []
    assert f(1, 0) == 3
    assert f.cache_contains(1, 0)


def test_lru_counts_every_call_and_the_wrapped_function_bypasses_the_cache(
    cache_dir: Path,
) -> None:
    # TestLRU.test_lru: random calls are each a hit or a miss, one entry a miss;
    # cache_clear() zeroes both; a call of __wrapped__ (the original) counts nothing.
    def orig(x: int, y: int) -> int:
        return 3 * x + y

    f = Cache(cache_dir).cached(orig)
    assert f.cache_info()[:3] == (0, 0, 0)
    rnd = random.Random(0)
    for _ in range(200):
        x, y = rnd.choice(range(5)), rnd.choice(range(5))
        assert f(x, y) == orig(x, y)
    hits, misses, entries = f.cache_info()[:3]
    assert hits > misses and hits + misses == 200 and entries == misses
    f.cache_clear()
    assert f.cache_info()[:3] == (0, 0, 0)
    f(x, y)
    assert f.cache_info()[:3] == (0, 1, 1)
    assert f.__wrapped__ is orig
    assert f.__wrapped__(x, y) == orig(x, y)
    assert f.cache_info()[:3] == (0, 1, 1)


def test_lru_cache_decoration_copies_the_wrapper_assignments(cache_dir: Path) -> None:
    def f(zomg: zomg_annotation) -> int:  # type: ignore[name-defined]  # noqa: F821
        """f doc string"""
        return 42

    g = Cache(cache_dir).cached(f)
    for attr in functools.WRAPPER_ASSIGNMENTS:
        assert getattr(g, attr) == getattr(f, attr), attr


def test_lru_cache_typed_at_every_depth(cache_dir: Path) -> None:
    # TestLRU.test_lru_cache_typed_is_not_recursive, where lru_cache(typed=True) returns
    # '(1,)' for (True,): memojar keys types inside tuples (and a tuple subclass) too, so
    # cached repr returns each value's own.
    class T(tuple):  # type: ignore[type-arg]
        pass

    cached_repr = Cache(cache_dir).cached(repr)
    values = [1, True, 1.0, 0, False, 0.0, (1,), (True,), (1.0,), (0,), (False,), (0.0,),
              T((1,)), T((True,)), T((1.0,))]
    for _ in range(2):
        assert [cached_repr(v) for v in values] == [repr(v) for v in values]


def test_lru_type_error_an_argument_that_cannot_be_keyed_counts_nothing(
    cache_dir: Path,
) -> None:
    # TestLRU.test_lru_type_error (an unhashable argument): here one that cannot be pickled.
    @Cache(cache_dir).cached
    def infinite_cache(o: Any) -> None:
        pass

    with pytest.raises(TypeError, match="'o'"):
        infinite_cache(threading.Lock())
    assert infinite_cache.cache_info()[:3] == (0, 0, 0)


def test_lru_cache_weakrefable_methods_and_dropped_functions_are_collected(
    cache_dir: Path,
) -> None:
    # The rest of TestLRU.test_lru_cache_weakrefable: a cached method and staticmethod take
    # weak references too, and once the class and function are dropped (after calls),
    # nothing of memojar's keeps them alive.
    cache = Cache(cache_dir)

    @cache.cached
    def test_function(x: int) -> int:
        return x

    class A:
        @cache.cached(ignore=("self",))
        def test_method(self, x: int) -> tuple[int]:
            return (x,)

        @staticmethod
        @cache.cached
        def test_staticmethod(x: int) -> tuple[int]:
            return (x,)

    assert (test_function(1), A().test_method(1), A.test_staticmethod(1)) == (1, (1,), (1,))
    refs = [weakref.ref(test_function), weakref.ref(A.test_method),
            weakref.ref(A.test_staticmethod)]
    assert all(ref() is not None for ref in refs)
    del A, test_function
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


class _Methods:
    def meth(self, x: int) -> int:
        return 3 * x

    @staticmethod
    def smeth(x: int) -> int:
        return 3 * x + 1


def _orig(x: int, y: int) -> int:
    return 3 * x + y


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy,
                                       lambda f: pickle.loads(pickle.dumps(f))])
def test_pickle_copy_deepcopy_of_a_cached_method_and_staticmethod_give_it_back(
    duplicate: Any, cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # TestLRU.test_pickle, test_copy, test_deepcopy: a method and a staticmethod cached in
    # their class, found again by name (the same object), and a cached partial (copied).
    cache = Cache(cache_dir)
    monkeypatch.setattr(_Methods, "meth", cache.cached(_Methods.__dict__["meth"]))
    monkeypatch.setattr(_Methods, "smeth",
                        staticmethod(cache.cached(_Methods.__dict__["smeth"].__func__)))
    for f, args, value in [(_Methods.meth, (_Methods(), 2), 6), (_Methods.smeth, (2,), 7)]:
        assert duplicate(f) is f
        assert f(*args) == duplicate(f)(*args) == value
    if duplicate in (copy.copy, copy.deepcopy):  # a partial has no name to pickle it by
        part = cache.cached(functools.partial(_orig, 2))
        assert duplicate(part) is part and part(1) == 7


# --- joblib test_memory -------------------------------------------------------------------

def test_memory_in_memory_function_code_change(cache_dir: Path) -> None:
    cache = Cache(cache_dir)

    @cache.cached
    def f(x: int) -> int:
        return 1

    assert f(0) == 1

    @cache.cached  # type: ignore[no-redef]
    def f(x: int) -> int:
        return 2

    assert f(0) == 2


def test_memory_lambda_collisions_each_returns_its_own(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    a = cache.cached(lambda x: x + 1)
    b = cache.cached(lambda x: x + 2)
    assert [a(1), b(1), a(1), b(1)] == [2, 3, 2, 3]


def test_memory_ignore_and_keyword_only_arguments(cache_dir: Path) -> None:
    calls: list[Any] = []

    @Cache(cache_dir).cached(ignore=("verbose",))
    def f(x: int, *, y: int = 1, verbose: bool = False) -> int:
        calls.append((x, y))
        return x + y

    assert (f(1), f(1, verbose=True), f(1, y=1), f(1, y=2)) == (2, 2, 2, 3)
    assert calls == [(1, 1), (1, 2)]


def test_memory_results_mutated_by_the_caller_do_not_change_the_cache(cache_dir: Path) -> None:
    @Cache(cache_dir).cached
    def ramp(n: int) -> Any:
        return np.arange(n, dtype=np.float64)

    n = 300_000  # over 1 MiB: hits are memory-mapped
    ramp(n)[:] = -1  # the miss's own result
    hit = ramp(n)
    assert hit[:3].tolist() == [0.0, 1.0, 2.0]
    hit[:] = -2
    assert ramp(n)[:3].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("memory", [None, 4])
def test_memory_argument_change_a_default_the_function_mutates(cache_dir: Path,
                                                               memory: int | None) -> None:
    # test_argument_change: a call binds its default as it is at the call, so a default list
    # the function appends to is another argument at each call (the memory tier too: a call
    # of no arguments is not looked up by its arguments alone).
    def count_and_append(x: list[Any] = []) -> int:  # noqa: B006 - the point of the test
        len_x = len(x)
        x.append(None)
        return len_x

    func = Cache(cache_dir).cached(memory=memory)(count_and_append)
    assert [func(), func(), func([])] == [0, 1, 0]


def test_memory_integration_the_cache_directory_removed_under_a_running_process(
    cache_dir: Path,
) -> None:
    # test_memory_integration: the cache directory is removed (rm -rf) while the process
    # runs; the next calls compute, store and hit again, and clear removes what they stored.
    import shutil

    calls: list[int] = []

    @Cache(cache_dir).cached
    def f(arg: int) -> int:
        calls.append(arg)
        return arg

    assert (f(1), f(1), calls) == (1, 1, [1])
    shutil.rmtree(cache_dir)
    assert (f(1), f(1), f(2), calls) == (1, 1, 2, [1, 1, 2])
    assert f.cache_info()[2] == 2
    assert f.cache_clear() == 2
    assert (f(1), calls) == (1, [1, 1, 2, 1])


@EVERY_STORE
def test_memory_exception_of_the_computing_caller_never_reaches_its_waiters(
    cache_dir: Path,
) -> None:
    # test_memory_exception with callers waiting (cachier's
    # test_function_thread_async_exception_handling): the caller computing the key raises;
    # it alone gets the exception, one waiter computes the value and the others read it.
    calls: list[int] = []
    entered, results = threading.Event(), {}

    @Cache(cache_dir).cached
    def h(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            entered.set()
            time.sleep(0.5)  # the other callers wait for this one meanwhile
            raise ValueError("the first call fails")
        return x * 2

    def call(i: int) -> None:
        try:
            results[i] = h(3)
        except ValueError as exc:
            results[i] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert entered.wait(30)
    waiters = [threading.Thread(target=call, args=(i,)) for i in range(1, 5)]
    for t in waiters:
        t.start()
    for t in [first, *waiters]:
        t.join(60)
    assert isinstance(results.pop(0), ValueError)
    assert results == {i: 6 for i in range(1, 5)}
    assert calls == [3, 3]


def test_memory_integration_a_memory_tier_sees_clears_after_the_cache_directory_is_removed(
    tmp_path: Path,
) -> None:
    # test_memory_integration with memory=: after the cache directory was removed (rm -rf)
    # under a running process, another process's cache_set and clear went to a new
    # generation stamp; the running process's memory tier kept the old one mapped and
    # returned what it held for ever. Its statistics thread (every 5 s) now maps the new one.
    (tmp_path / "stamped.py").write_text(textwrap.dedent(f"""
        import os
        from memojar import Cache

        @Cache({str(tmp_path / "cache")!r}).cached(memory=4)
        def f(x):
            return (x, os.getpid(), os.urandom(4).hex())
    """))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = run_python(textwrap.dedent(f"""
        import shutil, subprocess, sys, time
        import stamped

        def other(code):
            subprocess.run([sys.executable, "-c", "import stamped; " + code], check=True)

        held = stamped.f(1)
        shutil.rmtree({str(tmp_path / "cache")!r})
        assert stamped.f(1) == held  # the memory tier holds it (as a clear of this process's)
        other("stamped.f.cache_set('seeded', 1)")
        start = time.monotonic()
        while stamped.f(1) != "seeded" and time.monotonic() - start < 30:
            time.sleep(0.05)
        print(stamped.f(1), time.monotonic() - start < 15)
        other("stamped.f.cache_clear()")
        print(stamped.f(1) != "seeded")
    """), env=env, timeout=120)
    assert out.split() == ["seeded", "True", "True"]


def _with_verbose(f: Any) -> Any:
    @functools.wraps(f)
    def wrapper(*args: Any, verbose: bool = False, **kwargs: Any) -> Any:
        return f(*args, **kwargs)

    return wrapper


def _with_scale(f: Any) -> Any:
    @functools.wraps(f)
    def wrapper(x: int, scale: int = 1) -> Any:
        return f(x) * scale

    return wrapper


def test_memory_ignore_decorated_and_a_decorator_taking_parameters_of_its_own(
    cache_dir: Path,
) -> None:
    # test_memory_ignore_decorated: ignore= of a function under a functools.wraps decorator
    # (its signature is the wrapped one's). And a decorator whose wrapper takes parameters
    # the wrapped function does not (verbose=, scale=): a call that runs without memojar
    # (f(1, verbose=True), g(1, 10)) raised the wrapped function's TypeError, as the call was
    # bound by the wrapped signature only; it is now bound by the wrapper's own (keys apart
    # from the others), and ignore= may name its parameters.
    cache, calls = Cache(cache_dir), []

    def load(x: int, y: int = 1) -> int:
        calls.append((x, y))
        return x * 2

    ignoring = cache.cached(ignore=("y",))(functools.wraps(load)(
        lambda *args, **kwargs: load(*args, **kwargs)))
    assert [ignoring(0, y=1), ignoring(0, y=1), ignoring(0, y=2)] == [0, 0, 0]
    assert calls == [(0, 1)]

    def double(x: int) -> int:
        calls.append((x, 0))
        return x * 2

    verbose = cache.cached(_with_verbose(double))
    quiet = cache.cached(ignore=("verbose",))(_with_verbose(double))
    scaled = cache.cached(_with_scale(double))
    calls.clear()
    assert [verbose(1, verbose=True), verbose(1, verbose=True), verbose(x=1)] == [2, 2, 2]
    assert [quiet(3, verbose=True), quiet(3, verbose=False)] == [6, 6]
    assert [scaled(1, 10), scaled(1, scale=10), scaled(1), scaled(x=1, scale=3)] == [20, 20, 2, 6]
    # verbose: 2 computed (its two keys); quiet: 1; scaled: 3 (10, none given, 3)
    assert calls == [(1, 0), (1, 0), (3, 0), (1, 0), (1, 0), (1, 0)]
    assert scaled.cache_contains(1, 10) and not scaled.cache_contains(2, 10)
    with pytest.raises(TypeError, match=r"takes from 1 to 2 positional arguments"):
        scaled(1, 2, 3)  # what the wrapper raises without memojar
    with pytest.raises(TypeError, match=r"double\(\) takes 1 positional argument"):
        verbose(1, 2)  # the wrapper takes it, the function it calls does not


def _check_identity_lazy(func: Any, accumulator: list[int], cache_dir: Path,
                         memory: int | None = None) -> None:
    # joblib's check_identity_lazy: each argument computes once, over two calls.
    func = Cache(cache_dir).cached(memory=memory)(func)
    for i in range(3):
        for _ in range(2):
            assert func(i) == i
            assert len(accumulator) == i + 1


def test_memory_integration_a_local_function_named_like_a_module_level_one(
    cache_dir: Path,
) -> None:
    # test_memory_integration: a local square is not the module's square, and one whose
    # __module__ is set to __main__ still caches.
    accumulator: list[int] = []

    def square(arg: int) -> int:
        accumulator.append(1)
        return arg

    _check_identity_lazy(square, accumulator, cache_dir)
    assert Cache(cache_dir).cached(globals()["square"])(3) == 9
    square.__module__ = "__main__"
    assert Cache(cache_dir).cached(square)(7) == 7
    assert len(accumulator) == 4


@pytest.mark.parametrize("memory", [None, 4])
@pytest.mark.parametrize("made", ["lambda", "partial"])
def test_memory_lambda_and_partial_over_a_helper_counting_its_calls(
    cache_dir: Path, made: str, memory: int | None,
) -> None:
    # test_memory_lambda, test_memory_partial: the accumulator the helper appends to grows
    # at each computation; the calls hit all the same.
    accumulator: list[int] = []

    def helper(x: int) -> int:
        accumulator.append(1)
        return x

    def func(x: int, y: int) -> int:
        return helper(y)

    made_func = (lambda x: helper(x)) if made == "lambda" else functools.partial(func, 1)
    _check_identity_lazy(made_func, accumulator, cache_dir, memory)


@pytest.mark.parametrize("memory", [None, 4])
def test_memory_eval_lambdas_keep_their_own_entries(cache_dir: Path,
                                                    memory: int | None) -> None:
    # test_memory_eval, test_memory_warning_collision_detection: lambdas made by eval (no
    # source to read) share a name; each returns its own value.
    cache = Cache(cache_dir)
    a1 = cache.cached(memory=memory)(eval("lambda x: x"))
    b1 = cache.cached(memory=memory)(eval("lambda x: x+1"))
    assert [a1(1), b1(1), a1(0), a1(1), b1(1)] == [1, 2, 0, 1, 2]


_PERSISTED: list[int] = []


def persisted(x: int) -> int:  # module level: pickles by reference
    _PERSISTED.append(x)
    return x * 3


def test_memory_persistence_a_pickled_function_hits_the_originals_entries(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # test_persistence: the function pickled and loaded reads what the original stored.
    g = Cache(cache_dir).cached(persisted)
    monkeypatch.setattr(sys.modules[__name__], "persisted", g)
    monkeypatch.setattr(sys.modules[__name__], "_PERSISTED", [])
    assert g(1) == 3
    h = pickle.loads(pickle.dumps(g))
    assert h.cache_contains(1)
    assert h(1) == 3
    assert _PERSISTED == [1]


@EVERY_STORE
def test_memory_check_call_in_cache(cache_dir: Path) -> None:
    # test_check_call_in_cache: cache_contains is a bool, False before the call and after
    # a clear, and computes nothing.
    func = Cache(cache_dir).cached(square)
    assert func.cache_contains(2) is False
    assert func(2) == 4
    assert func.cache_contains(2) is True
    assert func.cache_clear() == 1
    assert func.cache_contains(2) is False
    assert func.cache_info()[:3] == (0, 0, 0)


def test_memory_file_modification_recomputes_only_once_the_module_is_reloaded(
    capsys: pytest.CaptureFixture[str], cache_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # test_memory_file_modification: lines added above the function in its file, and its
    # source edited while the old code still runs, recompute nothing; once the module is
    # reloaded, the new code computes once.
    folder = tmp_path / "tmp_import"
    folder.mkdir()
    module = folder / "tmp_memojar_peer.py"
    content = "def f(x):\n    print(x)\n    return x\n"
    module.write_text(content)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "tmp_memojar_peer", raising=False)
    cache = Cache(cache_dir)
    tmp = __import__("tmp_memojar_peer")
    f = cache.cached(tmp.f)
    f(1), f(2), f(1)
    module.write_text("\n\n" + content)
    f(1), f(1)
    shutil.rmtree(folder)  # the .pyc files too
    folder.mkdir()
    module.write_text('def f(x):\n    print("x=%s" % x)\n    return x\n')
    f(1), f(1)
    print("Reloading")
    del sys.modules["tmp_memojar_peer"]
    f = cache.cached(__import__("tmp_memojar_peer").f)
    f(1), f(1)
    assert capsys.readouterr().out == "1\n2\nReloading\nx=1\n"


def _sum(a: int, b: int) -> int:
    return a + b


def _product(a: int, b: int) -> int:
    return a * b


@pytest.mark.parametrize("memory", [None, 4])
def test_memory_in_memory_function_code_change_of_its_code_object(
    cache_dir: Path, memory: int | None,
) -> None:
    # test_memory_in_memory_function_code_change as joblib writes it: __code__ of the
    # decorated function itself is replaced; the next calls run (and keep) the new code,
    # and putting the old code back finds its entry again.
    def _function_to_cache(a: int, b: int) -> Any:
        pass

    _function_to_cache.__code__ = _sum.__code__
    f = Cache(cache_dir).cached(memory=memory)(_function_to_cache)
    assert f(1, 2) == f(1, 2) == 3
    _function_to_cache.__code__ = _product.__code__
    assert f(1, 2) == f(1, 2) == 2
    _function_to_cache.__code__ = _sum.__code__
    assert f(1, 2) == 3


def func_with_kwonly_args(a: int, b: int, *, kw1: Any = "kw1", kw2: Any = "kw2") -> Any:
    return a, b, kw1, kw2


def test_memory_func_with_kwonly_args(cache_dir: Path) -> None:
    # test_memory_func_with_kwonly_args: a keyword-only argument given by position raises
    # the function's own TypeError (joblib: ValueError), before and after a stored call;
    # ignore= takes a keyword-only name.
    cache = Cache(cache_dir)
    func_cached = cache.cached(func_with_kwonly_args)
    assert func_cached(1, 2, kw1=3) == (1, 2, 3, "kw2")
    with pytest.raises(TypeError) as expected:
        func_with_kwonly_args(1, 2, 3, kw2=4)  # type: ignore[misc]
    for _ in range(2):
        with pytest.raises(TypeError) as raised:
            func_cached(1, 2, 3, kw2=4)  # type: ignore[misc]
        assert str(raised.value) == str(expected.value)
        func_cached(1, 2, kw1=3, kw2=4)
    func_cached = cache.cached(ignore=("kw2",))(func_with_kwonly_args)
    assert func_cached(1, 2, kw1=3, kw2=4) == (1, 2, 3, 4)
    assert func_cached(1, 2, kw1=3, kw2="ignored") == (1, 2, 3, 4)


def fast_func_with_complex_output() -> list[str]:
    return ["a" * 1000] * 1000


def fast_func_with_conditional_complex_output(complex_output: bool = True) -> Any:
    complex_obj = {str(i): i for i in range(int(1e5))}
    return complex_obj if complex_output else "simple output"


def test_memory_cached_function_race_condition_when_persisting_output(
    tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    # test_cached_function_race_condition_when_persisting_output (and _2): joblib.Parallel
    # workers calling one cached function store and read its entries with no error or
    # warning, and every result is right.
    joblib = pytest.importorskip("joblib")
    cache = Cache(tmp_path / "cache")
    func_cached = cache.cached(fast_func_with_complex_output)
    results = joblib.Parallel(n_jobs=2)(joblib.delayed(func_cached)() for _ in range(3))
    assert results == [fast_func_with_complex_output()] * 3
    conditional = cache.cached(fast_func_with_conditional_complex_output)
    results = joblib.Parallel(n_jobs=2)(joblib.delayed(conditional)(i % 2 == 0)
                                        for i in range(3))
    assert results == [fast_func_with_conditional_complex_output(i % 2 == 0)
                       for i in range(3)]
    stdout, stderr = capfd.readouterr()
    assert "Warning" not in stdout + stderr and "Error" not in stdout + stderr
    assert func_cached.cache_contains() and conditional.cache_contains(False)


@pytest.mark.parametrize("call_before_reducing", [True, False])
def test_memory_parallel_call_cached_function_defined_in_jupyter(
    tmp_path: Path, call_before_reducing: bool,
) -> None:
    # test_parallel_call_cached_function_defined_in_jupyter (joblib #1035): a function of
    # a notebook cell (no source file, __module__ "__main__") sent to Parallel workers
    # before or after its first call keeps its entries, and a second session's cell (the
    # same code) hits them.
    joblib = pytest.importorskip("joblib")
    cache = Cache(tmp_path / "cache")
    for session_no in [0, 1]:
        cell: dict[str, Any] = {}
        exec(compile("def f(x):\n    return x\n",
                     f"<ipython-input-{session_no}-000000000000>", "exec"), None, cell)
        f = cell["f"]
        f.__module__ = "__main__"
        cached_f = cache.cached(f)
        if session_no == 1:
            assert [cached_f.cache_contains(i) for i in (1, 2, 3)] == [True] * 3
            assert cached_f(3) == 3
            assert cached_f.cache_info()[:2] == (1, 0)
        elif call_before_reducing:
            assert cached_f(3) == 3
            assert joblib.Parallel(n_jobs=2)(joblib.delayed(cached_f)(i) for i in [1, 2]) \
                == [1, 2]
        else:
            assert joblib.Parallel(n_jobs=2)(joblib.delayed(cached_f)(i) for i in [1, 2]) \
                == [1, 2]
            assert cached_f(3) == 3


def test_memory_cached_jupyter_function_persists_across_sessions(tmp_path: Path) -> None:
    # test_cached_jupyter_function_persists_across_sessions (joblib gh-1498, gh-1694): a
    # notebook cell's function hits in a new interpreter, whatever PYTHONHASHSEED.
    witness = tmp_path / "witness"
    session = textwrap.dedent("""
        import sys
        from memojar import Cache

        LOCATION, WITNESS = sys.argv[1], sys.argv[2]
        cell = {"WITNESS": WITNESS}
        exec(compile(
            "def f(x):\\n"
            "    with open(WITNESS, 'a') as fh:\\n"
            "        fh.write('ran\\\\n')\\n"
            "    return x * 2\\n",
            "<ipython-input-0-000000000000>", "exec"), cell)
        f = cell["f"]
        f.__module__ = "__main__"
        assert Cache(LOCATION).cached(f)(21) == 42
    """)
    for seed in ("1", "2"):
        run_python(session, str(tmp_path / "cache"), str(witness),
                   env={"PYTHONHASHSEED": seed})
    assert witness.read_text() == "ran\n"


def test_memory_only_cache_long_run(cache_dir: Path) -> None:
    # TestCacheValidationCallback.test_memory_only_cache_long_run (a callback keeping runs
    # over 0.1 s) is min_compute_time=0.1: short runs are returned, not stored.
    runs: list[float] = []

    @Cache(cache_dir).cached(min_compute_time=0.1)
    def foo(x: int, delay: float = 0) -> int:
        runs.append(delay)
        time.sleep(delay)
        return x * 2

    assert foo(2) == foo(2) == 4
    assert len(runs) == 2
    assert foo(2, delay=0.2) == foo(2, delay=0.2) == 4
    assert len(runs) == 3


@pytest.mark.parametrize("op", ["refresh", "cache_set", "cache_clear", "cache_delete"])
def test_memory_numpy_a_mapped_hit_keeps_its_values_when_the_entry_is_replaced(
    cache_dir: Path, op: str,
) -> None:
    # test_memory_numpy_check_mmap_mode's corruption step done by memojar's own calls: a
    # hit of over 1 MiB is mapped from its entry file; replacing or removing the entry
    # leaves the array the caller holds as it was. (Another program writing into the file
    # in place changes it: README, Known limits.)
    fill = [0.0]

    @Cache(cache_dir).cached
    def full(n: int) -> Any:
        return np.full(n, fill[0])

    n = 300_000
    full(n)
    held = full(n)
    fill[0] = 1.0
    if op == "refresh":
        assert (full.refresh(n) == 1.0).all()
    elif op == "cache_set":
        full.cache_set(np.full(n, 1.0), n)
    else:
        getattr(full, op)(*(() if op == "cache_clear" else (n,)))
    assert (held == 0.0).all()
    assert (full(n) == 1.0).all()


# --- the memory tier (memory=) under the same peer tests -----------------------------------

def test_lru_with_maxsize_negative_memory_tier_holds_no_result_left_unstored(
    cache_dir: Path,
) -> None:
    # TestLRU.test_lru_with_maxsize_negative, as "never cache": results computed faster than
    # min_compute_time are returned but not stored, and memory= used to hold them anyway.
    calls: list[int] = []

    @Cache(cache_dir).cached(memory=10, min_compute_time=60)
    def eq(n: int) -> int:
        calls.append(n)
        return n

    for _ in range(2):
        assert [eq(n) for n in range(3)] == [0, 1, 2]
    assert calls == [0, 1, 2, 0, 1, 2]


def test_memory_tier_holds_no_value_computed_while_its_files_changed(tmp_path: Path) -> None:
    # The disk entry is withheld when a files= path changed during the call (the value was
    # computed from other content than the key says); memory= held it under that key, and
    # served it once the file had its first content again.
    data = tmp_path / "data.txt"
    data.write_text("first")
    changes = ["second"]

    @Cache(tmp_path / "cache").cached(files=("path",), memory=10)
    def read(path: Path) -> str:
        if changes:  # another process rewrites the file while the call runs
            data.write_text(changes.pop())
        return path.read_text()

    with pytest.warns(MemojarWarning, match="changed while"):
        assert read(data) == "second"
    data.write_text("first")
    assert read(data) == "first"


class _Scaler:
    def __init__(self, k: int) -> None:
        self.k = k

    def value(self) -> int:
        return self.k * 10

    def __call__(self) -> int:
        return self.k * 100


def _first(factor: list[int]) -> int:
    return factor[0]


@pytest.mark.parametrize("made", ["bound method", "callable instance", "partial", "key=",
                                  "files= default"])
def test_memory_tier_keys_a_call_of_no_arguments_by_what_its_key_covers(
    tmp_path: Path, made: str,
) -> None:
    # test_argument_change's case for the other calls memory= must always key: with no
    # arguments, the instance or argument bound to the function (changed in place), what
    # key= reads or the content of a files= path given as a default is all that tells the
    # calls apart. They were looked up in memory by their (empty) arguments, so the first
    # value was returned after the change.
    scaler, factor, data = _Scaler(1), [1], tmp_path / "data.txt"
    data.write_text("one")
    if made == "key=":
        func: Any = Cache(tmp_path / "c").cached(memory=4, key=lambda: data.read_text())(
            lambda: data.read_text())
    elif made == "files= default":
        def read(path: Path = data) -> str:
            return path.read_text()

        func = Cache(tmp_path / "c").cached(memory=4, files=("path",))(read)
    else:
        func = Cache(tmp_path / "c").cached(memory=4)(
            {"bound method": scaler.value, "callable instance": scaler,
             "partial": functools.partial(_first, factor)}[made])
    first = func()
    assert func() == first
    scaler.k = factor[0] = 2
    data.write_text("two")
    assert func() == {"bound method": 20, "callable instance": 200, "partial": 2,
                      "key=": "two", "files= default": "two"}[made]


# --- cachier ------------------------------------------------------------------------------
# From python-cachier/cachier tests/pickle_tests/test_pickle_core.py, tests/test_general.py,
# tests/test_varargs.py, tests/test_caching_regression.py and tests/test_cleanup.py, on the
# file store. cachier's stale_after is ttl=, next_time=True is stale_while_revalidate=,
# cachier__overwrite_cache=True is refresh(), cachier__skip_cache=True is
# memojar.disabled(f), precache_value is cache_set, wait_for_calc_timeout is lock_timeout=.
# Its timings (``end - start < 1``) are counted calls here.

# cachier runs these on its redis and s3 cores too (tests/redis_tests, tests/s3_tests): they
# run on every store kind here (EVERY_STORE).


def _wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _counted(calls: list[Any]) -> Any:
    def takes_2_seconds(arg_1: Any, arg_2: Any) -> str:
        calls.append((arg_1, arg_2))
        return f"arg_1:{arg_1}, arg_2:{arg_2}"

    return takes_2_seconds


@EVERY_STORE
def test_cachier_pickle_core_and_keywords(cache_dir: Path) -> None:
    """cachier test_pickle_core, test_pickle_core_keywords: the second call is a hit, also
    when an argument is passed by keyword, and in a new Cache of the same directory (its
    ``pickle_reload``)."""
    calls: list[Any] = []
    f = Cache(cache_dir).cached(_counted(calls))
    assert f("a", "b") == f("a", "b") == f("a", arg_2="b") == "arg_1:a, arg_2:b"
    assert Cache(cache_dir).cached(_counted(calls))("a", "b") == "arg_1:a, arg_2:b"
    assert calls == [("a", "b")]


def test_cachier_sync_client_over_sync_async_functions(cache_dir: Path) -> None:
    """cachier test_sync_client_over_sync_async_functions: one cache decorates a plain and a
    coroutine function, and both are cached."""
    cache = Cache(cache_dir)
    calls: list[int] = []

    @cache.cached
    def sync(x: int) -> int:
        calls.append(x)
        return 1

    @cache.cached
    async def asynchronous(x: int) -> int:
        calls.append(-x)
        return 2

    assert inspect.iscoroutinefunction(asynchronous)
    assert [sync(1), sync(1), asyncio.run(asynchronous(1)), asyncio.run(asynchronous(1))] == [
        1, 1, 2, 2]
    assert calls == [1, -1]


@EVERY_STORE
def test_cachier_stale_after(cache_dir: Path) -> None:
    """cachier test_stale_after: past ttl (stale_after) the call recomputes."""
    # ttl 1.5 s, not cachier's 0.3 s (here and below): on a loaded 2-core machine a first
    # store on S3 (moto) outlasted 0.3 s, and the second call found its entry stale.
    f = Cache(cache_dir).cached(ttl=datetime.timedelta(seconds=1.5))(
        lambda arg_1, arg_2: random.random())
    val1, val2, val3 = f(1, 2), f(1, 2), f(1, 3)
    assert val1 == val2 != val3
    time.sleep(1.6)
    assert f(1, 2) != val1


@EVERY_STORE
def test_cachier_stale_after_next_time(cache_dir: Path) -> None:
    """cachier test_stale_after_next_time: past ttl, with stale_while_revalidate (next_time),
    the call returns the stale value and a later call the recomputed one."""
    f = Cache(cache_dir).cached(ttl=1.5, stale_while_revalidate=60)(
        lambda arg_1, arg_2: random.random())
    val1, val2, val3 = f(1, 2), f(1, 2), f(1, 3)
    assert val1 == val2 != val3
    time.sleep(1.6)
    assert f(1, 2) == val1
    _wait_for(lambda: f(1, 2) != val1)


def _random_functions(cache: Cache) -> tuple[Any, Any]:
    # Named apart: two lambdas of one scope share a name, and their entries of one key
    # replace each other's (as in joblib, where they collide too).
    def random_num() -> float:
        return random.random()

    def random_num_with_arg(a: str) -> float:
        return random.random()

    return cache.cached(random_num), cache.cached(random_num_with_arg)


@EVERY_STORE
def test_cachier_overwrite_cache(cache_dir: Path) -> None:
    """cachier test_overwrite_cache: cachier__overwrite_cache=True is refresh(): it
    recomputes, and later calls return the new value."""
    no_arg, with_arg = _random_functions(Cache(cache_dir))
    for f, args in ((no_arg, ()), (with_arg, ("a",))):
        int1 = f(*args)
        assert f(*args) == int1
        int3 = f.refresh(*args)
        assert int3 != int1
        assert f(*args) == int3


@EVERY_STORE
def test_cachier_ignore_cache(cache_dir: Path) -> None:
    """cachier test_ignore_cache: cachier__skip_cache=True is memojar.disabled(f): the call
    computes and neither reads nor replaces the entry."""
    no_arg, with_arg = _random_functions(Cache(cache_dir))
    for f, args in ((no_arg, ()), (with_arg, ("a",))):
        int1 = f(*args)
        assert f(*args) == int1
        with memojar.disabled(f):
            int3 = f(*args)
        assert int3 != int1
        assert f(*args) == int1


def _two_threads(f: Any, *args: Any, delay: float = 0.3) -> list[Any]:
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(f(*args)), daemon=True)
               for _ in range(2)]
    threads[0].start()
    time.sleep(delay)  # the second arrives while the first computes (either order is fine)
    threads[1].start()
    for t in threads:
        t.join(60)
    return results


@EVERY_STORE
def test_cachier_pickle_being_calculated(cache_dir: Path) -> None:
    """cachier test_pickle_being_calculated: a call arriving while the same call computes
    waits for it and returns its value; the function runs once."""
    calls: list[float] = []

    @Cache(cache_dir).cached
    def takes_time(arg_1: float, arg_2: float) -> float:
        calls.append(arg_1)
        time.sleep(1)
        return random.random() + arg_1 + arg_2

    res1, res2 = _two_threads(takes_time, 0.13, 0.02)
    assert res1 == res2
    assert len(calls) == 1


@EVERY_STORE
def test_cachier_being_calc_next_time(cache_dir: Path) -> None:
    """cachier test_being_calc_next_time: two calls in the stale window both get the stale
    value at once while one recomputation runs."""
    calls: list[float] = []
    go = threading.Event()  # the recomputation runs until both calls in the window returned

    @Cache(cache_dir).cached(ttl=0.3, stale_while_revalidate=60)
    def being_calc(arg_1: float, arg_2: float) -> float:
        calls.append(arg_1)
        if calls[1:]:
            go.wait(30)
        return random.random() + arg_1 + arg_2

    first = being_calc(0.13, 0.02)
    time.sleep(0.4)
    # (Held by ``go``, not for a fixed 0.5 s: on a loaded machine, or a slow moto or Redis,
    # the second call came after the recomputation had stored its value, and got it.)
    start = time.monotonic()
    assert _two_threads(being_calc, 0.13, 0.02, delay=0.1) == [first, first]
    assert time.monotonic() - start < 20  # at once, not after the recomputation (30 s)
    _wait_for(lambda: len(calls) >= 2)
    time.sleep(0.2)  # a second recomputation the two started would have begun by now
    assert len(calls) == 2  # one recomputation (counted before the new value can be stale)
    go.set()
    _wait_for(lambda: being_calc(0.13, 0.02) != first)


@pytest.mark.parametrize("damage", ["truncate", "empty", "overwrite"])
def test_cachier_bad_cache_file(cache_dir: Path, damage: str) -> None:
    """cachier test_bad_cache_file: an entry file emptied, cut short or overwritten by
    someone else is a miss, recomputed; never an error or a wrong value. (cachier, one file
    per function, returns None there; with separate files it never sees a bad file.)"""
    calls: list[float] = []

    @Cache(cache_dir).cached
    def bad_cache(arg_1: float, arg_2: float) -> float:
        calls.append(arg_1)
        return arg_1 + arg_2 + len(calls)

    assert bad_cache(0.13, 0.02) == 0.13 + 0.02 + 1
    (entry,) = Path(cache_dir).rglob("*.pkl")
    size = entry.stat().st_size
    with open(entry, "r+b") as f:
        if damage == "overwrite":  # the value's bytes changed, the size kept
            f.seek(size - 12)
            f.write(b"\x00" * 8)
        else:
            f.truncate(0 if damage == "empty" else size // 2)
    assert bad_cache(0.13, 0.02) == 0.13 + 0.02 + 2
    assert bad_cache(0.13, 0.02) == 0.13 + 0.02 + 2


def test_cachier_delete_cache_file(cache_dir: Path) -> None:
    """cachier test_delete_cache_file: the entry file removed by the first caller just after
    its computation: a caller that was waiting for it still gets a value (cachier, one
    file per function, gives KeyError or None there)."""
    calls: list[float] = []

    @Cache(cache_dir).cached
    def delete_cache(arg_1: float, arg_2: float) -> float:
        calls.append(arg_1)
        time.sleep(0.5)
        return random.random() + arg_1 + arg_2

    def remove_after() -> float:
        value = delete_cache(0.13, 0.02)
        for entry in Path(cache_dir).rglob("*.pkl"):
            entry.unlink()
        return value

    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(remove_after()))
    first.start()
    time.sleep(0.2)
    second = delete_cache(0.13, 0.02)
    first.join(60)
    assert isinstance(second, float) and isinstance(results[0], float)
    assert second in (results[0], delete_cache(0.13, 0.02))


def test_cachier_error_throwing_func(cache_dir: Path) -> None:
    """cachier test_error_throwing_func: the recomputation of a stale entry (next_time)
    raises; the call still returns the stale value."""
    count = [0]

    @Cache(cache_dir).cached(ttl=0.3, stale_while_revalidate=60)
    def error_throwing(arg1: int) -> int:
        count[0] += 1
        if count[0] > 1:
            raise ValueError("Tiny Rick!")
        return 7

    logger = logging.getLogger("memojar")
    level, logger.disabled = logger.level, True  # the failed background run logs a warning
    try:
        res1 = error_throwing(4)
        time.sleep(0.4)
        assert error_throwing(4) == res1
        _wait_for(lambda: count[0] == 2)
        assert error_throwing(4) == res1
    finally:
        logger.disabled = False
        logger.setLevel(level)


@EVERY_STORE
def test_cachier_callable_hash_param(cache_dir: Path) -> None:
    """cachier test_callable_hash_param: a hash_func (key=) that hashes DataFrames by
    content: equal frames, positional or keyword, are one entry."""
    pd = pytest.importorskip("pandas")

    def hash_func(*args: Any, **kwargs: Any) -> Any:
        def _hash(obj: Any) -> Any:
            if isinstance(obj, pd.DataFrame):
                return pd.util.hash_pandas_object(obj).values.tobytes()
            return obj

        return tuple(map(_hash, args)), sorted((k, _hash(v)) for k, v in kwargs.items())

    @Cache(cache_dir).cached(key=hash_func)
    def params_with_dataframe(*args: Any, **kwargs: Any) -> float:
        return random.random()

    df_a = pd.DataFrame.from_dict({"a": [0], "b": [2], "c": [3]})
    df_b = pd.DataFrame.from_dict({"a": [0], "b": [2], "c": [3]})
    assert params_with_dataframe(df_a, 1) == params_with_dataframe(df_b, 1)
    assert params_with_dataframe(1, df=df_a) == params_with_dataframe(1, df=df_b)
    assert params_with_dataframe(1, df=df_a) != params_with_dataframe(df_a, 1)


def test_cachier_default_hash_of_dataframes_and_arrays(cache_dir: Path) -> None:
    """cachier's default hash_func (pickle of the arguments) on pandas and numpy arguments:
    equal content is one entry, other content another; without a key=."""
    pd = pytest.importorskip("pandas")
    calls: list[Any] = []

    @Cache(cache_dir).cached
    def total(frame: Any, array: Any) -> float:
        calls.append(1)
        return float(frame.to_numpy().sum() + array.sum())

    def frame(c: int) -> Any:
        return pd.DataFrame.from_dict({"a": [0], "b": [2], "c": [c]})

    arr = np.arange(4.0)
    assert total(frame(3), arr) == total(frame(3), arr.copy()) == 11.0
    assert total(frame(4), arr) == 12.0
    assert total(frame(3), np.arange(4.0)[::-1].copy()) == 11.0
    assert total(frame(3), np.arange(4, dtype=np.int64)) == 11.0
    assert len(calls) == 4


def test_cachier_wait_for_calc_timeout_ok(cache_dir: Path) -> None:
    """cachier test_wait_for_calc_timeout_ok: a computation shorter than lock_timeout
    (wait_for_calc_timeout) is waited for: one computation."""
    calls: list[int] = []

    @Cache(cache_dir, lock_timeout=30).cached
    def fast(arg_1: int, arg_2: int) -> float:
        calls.append(arg_1)
        time.sleep(0.5)
        return random.random() + arg_1 + arg_2

    val1 = fast(1, 2)
    assert fast(1, 2) == val1
    fast.cache_clear()
    res1, res2 = _two_threads(fast, 1, 2, delay=0.1)
    assert res1 == res2 and len(calls) == 2


def test_cachier_wait_for_calc_timeout_slow(cache_dir: Path) -> None:
    """cachier test_wait_for_calc_timeout_slow: past lock_timeout a waiting caller computes
    itself (with a MemojarWarning), and a later call returns one of the values."""
    release = threading.Event()

    @Cache(cache_dir, lock_timeout=0.3).cached
    def slow(arg_1: int, arg_2: int) -> float:
        if threading.current_thread() is not threading.main_thread():
            release.wait(60)
        return random.random() + arg_1 + arg_2

    results: list[float] = []
    holder = threading.Thread(target=lambda: results.append(slow(1, 2)))
    holder.start()
    _wait_for(lambda: bool(list(Path(cache_dir).rglob("*.lock"))) or not holder.is_alive())
    time.sleep(0.1)
    with pytest.warns(MemojarWarning, match="computing"):
        res3 = slow(1, 2)
    release.set()
    holder.join(60)
    assert results[0] != res3
    assert slow(1, 2) in (results[0], res3)


@EVERY_STORE
def test_cachier_precache_value(cache_dir: Path) -> None:
    """cachier test_precache_value: cache_set stores a value for a call, positional or by
    keyword; cache_clear forgets it."""
    @Cache(cache_dir).cached
    def dummy(arg_1: int, arg_2: int) -> int:
        return arg_1 + arg_2

    dummy.cache_set(5, 2, 2)
    assert dummy(2, 2) == 5
    dummy.cache_clear()
    assert dummy(2, 2) == 4
    dummy.cache_set(5, 2, arg_2=2)
    assert dummy(2, arg_2=2) == dummy(2, 2) == 5


def test_cachier_ignore_self_in_methods(cache_dir: Path) -> None:
    """cachier test_ignore_self_in_methods: with self ignored, two instances share entries
    (cachier ignores self by default; memojar keys on self unless told)."""
    calls: list[Any] = []
    cache = Cache(cache_dir)

    class Dummy:
        @cache.cached(ignore=("self",))
        def takes_2_seconds(self, arg_1: int, arg_2: int) -> int:
            calls.append((arg_1, arg_2))
            return arg_1 + arg_2

    assert Dummy().takes_2_seconds(1, 2) == Dummy().takes_2_seconds(1, 2) == 3
    assert len(calls) == 1


def test_cachier_separate_processes(tmp_path: Path) -> None:
    """cachier test_separate_processes: a script run twice: the second run hits."""
    script = tmp_path / "standalone_script.py"
    log = tmp_path / "calls.log"
    script.write_text(textwrap.dedent(f"""
        import memojar

        @memojar.cached(cache_dir={str(tmp_path / "cache")!r})
        def takes_3_seconds(label, value):
            with open({str(log)!r}, "a") as f:
                f.write("call\\n")
            return f"{{label}} {{value}}"

        print(takes_3_seconds("two", 2))
    """))
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=60)
        assert (proc.returncode, proc.stdout.strip()) == (0, "two 2"), proc.stderr
    assert log.read_text() == "call\n"


def test_cachier_global_disable(cache_dir: Path) -> None:
    """cachier test_global_disable, test_global_disable_method*: memojar.disabled() calls
    every function straight through (methods with and without defaults too) and leaves
    the entries as they were."""
    cache = Cache(cache_dir)
    get_random = cache.cached(lambda: random.random())

    class Test:
        def __init__(self, val: int) -> None:
            self.val = val

        @cache.cached(ignore=("self",))
        def test(self, test1: int, test2: int = 0) -> int:
            return self.val + test1 + test2

    result_1, result_2 = get_random(), get_random()
    assert Test(1).test(2, 3) == 6
    with memojar.disabled():
        result_3 = get_random()
        assert Test(2).test(2, 3) == 7  # self is ignored, but nothing is read
    assert result_1 == result_2 == get_random() != result_3
    assert Test(2).test(2, 3) == 6


def test_cachier_enable_and_disable_caching_after_decorator_definition(
    cache_dir: Path,
) -> None:
    """cachier test_caching_regression: a function decorated while caching is off caches
    once it is back on; one decorated while on calls through while off."""
    calls: list[str] = []
    with memojar.disabled():
        @Cache(cache_dir).cached
        def test_func(param: str) -> str:
            calls.append(param)
            return f"result_{param}"

        assert test_func("a") == test_func("a") == "result_a"
        assert len(calls) == 2
    assert test_func("a") == test_func("a") == "result_a"
    assert test_func("b") == test_func("b") == "result_b"
    assert calls == ["a", "a", "a", "b"]
    with memojar.disabled():
        assert test_func("b") == "result_b"
    assert calls == ["a", "a", "a", "b", "b"]


@EVERY_STORE
def test_cachier_allow_caching_none(cache_dir: Path) -> None:
    """cachier test_allow_caching_none (test_none_not_cached_by_default is the difference
    kept: memojar caches None always, as API.md says)."""
    count = [0]

    @Cache(cache_dir).cached
    def do_operation() -> None:
        count[0] += 1

    do_operation()
    do_operation()
    assert count == [1]


def test_cachier_identical_list_and_order_independent_inputs(cache_dir: Path) -> None:
    """cachier test_identical_inputs, test_list_inputs, test_order_independent_kwargs_handling:
    positional, keyword and default forms of one call are one entry."""
    calls: list[Any] = []
    cache = Cache(cache_dir)

    @cache.cached
    def dummy(a: int, b: int = 2, c: int = 3) -> int:
        calls.append("dummy")
        return a + b + c

    @cache.cached
    def lists(a: list[int], b: list[int] = [2]) -> list[int]:  # noqa: B006
        calls.append("lists")
        return a + b

    assert dummy(1, 2, 3) == dummy(1, 2, c=3) == dummy(1, b=2, c=3) == dummy(a=1, b=2, c=3) \
        == dummy(c=3, a=1) == dummy(1) == 6
    assert lists([1]) == lists([1], [2]) == lists([1], b=[2]) == lists(a=[1], b=[2]) == [1, 2]
    assert calls == ["dummy", "lists"]


def plus_and_minus() -> tuple[dict[str, int], Callable[..., int], Callable[..., int]]:
    """cachier's two test functions of the same arguments, counting their calls."""
    count = {"plus": 0, "minus": 0}

    def fn_plus(a: int, b: int = 2) -> int:
        count["plus"] += 1
        return a + b

    def fn_minus(a: int, b: int = 2) -> int:
        count["minus"] += 1
        return a - b

    return count, fn_plus, fn_minus


def test_cachier_diff_functions_same_args_and_runtime_handling(cache_dir: Path) -> None:
    """cachier test_diff_functions_same_args, test_runtime_handling: two functions with the
    same arguments keep their own entries, also when decorated anew at each call."""
    count, fn_plus, fn_minus = plus_and_minus()
    decorate = Cache(cache_dir).cached
    for fn, expected in [(fn_plus, 3), (fn_minus, -1)]:
        assert decorate(fn)(1) == decorate(fn)(1, 2) == decorate(fn)(a=1, b=2) == expected
    for fn, expected in [(fn_plus, 5), (fn_minus, 1)]:
        assert decorate(fn)(3, 2) == decorate(fn)(a=3, b=2) == expected
    assert count == {"plus": 2, "minus": 2}


def test_cachier_partial_handling(cache_dir: Path) -> None:
    """cachier test_partial_handling: a partial is its function with those arguments: its
    calls and the equal plain calls are one entry."""
    count, fn_plus, fn_minus = plus_and_minus()
    decorate = Cache(cache_dir).cached
    for fn, expected in [(fn_plus, 3), (fn_minus, -1)]:
        assert decorate(functools.partial(fn, 1))() == expected
        assert decorate(functools.partial(fn, 1))(2) == expected
        assert decorate(functools.partial(fn, a=1))() == expected
        assert decorate(functools.partial(fn, b=2))(1) == expected
        assert decorate(functools.partial(fn, b=2))(1, b=2) == expected
        assert decorate(fn)(1, 2) == decorate(fn)(a=1, b=2) == expected
    assert count == {"plus": 1, "minus": 1}


@EVERY_STORE
def test_cachier_raise_exception(cache_dir: Path) -> None:
    """cachier test_raise_exception: an exception propagates every time, never cached."""
    calls: list[int] = []

    @Cache(cache_dir).cached
    def tmp_test(_: int) -> None:
        calls.append(_)
        raise RuntimeError("always raise")

    for _ in range(2):
        with pytest.raises(RuntimeError, match="always raise"):
            tmp_test(123)
    assert calls == [123, 123]


def test_cachier_varargs(cache_dir: Path) -> None:
    """cachier tests/test_varargs.py: *args, **kwargs, keyword-only parameters with and
    without defaults, positional-only ones and None / "" / 0 among the varargs: different
    calls differ, equal calls hit."""
    calls: list[Any] = []

    @Cache(cache_dir).cached
    def complex_params(a: Any, /, b: Any, *args: Any, c: Any, d: Any = 4,
                       **kwargs: Any) -> Any:
        calls.append(1)
        return (a, b, args, c, d, kwargs)

    cases = [((1, 2), {"c": 3}), ((1, 2), {"c": 3, "d": 4}), ((1, 2, 3), {"c": 3}),
             ((1, 2, None), {"c": 3}), ((1, 2, ""), {"c": 3}), ((1, 2, 0), {"c": 3}),
             ((1, 2, 0, 0), {"c": 3}), ((1, 2), {"c": 3, "e": 5}), ((1, 2), {"c": 3, "d": 5}),
             ((1,), {"b": 2, "c": 3}), ((1, 2), {"c": None})]
    for _ in range(2):
        for args, kwargs in cases:
            a, b, *rest = args + (() if len(args) > 1 else (kwargs["b"],))
            expected = (a, b, tuple(rest), kwargs["c"], kwargs.get("d", 4),
                        {k: v for k, v in kwargs.items() if k not in "bcd"})
            assert complex_params(*args, **kwargs) == expected
    assert len(calls) == 9  # d=4 is the default; b by keyword is b


@EVERY_STORE
def test_cachier_cleanup_stale_entries(cache_dir: Path) -> None:
    """cachier test_cleanup_stale_entries (cleanup_stale): prune() removes stale entries and
    keeps fresh ones."""
    cache = Cache(cache_dir)

    @cache.cached(ttl=0.2)
    def short(x: int) -> int:
        return x

    @cache.cached(ttl=3600)
    def long(x: int) -> int:
        return -x

    assert [short(1), short(2), long(1)] == [1, 2, -1]
    time.sleep(0.3)
    # Redis drops expired entries by itself (ttl is its expiry): nothing left to prune.
    assert cache.prune() == (0 if str(cache_dir).startswith("redis:") else 2)
    assert [e.function.rpartition(".")[2] for e in cache.entries()] == ["long"]
    assert long.cache_contains(1)


@EVERY_STORE
def test_cachier_async_skip_overwrite_methods_and_gather(cache_dir: Path) -> None:
    """cachier test_async_core TestCacheControl (skip_cache, overwrite_cache), TestAsyncMethod
    (test_shares_cache_across_instances, with self ignored), TestConcurrentAccess
    (test_consequent_calls_use_cache; test_calls_execute_in_parallel computes three times
    in cachier, once in memojar) and test_async_pickle_basic_caching."""
    cache = Cache(cache_dir)
    call_count = [0]

    @cache.cached
    async def async_func(x: int) -> int:
        call_count[0] += 1
        await asyncio.sleep(0.05)
        return call_count[0] * 10

    class MyClass:
        def __init__(self, value: int) -> None:
            self.value = value

        @cache.cached(ignore=("self",))
        async def async_method(self, x: int) -> int:
            await asyncio.sleep(0.05)
            return x * self.value

    async def main() -> list[Any]:
        gathered = await asyncio.gather(async_func(5), async_func(5), async_func(5))
        with memojar.disabled(async_func):
            skipped = await async_func(5)
        after_skip = await async_func(5)
        overwritten = await async_func.refresh(5)
        after_overwrite = await asyncio.gather(async_func(5), async_func(5))
        shared = [await MyClass(2).async_method(5), await MyClass(3).async_method(5)]
        return [gathered, skipped, after_skip, overwritten, after_overwrite, shared]

    assert asyncio.run(main()) == [[10, 10, 10], 20, 10, 30, [30, 30], [10, 10]]
    assert call_count == [3]


def test_cachier_async_next_time_returns_stale_then_updates(cache_dir: Path) -> None:
    """cachier test_async_pickle_next_time_returns_stale_then_updates and
    test_stale_entry_being_processed_with_next_time: calls on a stale entry, one while
    another is under way, return the stale value; a later call the recomputed one."""
    call_count = [0]

    @Cache(cache_dir).cached(ttl=0.3, stale_while_revalidate=60)
    async def slow(x: int) -> int:
        call_count[0] += 1
        await asyncio.sleep(0.3 if call_count[0] > 1 else 0)
        return call_count[0] * 10

    async def main() -> list[int]:
        seen = [await slow(5)]
        await asyncio.sleep(0.4)
        task1 = asyncio.create_task(slow(5))
        await asyncio.sleep(0.05)
        seen += [await slow(5), await task1]
        for _ in range(1500):
            await asyncio.sleep(0.02)
            if await slow(5) > 10:
                seen.append(await slow(5))
                break
        return seen

    assert asyncio.run(main()) == [10, 10, 10, 20]


@pytest.mark.parametrize("memory", [None, 8])
@EVERY_STORE
def test_cachier_metrics_hit_miss_stale_and_thread_safety(cache_dir: Path,
                                                          memory: int | None) -> None:
    """cachier test_metrics_hit_miss_tracking, test_metrics_stale_hit_tracking (a stale
    entry is a miss, recalculated), test_metrics_thread_safety (hits + misses are every
    call): cache_info's counts, with and without the memory tier (which a cache on a
    server does without, saying so)."""
    def decorate(ttl: float | None = None) -> Any:
        def apply(f: Any) -> Any:
            if memory and not isinstance(cache_dir, Path):
                with pytest.warns(MemojarWarning, match="not used: .*a cache on a server"):
                    return Cache(cache_dir).cached(ttl=ttl, memory=memory)(f)
            return Cache(cache_dir).cached(ttl=ttl, memory=memory)(f)

        return apply

    # ttl 1.5 s, not cachier's 0.3 s: on a loaded 2-core machine a first store on S3 (moto)
    # took longer than 0.3 s, so the second call found its entry stale, a miss (seen once).
    @decorate(ttl=1.5)
    def test_func(x: int) -> int:
        time.sleep(0.001)
        return x * 2

    assert test_func(5) == 10
    assert test_func.cache_info()[:2] == (0, 1)
    assert test_func(5) == 10
    assert test_func.cache_info()[:2] == (1, 1)
    assert test_func(10) == 20
    assert test_func.cache_info()[:2] == (1, 2)
    time.sleep(1.6)
    assert test_func(5) == 10
    assert test_func.cache_info()[:2] == (1, 3)

    @decorate()
    def threaded(x: int) -> int:
        time.sleep(0.001)
        return x * 2

    def worker() -> None:
        for i in range(10):
            assert threaded(i % 5) == (i % 5) * 2

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert threaded.cache_info()[:2] == (45, 5)


@EVERY_STORE
def test_cachier_entry_size_limit(cache_dir: Path) -> None:
    """cachier test_entry_size_limit_not_cached / _cached (entry_size_limit): memojar's
    limit is the cache's max_size; a result whose entry is larger is returned, not stored,
    with a warning; a small one is stored."""
    calls: list[int] = []
    cache = Cache(cache_dir, max_size=2000)

    @cache.cached
    def func(x: int) -> str:
        calls.append(x)
        return "a" * 5000 if x else "small"

    with pytest.warns(MemojarWarning, match="larger than the cache's max_size"):
        assert func(1) == func(1) == "a" * 5000
    assert func(0) == func(0) == "small"
    assert calls == [1, 1, 0]
    assert not func.cache_contains(1) and func.cache_contains(0)


def test_cachier_instance_method_skip_cache_and_classmethod(cache_dir: Path) -> None:
    """cachier test_instance_method_skip_cache (memojar.disabled on the bound method) and
    test_classmethod_not_guarded (@classmethod above the decorator)."""
    call_count = [0]
    cache = Cache(cache_dir)

    class Foo:
        @cache.cached(ignore=("self",))
        def method(self, x: int) -> int:
            call_count[0] += 1
            return x * 2

        @classmethod
        @cache.cached(ignore=("cls",))
        def cmethod(cls, x: int) -> int:
            return x + 1

    obj = Foo()
    assert obj.method(5) == obj.method(5) == 10
    with memojar.disabled(obj.method):
        assert obj.method(5) == 10
    assert obj.method(5) == 10
    assert call_count == [2]
    assert Foo.cmethod(2) == Foo.cmethod(2) == 3
    assert Foo.cmethod.cache_clear() == 1


@EVERY_STORE
def test_cachier_default_kwargs_and_clear_with_a_nonlocal_counter(cache_dir: Path) -> None:
    """cachier test_default_kwargs_handling, test_order_independent_kwargs_handling and
    test_smoke's test_clear_cache, counting with ``nonlocal count`` (an int the function
    rebinds at each computation): the forms of one call hit; clear_cache makes it compute
    again."""
    count = 0

    @Cache(cache_dir).cached
    def dummy_func(a: int, b: int = 2) -> int:
        nonlocal count
        count += 1
        return a + b

    assert dummy_func.cache_clear() == 0
    assert dummy_func(1) == dummy_func(a=1) == dummy_func(a=1, b=2) == dummy_func(b=2, a=1) \
        == 3
    assert count == 1
    assert dummy_func.cache_clear() == 1
    assert dummy_func(1) == 3
    assert count == 2


# --- diskcache ----------------------------------------------------------------------------
# From grantjenks/python-diskcache tests/test_core.py and tests/test_fanout.py (the memoize
# tests), tests/test_recipes.py (memoize_stampede) and tests/test_djangocache.py, on the
# file store. diskcache's expire= is ttl=, __cache_key__ is cache_key, cache.stats() is
# cache_info(), and memoize_stampede's early recomputation is stale_while_revalidate=.

def _fibiter(num: int) -> int:
    alpha, beta = 0, 1
    for _ in range(num):
        alpha, beta = beta, alpha + beta
    return alpha


def test_diskcache_memoize(cache_dir: Path) -> None:
    """diskcache test_core/test_fanout/test_djangocache test_memoize: a recursive function
    whose calls hit its own entries; a second pass is all hits, no miss."""
    count = 300

    @Cache(cache_dir).cached
    def fibrec(num: int) -> int:
        if num == 0:
            return 0
        if num == 1:
            return 1
        return fibrec(num - 1) + fibrec(num - 2)

    for value in range(count):
        assert fibrec(value) == _fibiter(value)
    hits1, misses1 = fibrec.cache_info()[:2]
    for value in range(count):
        assert fibrec(value) == _fibiter(value)
    hits2, misses2, entries = fibrec.cache_info()[:3]
    assert (hits2, misses2, entries) == (hits1 + count, misses1, count)


def test_diskcache_memoize_kwargs_typed(cache_dir: Path) -> None:
    """diskcache test_memoize_kwargs (typed=True): *args and **kwargs come back as passed, and
    arguments of different types are different calls (memojar is always typed)."""
    calls: list[Any] = []

    @Cache(cache_dir).cached
    def foo(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return args, kwargs

    for _ in range(2):
        assert foo(1, 2, 3, a=4, b=5) == ((1, 2, 3), {"a": 4, "b": 5})
        assert foo(1.0, 2, 3, a=4, b=5.0) == ((1.0, 2, 3), {"a": 4, "b": 5.0})
        assert [type(x) for x in foo(3)[0] + foo(3.0)[0]] == [int, float]
    assert len(calls) == 4


def test_diskcache_memoize_ignore(cache_dir: Path) -> None:
    """diskcache test_memoize_ignore: ignored arguments do not change the key (two hits, one
    miss). memojar names parameters: diskcache's positional index and a key inside
    **kwargs are refused with a message saying what ignore= takes."""
    @Cache(cache_dir).cached(ignore=("arg_b", "arg1"))
    def test(arg_a: str, arg_b: str, arg_c: str, *, arg0: str, arg1: str, arg2: str) -> Any:
        return arg_a, arg_c, arg0, arg2

    assert test("a", "b", "c", arg0="d", arg1="e", arg2="f")
    assert test("a", "w", "c", arg0="d", arg1="x", arg2="f")
    assert test("a", "y", "c", arg0="d", arg1="z", arg2="f")
    assert test.cache_info()[:2] == (2, 1)

    def star(*args: Any, **kwargs: Any) -> Any:
        return args, kwargs

    with pytest.raises(TypeError, match="takes parameter names"):
        Cache(cache_dir).cached(ignore=(1,))(star)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'arg1', which is not a parameter"):
        Cache(cache_dir).cached(ignore=("arg1",))(star)


def test_diskcache_memoize_iter(cache_dir: Path) -> None:
    """diskcache test_memoize_iter: positional, keyword and mixed calls are three entries,
    each holding its own result."""
    cache = Cache(cache_dir)

    @cache.cached
    def test(*args: int, **kwargs: int) -> int:
        return sum(args) + sum(kwargs.values())

    assert test(1, 2, 3) == test(a=1, b=2, c=3) == test(-1, 0, 1, a=1, b=2, c=3) == 6
    entries = list(cache.entries())
    assert len(entries) == 3
    assert {test(*a, **k) for a, k in [((1, 2, 3), {}), ((), {"a": 1, "b": 2, "c": 3})]} == {6}
    assert test.cache_info()[:2] == (2, 3)


def test_diskcache_cache_key_and_delete(cache_dir: Path) -> None:
    """diskcache memoize's ``__cache_key__`` (``key = fib.__cache_key__(100); del
    cache[key]``): cache_key names the call's entry, cache_delete removes it."""
    calls: list[int] = []

    @Cache(cache_dir).cached
    def fib(number: int) -> int:
        calls.append(number)
        return _fibiter(number)

    assert fib(100) == 354224848179261915075
    key = fib.cache_key(100)
    assert key == fib.cache_key(number=100) != fib.cache_key(99)
    assert int(key, 16) >= 0
    assert fib.cache_delete(100) and not fib.cache_delete(100)
    assert fib(100) == 354224848179261915075
    assert calls == [100, 100]


def test_diskcache_memoize_expire(cache_dir: Path) -> None:
    """diskcache memoize(expire=): an entry older than ttl is recomputed, not returned."""
    calls: list[int] = []

    @Cache(cache_dir).cached(ttl=0.2)
    def f(x: int) -> int:
        calls.append(x)
        return len(calls)

    assert f(1) == f(1) == 1
    time.sleep(0.3)
    assert not f.cache_contains(1)
    assert f(1) == f(1) == 2


def test_diskcache_memoize_stampede(cache_dir: Path) -> None:
    """diskcache test_recipes test_memoize_stampede: a short-lived entry called in a loop
    keeps returning the value and is recomputed (in the background, once at a time)."""
    state = {"num": 0}

    @Cache(cache_dir).cached(ttl=0.1, stale_while_revalidate=60)
    def worker(num: int) -> int:
        time.sleep(0.01)
        state["num"] += 1
        return num

    start = time.monotonic()
    while time.monotonic() - start < 1:
        assert worker(100) == 100
    _wait_for(lambda: worker(100) == 100 and state["num"] >= 2)


def test_diskcache_memoize_threads_compute_once(cache_dir: Path) -> None:
    """diskcache's memoize under threads (stress_test_core's threads): every thread gets the
    value; memojar computes it once (diskcache's memoize may compute it in each)."""
    calls: list[int] = []
    start = threading.Barrier(8)

    @Cache(cache_dir).cached
    def slow(x: int) -> float:
        calls.append(x)
        time.sleep(0.3)
        return random.random()

    results: list[float] = []

    def call() -> None:
        start.wait(30)
        results.append(slow(1))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 8 and len(set(results)) == 1
    assert calls == [1]


def test_diskcache_memoize_processes_compute_once(tmp_path: Path) -> None:
    """diskcache's memoize under processes (stress_test_core's processes,
    stress_test_index_mp): every process gets the value, computed once."""
    log = tmp_path / "calls.log"
    code = textwrap.dedent(f"""
        import random, sys, time
        import memojar

        @memojar.cached(cache_dir={str(tmp_path / "cache")!r})
        def slow(x):
            with open({str(log)!r}, "a") as f:
                f.write("call\\n")
            time.sleep(1)
            return random.random()

        while time.time() < float(sys.argv[1]):  # start together
            time.sleep(0.01)
        print(slow(1))
    """)
    at = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", code, at], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1
    assert log.read_text() == "call\n"


# diskcache's Cache tests whose behaviour memojar's Cache has: eviction by size
# (test_least_recently_used, test_size_limit_with_files), test_evict (tags: memojar groups
# entries by function), test_clear and test_stats.

def test_diskcache_least_recently_used(cache_dir: Path) -> None:
    """diskcache test_least_recently_used (eviction_policy='least-recently-used',
    size_limit): entries read since they were stored survive a write over max_size, the
    least recently used ones go, and the total stays within max_size plus the new entry."""
    block = 100_000

    def blob(n: int) -> bytes:
        return bytes([n]) * block

    probe = Cache(Path(cache_dir).parent / "probe").cached(blob)
    probe(0)
    entry_size = probe.cache_info().bytes
    max_size = int(10.1 * entry_size)
    cache = Cache(cache_dir, max_size=max_size)
    stored = cache.cached(blob)
    for value in range(10):
        stored(value)
    assert stored.cache_info().entries == 10
    time.sleep(0.05)
    for value in [0, 1, 7, 8, 9]:
        assert stored(value) == blob(value)
    stored(10)
    left = {v for v in range(11) if stored.cache_contains(v)}
    assert {0, 1, 7, 8, 9, 10} <= left and len(left) < 11
    assert stored.cache_info().bytes <= max_size + entry_size
    hits = stored.cache_info().hits
    for value in [0, 1, 7, 8, 9, 10]:
        assert stored(value) == blob(value)
    assert stored.cache_info().hits == hits + 6


def test_diskcache_size_limit_with_files(cache_dir: Path) -> None:
    """diskcache test_size_limit_with_files: 40 entries written into a cache of 30 entries'
    size end within it (memojar evicts at each write, not at a later cull())."""
    value = b"foo" * 4096

    probe = Cache(Path(cache_dir).parent / "probe").cached(lambda key: value)
    probe(0)
    entry_size = probe.cache_info().bytes
    cache = Cache(cache_dir, max_size=30 * entry_size)
    f = cache.cached(lambda key: value)
    for key in range(40):
        assert f(key) == value
    assert cache.stats().bytes <= 30 * entry_size
    assert cache.stats().entries <= 30


def test_diskcache_evict_by_tag_and_clear(cache_dir: Path) -> None:
    """diskcache test_evict (entries set with a tag, evict(tag) removes those) and
    test_clear: memojar's grouping is the function, cache.clear(function) by name or by
    the function itself, cache.clear() for all."""
    cache = Cache(cache_dir)

    @cache.cached
    def red(v: int) -> int:
        return v

    @cache.cached
    def blue(v: int) -> int:
        return v

    @cache.cached
    def yellow(v: int) -> int:
        return v

    colors = (red, blue, yellow)
    for value in range(90):
        assert colors[value % 3](value) == value
    assert cache.stats().entries == 90
    assert cache.clear(red) == 30
    assert cache.stats().entries == 60
    assert cache.clear(f"{blue.__module__}.{blue.__qualname__}") == 30
    assert {e.function.rpartition(".")[2] for e in cache.entries()} == {"yellow"}
    assert cache.clear() == 30
    assert cache.stats().entries == 0


def test_diskcache_stats(cache_dir: Path) -> None:
    """diskcache test_stats: a hundred hits and ten misses are counted as such."""
    cache = Cache(cache_dir)
    f = cache.cached(lambda x: x)
    f(0)
    before = cache.stats()
    for _ in range(100):
        f(0)
    for x in range(1, 11):
        f(x)
    after = cache.stats()
    assert (after.hits - before.hits, after.misses - before.misses) == (100, 10)
    assert after.entries == 11
