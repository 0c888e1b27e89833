"""Behaviours of the peers' own test suites that apply to a disk cache, ported.

From CPython's ``Lib/test/test_functools.py`` (``TestLRU``): star arguments, bpo-36650
(``f()`` and ``f(**{})``), exceptions not cached, typed keys, methods of equal-valued
instances, ``copy``/``deepcopy``/``pickle`` of the decorated function, weak references.
From joblib's ``joblib/test/test_memory.py``: a function redefined in the same session,
lambdas that share a name, ``ignore=``, keyword-only arguments, and results the caller
mutates. (The in-memory parts, ``maxsize`` and ``cache_parameters``, do not apply.)
"""

from __future__ import annotations

import copy
import decimal
import fractions
import pickle
import textwrap
import weakref
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python
from memojar import Cache, MemojarWarning

np = pytest.importorskip("numpy")


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
