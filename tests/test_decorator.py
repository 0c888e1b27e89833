"""The ``@cached`` decorator: forms, options, what is cached, methods, async, attributes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import memojar._decorator
import memojar._identity
from conftest import traced_peak, views_left_in_a_collection
from memojar import Cache, CacheInfo, MemojarWarning, cached


class Clock:
    """Stands in for the ``time`` module inside memojar._decorator."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    @staticmethod
    def perf_counter() -> float:
        return time.perf_counter()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(memojar._decorator, "time", c)
    return c


def counting(calls: list[Any]):
    """A function that records its calls and returns its argument doubled."""

    def double(x, y=0):
        calls.append((x, y))
        return 2 * x + y

    return double


def entry_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.pkl"))


# --- forms --------------------------------------------------------------------------------

def test_bare_form_uses_the_default_directory(tmp_path: Path) -> None:
    calls: list[Any] = []

    @cached
    def f(x):
        calls.append(x)
        return x + 1

    assert f(1) == 2
    assert f(1) == 2
    assert calls == [1]
    assert len(entry_files(tmp_path / "default-cache")) == 1


def test_called_form_without_options(tmp_path: Path) -> None:
    calls: list[Any] = []

    @cached()
    def f(x):
        calls.append(x)
        return x

    assert f(3) == f(3) == 3
    assert calls == [3]
    assert len(entry_files(tmp_path / "default-cache")) == 1


@pytest.mark.file_only("it looks at the entry files")
def test_called_form_with_a_directory(cache_dir: Path) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    assert f(2) == f(2) == 4
    assert calls == [(2, 0)]
    assert len(entry_files(cache_dir)) == 1


def test_cache_dir_accepts_a_path_object_and_a_str(cache_dir: Path) -> None:
    calls: list[Any] = []
    raw = counting(calls)
    cached(cache_dir=cache_dir)(raw)(1)
    cached(cache_dir=str(cache_dir))(raw)(1)
    assert calls == [(1, 0)]


def test_equivalent_calls_share_one_entry(cache_dir: Path) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    assert f(1) == f(1, 0) == f(x=1) == f(1, y=0) == f(y=0, x=1) == 2
    assert calls == [(1, 0)]


def test_different_arguments_compute_separately(cache_dir: Path) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    assert [f(1), f(2), f(1, 1), f(1), f(2)] == [2, 4, 3, 2, 4]
    assert calls == [(1, 0), (2, 0), (1, 1)]


def test_wrong_arguments_raise_what_the_function_would(cache_dir: Path) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    with pytest.raises(TypeError, match=r"double\(\) missing 1 required positional argument"):
        f()
    with pytest.raises(TypeError, match=r"double\(\) got an unexpected keyword argument 'z'"):
        f(1, z=2)
    with pytest.raises(TypeError, match="positional argument"):
        f(1, 2, 3)
    assert calls == []


def test_recursive_function(cache_dir: Path) -> None:
    calls: list[int] = []

    @cached(cache_dir=cache_dir)
    def fib(n):
        calls.append(n)
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(30) == 832040
    assert sorted(calls) == list(range(31))  # each value computed once, then read
    assert fib.cache_info().entries == 31


def test_returned_value_is_a_copy_the_caller_may_mutate(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir)
    def f():
        return {"items": [1, 2]}

    f()["items"].append(3)
    first = f()
    first["items"].append(4)
    assert f() == {"items": [1, 2]}


# --- ttl ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ttl", [10, 10.0, dt.timedelta(seconds=10)], ids=["int", "float",
                                                                          "timedelta"])
def test_ttl_expires_entries(cache_dir: Path, clock: Clock, ttl: Any) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir, ttl=ttl)(counting(calls))
    f(1)
    clock.now += 9.5
    f(1)
    assert len(calls) == 1
    clock.now += 1
    f(1)
    assert len(calls) == 2
    clock.now += 5
    f(1)
    assert len(calls) == 2  # the recomputed entry is fresh again


def test_ttl_in_real_time(cache_dir: Path) -> None:
    """A hit until ``ttl`` seconds after the store, then a recomputation. The ttl is five
    times what a miss and a hit take on this store right now (at least 0.2 s): on S3 under
    load the pair has taken longer than a fixed 0.2 s, and the entry expired before its hit."""

    def warm_up(x: int) -> int:
        return x

    w = cached(cache_dir=cache_dir)(warm_up)
    start = time.perf_counter()
    w(1)
    w(1)
    ttl = max(0.2, 5 * (time.perf_counter() - start))
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir, ttl=ttl)(counting(calls))
    f(1)
    f(1)
    assert len(calls) == 1
    time.sleep(ttl + 0.1)
    f(1)
    assert len(calls) == 2


def test_fractional_ttl_is_kept(cache_dir: Path, clock: Clock) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir, ttl=dt.timedelta(milliseconds=1500))(counting(calls))
    f(1)
    clock.now += 1.4
    f(1)
    clock.now += 0.2
    f(1)
    assert len(calls) == 2


@pytest.mark.file_only("it looks at the entry files")
def test_stale_entry_is_replaced_not_kept_beside(cache_dir: Path, clock: Clock) -> None:
    f = cached(cache_dir=cache_dir, ttl=1)(counting([]))
    f(1)
    clock.now += 2
    f(1)
    assert len(entry_files(cache_dir)) == 1


def test_a_shorter_ttl_now_makes_older_entries_stale(cache_dir: Path, clock: Clock) -> None:
    calls: list[Any] = []
    raw = counting(calls)
    cached(cache_dir=cache_dir, ttl=100)(raw)(1)
    clock.now += 20
    cached(cache_dir=cache_dir, ttl=100)(raw)(1)
    assert len(calls) == 1
    cached(cache_dir=cache_dir, ttl=10)(raw)(1)
    assert len(calls) == 2


def test_a_longer_ttl_now_does_not_revive_an_expired_entry(cache_dir: Path, clock: Clock) -> None:
    calls: list[Any] = []
    raw = counting(calls)
    cached(cache_dir=cache_dir, ttl=10)(raw)(1)
    clock.now += 20
    cached(cache_dir=cache_dir, ttl=1000)(raw)(1)
    assert len(calls) == 2


def test_an_entry_created_ahead_of_the_clock_is_stale(cache_dir: Path, clock: Clock) -> None:
    """Written by a clock an hour ahead (another machine's, or this one before it was set
    back): its age is unknown, so it is not served for an hour more than its ttl."""
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir, ttl=60)(counting(calls))
    clock.now += 3600
    f(1)
    clock.now -= 3600
    f(1)
    assert len(calls) == 2
    f(1)
    assert len(calls) == 2  # the entry written by this clock is fresh


def test_an_entry_created_a_moment_ahead_of_the_clock_is_fresh(cache_dir: Path,
                                                                 clock: Clock) -> None:
    """Within ``CLOCK_SKEW`` (clocks of machines sharing a store differ a little) an entry
    still counts: a caller that waited for another machine's computation reads it."""
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir, ttl=60)(counting(calls))
    clock.now += 0.5
    f(1)
    clock.now -= 0.5
    f(1)
    assert len(calls) == 1


def test_the_memory_tier_drops_a_value_when_the_clock_is_set_back(tmp_path: Path,
                                                                  clock: Clock) -> None:
    """(A folder's: the remote stores keep no stamp for a memory tier.)"""
    calls: list[Any] = []
    f = cached(cache_dir=tmp_path, ttl=60, memory=8)(counting(calls))
    f(1)
    f(1)
    assert len(calls) == 1
    clock.now -= 3600
    f(1)
    assert len(calls) == 2


def test_the_memory_tier_does_not_hold_a_value_past_its_entry_when_the_clock_steps_back(
        tmp_path: Path, clock: Clock) -> None:
    """The clock set back an hour while the function runs: its entry's ttl counts from its
    creation, after the step, and so must the value held in memory (before, its expiry was
    counted from the call's start: served from memory for an hour past the entry's)."""
    calls: list[Any] = []

    def stepping(x):
        calls.append(x)
        clock.now -= 3600  # an NTP step, or a suspended machine's clock set right
        return x

    f = cached(cache_dir=tmp_path, ttl=60, memory=8)(stepping)
    f(1)
    clock.now += 61
    f(1)
    assert len(calls) == 2


def test_the_memory_tier_reads_the_clock_a_test_patches_after_decorating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``time.time`` patched once the function is decorated (``mock.patch("time.time")``,
    freezegun), an hour past its ttl: a value held in memory is as stale as its entry, as
    ``cache_explain`` says. Before, the memory tier read the ``time.time`` it found when
    decorated, and returned the held value while ``cache_explain`` said stale."""
    calls: list[Any] = []
    f = cached(cache_dir=tmp_path, ttl=60, memory=8)(counting(calls))
    f(1)
    f(1)
    assert len(calls) == 1
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    assert f.cache_explain(1).startswith("stale")
    f(1)
    assert len(calls) == 2


def test_a_stale_value_is_not_served_from_an_entry_created_ahead_of_the_clock(
        cache_dir: Path, clock: Clock) -> None:
    """``stale_while_revalidate`` serves an entry that expired a little while ago, never one
    whose age is unknown: the call computes and returns the new value."""
    calls: list[Any] = []

    def numbered(x):
        calls.append(x)
        return len(calls)

    f = cached(cache_dir=cache_dir, ttl=10, stale_while_revalidate=7200)(numbered)
    clock.now += 3600
    assert f(1) == 1
    clock.now -= 3600
    assert f(1) == 2
    assert f.cache_explain(1).startswith("hit")


def test_explain_names_an_entry_created_ahead_of_the_clock(cache_dir: Path,
                                                          clock: Clock) -> None:
    f = cached(cache_dir=cache_dir, ttl=60)(counting([]))
    clock.now += 3600
    f(1)
    clock.now -= 3600
    assert "later than this clock" in f.cache_explain(1)


@pytest.mark.parametrize("ttl", [None, 60])
def test_explain_says_the_date_of_an_entry_stamped_past_year_9999(cache_dir: Path,
                                                                   clock: Clock,
                                                                   ttl: Any) -> None:
    """A header's times are whatever the writer's clock read: one far off (or a crafted
    entry) is explained with the latest date there is, as ``Cache.entries()`` and ``memojar
    ls`` show it (before, ``cache_explain`` raised OverflowError or ValueError)."""
    f = cached(cache_dir=cache_dir, ttl=ttl)(counting([]))
    clock.now = 1e12  # year 33658
    f(1)
    clock.now = time.time()
    assert "9999-12-31" in f.cache_explain(1)


def test_without_ttl_entries_do_not_expire(cache_dir: Path, clock: Clock) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    f(1)
    clock.now += 10 * 365 * 24 * 3600
    f(1)
    assert len(calls) == 1


# --- version ------------------------------------------------------------------------------

def test_same_version_hits(cache_dir: Path) -> None:
    calls: list[Any] = []
    raw = counting(calls)
    cached(cache_dir=cache_dir, version=2)(raw)(1)
    cached(cache_dir=cache_dir, version=2)(raw)(1)
    assert len(calls) == 1


def test_another_version_misses(cache_dir: Path) -> None:
    calls: list[Any] = []
    raw = counting(calls)
    cached(cache_dir=cache_dir, version="a")(raw)(1)
    cached(cache_dir=cache_dir, version="b")(raw)(1)
    cached(cache_dir=cache_dir)(raw)(1)
    assert len(calls) == 3


def test_version_int_1_and_str_1_are_different(cache_dir: Path) -> None:
    calls: list[Any] = []
    raw = counting(calls)
    one = cached(cache_dir=cache_dir, version=1)(raw)
    one(1)
    assert one.cache_contains(1)
    other = cached(cache_dir=cache_dir, version="1")(raw)
    assert not other.cache_contains(1)
    other(1)
    assert len(calls) == 2


@pytest.mark.file_only("it looks at the entry files")
def test_entries_of_another_version_are_evicted(cache_dir: Path) -> None:
    raw = counting([])
    old = cached(cache_dir=cache_dir, version=1)(raw)
    for i in range(3):
        old(i)
    new = cached(cache_dir=cache_dir, version=2)(raw)
    new(0)
    new(1)  # the entries of version 1 are gone, not merely shadowed
    assert len(entry_files(cache_dir)) == 2


# --- what is cached -----------------------------------------------------------------------

def test_none_is_cached(cache_dir: Path) -> None:
    calls: list[Any] = []

    @cached(cache_dir=cache_dir)
    def f(x):
        calls.append(x)

    assert f(1) is None
    assert f(1) is None
    assert calls == [1]
    assert f.cache_contains(1)


def test_falsy_values_are_cached(cache_dir: Path) -> None:
    calls: list[Any] = []

    @cached(cache_dir=cache_dir)
    def f(x):
        calls.append(x)
        return [0, "", (), False, 0.0][x]

    results = [f(i) for i in range(5)] + [f(i) for i in range(5)]
    assert results == [0, "", (), False, 0.0] * 2
    assert [type(r) for r in results[5:]] == [int, str, tuple, bool, float]
    assert len(calls) == 5


@pytest.mark.file_only("it looks at the entry files")
def test_exceptions_propagate_and_are_not_cached(cache_dir: Path) -> None:
    calls: list[Any] = []

    @cached(cache_dir=cache_dir)
    def f(x):
        calls.append(x)
        raise KeyError(f"no {x}")

    for _ in range(2):
        with pytest.raises(KeyError, match="no 1"):
            f(1)
    assert calls == [1, 1]
    assert entry_files(cache_dir) == []
    assert not f.cache_contains(1)


def test_a_call_that_raised_counts_as_a_miss(cache_dir: Path) -> None:
    # As lru_cache, diskcache and cachier count it: before, hits and misses did not add up
    # to the calls made once one had raised.
    @cached(cache_dir=cache_dir)
    def f(x):
        if x < 0:
            raise ValueError(x)
        return x

    with pytest.raises(ValueError):
        f(-1)
    f(1)
    f(1)
    assert f.cache_info()[:2] == (1, 2)

    @cached(cache_dir=cache_dir)
    async def g(x):
        raise ValueError(x)

    with pytest.raises(ValueError):
        asyncio.run(g(1))
    assert g.cache_info()[:2] == (0, 1)


def test_a_call_that_failed_once_is_cached_when_it_succeeds(cache_dir: Path) -> None:
    attempts: list[int] = []

    @cached(cache_dir=cache_dir)
    def f(x):
        attempts.append(x)
        if len(attempts) == 1:
            raise RuntimeError("flaky")
        return x

    with pytest.raises(RuntimeError):
        f(1)
    assert f(1) == 1
    assert f(1) == 1
    assert len(attempts) == 2


@pytest.mark.file_only("it looks at the entry files")
def test_unpicklable_result_is_returned_with_a_warning_and_not_stored(cache_dir: Path) -> None:
    calls: list[Any] = []

    @cached(cache_dir=cache_dir)
    def f():
        calls.append(1)
        return threading.Lock()

    with pytest.warns(MemojarWarning, match=r"returned but not cached: it cannot be pickled"):
        first = f()
    assert type(first) is type(threading.Lock())
    assert not f.cache_contains()
    assert entry_files(cache_dir) == []
    with pytest.warns(MemojarWarning):
        f()
    assert len(calls) == 2


class _NotRebuilt:
    """Pickled with one argument, rebuilt with one: as an ``Exception`` subclass whose
    ``__init__`` takes two is (unless a library, tblib through distributed, changed how
    exceptions pickle)."""

    def __init__(self, code: int, text: str) -> None:
        self.text = f"{code}: {text}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_NotRebuilt, (self.text,))

    def __str__(self) -> str:
        return self.text


def test_a_result_stored_that_never_loads_is_warned_of(cache_dir: Path) -> None:
    """Before, each call computed it, stored it and threw it away, silently."""
    calls: list[int] = []

    @cached(cache_dir=cache_dir)
    def f(x: int) -> _NotRebuilt:
        calls.append(x)
        return _NotRebuilt(x, "refused")

    f(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its first failure: perhaps an entry a library's
        f(1)  # upgrade left, which goes once
    with pytest.warns(MemojarWarning, match=r"f's value is stored but does not load "
                      r"\(payload does not load: TypeError.*needs a __reduce__"):
        assert str(f(1)) == "1: refused"
    assert len(calls) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once a function
        f(1)


_LOADS_IN = {"version": 1}  # the version an entry of _Versioned loads in


class _Versioned:
    """An entry of another version (a library's before its upgrade) does not load; the
    failing loads wait for each other, so that two threads both read the one entry."""

    meet = threading.Barrier(2, timeout=10)

    def __init__(self) -> None:
        self.version = _LOADS_IN["version"]

    def __setstate__(self, state: dict[str, int]) -> None:
        if state["version"] != _LOADS_IN["version"]:
            type(self).meet.wait()
            raise ValueError(f"an entry of version {state['version']}")
        self.__dict__.update(state)


def test_one_entry_that_does_not_load_read_by_two_threads_at_once_is_not_warned_of(
        cache_dir: Path) -> None:
    """It is one entry, left by an upgrade, removed once; the value loads. Before, the
    second thread's failure counted as a second entry of the key failing: 'f's value is
    stored but does not load ... every call computes it again'."""

    @cached(cache_dir=cache_dir)
    def f(x: int) -> _Versioned:
        return _Versioned()

    f(1)
    _LOADS_IN["version"] = 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            threads = [threading.Thread(target=f, args=(1,)) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert f(1).version == 2
    finally:
        _LOADS_IN["version"] = 1
    assert [str(w.message) for w in caught if "does not load" in str(w.message)] == []


class _TooBigToPickle:
    def __reduce__(self) -> Any:
        raise MemoryError


def test_a_result_that_runs_out_of_memory_pickling_is_returned_with_a_warning_saying_so(
        cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir)
    def f():
        return _TooBigToPickle()

    with pytest.warns(MemojarWarning, match=r"not cached: there was not memory enough to "
                      r"pickle it") as seen:
        assert type(f()) is _TooBigToPickle
    assert not any("cannot be pickled" in str(w.message) for w in seen)
    assert not f.cache_contains()


def test_unpicklable_result_warning_names_the_function(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir)
    def make_callback():
        return lambda: None

    with pytest.warns(MemojarWarning, match="make_callback"):
        make_callback()


def test_two_lambdas_of_one_scope_never_return_each_others_values(cache_dir: Path) -> None:
    add_one = cached(cache_dir=cache_dir)(lambda x: x + 1)
    add_two = cached(cache_dir=cache_dir)(lambda x: x + 2)  # the same module.qualname
    for _ in range(2):
        assert add_one(1) == 2
        assert add_two(1) == 3


def test_functions_made_by_a_factory_never_return_each_others_values(cache_dir: Path) -> None:
    def make(n):
        @cached(cache_dir=cache_dir)
        def scaled(x):
            return x * n

        return scaled

    assert make(2)(10) == 20
    assert make(3)(10) == 30
    assert make(2)(10) == 20


def test_functions_made_by_a_factory_of_functions_never_share_values(cache_dir: Path) -> None:
    def make(op):
        @cached(cache_dir=cache_dir)
        def apply(x):
            return op(x)

        return apply

    assert make(abs)(-2) == 2
    assert make(round)(-2) == -2
    assert make(str)(-2) == "-2"


def test_closures_over_different_lists_are_different_functions(cache_dir: Path) -> None:
    """A list, dict or set a closure only reads counts by its contents when it is
    decorated: ``make(["a"])`` and ``make(["b"])`` returned each other's results (they
    counted by type, as an accumulator does)."""

    def make(columns: list[str], weights: dict[str, int]) -> Any:
        @cached(cache_dir=cache_dir)
        def pick(x: int) -> list[str]:
            return [c + str(x * weights["w"]) for c in columns]

        return pick

    assert make(["a"], {"w": 1})(1) == ["a1"]
    assert make(["b"], {"w": 1})(1) == ["b1"]
    assert make(["a"], {"w": 2})(1) == ["a2"]
    assert make(["a"], {"w": 1})(1) == ["a1"]


def test_closures_storing_what_they_capture_in_their_result_are_different_functions(
        cache_dir: Path) -> None:
    """A captured list or dict only stored (``out["cols"] = cols``) or read as a key
    (``out[cfg["k"]] = x``) is read, not changed: it counts by its contents. Before, any
    subscript store on its line took it for an accumulator, counted by type, and
    ``make(["b"])`` returned ``make(["a"])``'s value."""

    def make(cols: list[str], cfg: dict[str, str]) -> Any:
        @cached(cache_dir=cache_dir)
        def pick(x: int) -> dict[str, Any]:
            out: dict[str, Any] = {}
            out["cols"] = cols
            out[cfg["k"]] = x
            return out

        return pick

    assert make(["a"], {"k": "a"})(1) == {"cols": ["a"], "a": 1}
    assert make(["b"], {"k": "a"})(1) == {"cols": ["b"], "a": 1}
    assert make(["a"], {"k": "b"})(1) == {"cols": ["a"], "b": 1}


def test_a_closure_counting_in_a_dict_keeps_its_entries(cache_dir: Path) -> None:
    """A dict the closure changes (``count[k] += 1``, also in a function it defines) is an
    accumulator: counted by type, so the closure made again after it changed hits."""
    count = {"calls": 0}

    def make() -> Any:
        @cached(cache_dir=cache_dir)
        def f(x: int) -> int:
            def bump() -> None:
                count["calls"] += 1

            bump()
            return x

        return f

    make()(1)
    make()(1)
    assert count == {"calls": 1}


def test_a_closure_over_a_mutable_object_keeps_its_entries(cache_dir: Path) -> None:
    calls: list[int] = []

    def make():
        @cached(cache_dir=cache_dir)
        def record(x):
            calls.append(x)
            return x

        return record

    make()(1)
    make()(1)  # `calls` changed in between: captured objects count by type, like globals
    assert calls == [1]


# --- methods, staticmethod, classmethod ---------------------------------------------------

@dataclass
class Point:
    """Picklable by reference: instances can be part of a key."""

    x: float
    y: float


def _norm(self: Point, scale: float = 1.0) -> float:
    _norm.calls.append((self.x, self.y))  # type: ignore[attr-defined]
    return (self.x**2 + self.y**2) ** 0.5 * scale


class Shape:
    sides = 0


class Square(Shape):
    sides = 4


def _describe(cls: type, name: str) -> str:
    _describe.calls.append(cls)  # type: ignore[attr-defined]
    return f"{name}:{cls.sides}"


def test_method_with_self_ignored(cache_dir: Path) -> None:
    class Service:
        def __init__(self) -> None:
            self.lock = threading.Lock()  # unpicklable, hence ignore=("self",)
            self.calls = 0

        @cached(cache_dir=cache_dir, ignore=("self",))
        def fetch(self, x):
            self.calls += 1
            return x * 10

    a, b = Service(), Service()
    assert a.fetch(1) == 10
    assert b.fetch(1) == 10
    assert b.fetch(x=1) == 10
    assert (a.calls, b.calls) == (1, 0)
    assert Service.fetch.cache_contains(None, 1)


def test_method_with_picklable_self_keys_on_its_state(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _norm.calls = []  # type: ignore[attr-defined]
    monkeypatch.setattr(Point, "norm", cached(cache_dir=cache_dir)(_norm), raising=False)
    assert Point(3, 4).norm() == 5.0
    assert Point(3, 4).norm() == 5.0  # another instance, equal state: a hit
    assert Point(6, 8).norm() == 10.0
    assert Point(3, 4).norm(scale=2) == 10.0
    assert _norm.calls == [(3, 4), (6, 8), (3, 4)]  # type: ignore[attr-defined]


def test_method_with_unpicklable_self_says_how_to_key_it(cache_dir: Path) -> None:
    class Local:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        @cached(cache_dir=cache_dir)
        def m(self, x):
            return x

    # not ignore=('self',), which gives every instance the first one's results
    with pytest.raises(TypeError, match=r"argument 'self' .*__getstate__.*key=lambda self,"
                                        r".*not ignore="):
        Local().m(1)


@pytest.mark.parametrize("order", ["cached-outside", "cached-inside"])
def test_staticmethod(cache_dir: Path, order: str) -> None:
    calls: list[Any] = []

    if order == "cached-outside":
        class A:
            @cached(cache_dir=cache_dir)
            @staticmethod
            def twice(x):
                calls.append(x)
                return 2 * x
    else:
        class A:  # type: ignore[no-redef]
            @staticmethod
            @cached(cache_dir=cache_dir)
            def twice(x):
                calls.append(x)
                return 2 * x

    assert A.twice(2) == 4
    assert A().twice(2) == 4
    assert calls == [2]
    assert A.twice.cache_contains(2)


def test_classmethod_keys_on_the_class(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _describe.calls = []  # type: ignore[attr-defined]
    monkeypatch.setattr(Shape, "describe", classmethod(cached(cache_dir=cache_dir)(_describe)),
                        raising=False)
    assert Shape.describe("s") == "s:0"
    assert Square.describe("s") == "s:4"
    assert Square.describe("s") == "s:4"
    assert Shape.describe(name="s") == "s:0"
    assert _describe.calls == [Shape, Square]  # type: ignore[attr-defined]


def test_classmethod_with_cls_ignored(cache_dir: Path) -> None:
    calls: list[Any] = []

    class Local:
        @classmethod
        @cached(cache_dir=cache_dir, ignore=("cls",))
        def build(cls, x):
            calls.append(x)
            return x + 1

    assert Local.build(1) == 2
    assert Local.build(1) == 2
    assert calls == [1]


# --- async --------------------------------------------------------------------------------

def test_async_wrapper_is_a_coroutine_function(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir)
    async def f(x):
        return x

    assert inspect.iscoroutinefunction(f)
    assert inspect.iscoroutinefunction(f.refresh)
    assert asyncio.run(f(1)) == 1


def test_async_results_are_cached(cache_dir: Path) -> None:
    calls: list[Any] = []

    @cached(cache_dir=cache_dir)
    async def f(x):
        calls.append(x)
        await asyncio.sleep(0)
        return {"x": x}

    async def main() -> list[Any]:
        return [await f(1), await f(1), await f(2)]

    assert asyncio.run(main()) == [{"x": 1}, {"x": 1}, {"x": 2}]
    assert asyncio.run(f(1)) == {"x": 1}
    assert calls == [1, 2]


def test_concurrent_async_tasks_compute_once(cache_dir: Path) -> None:
    calls: list[Any] = []

    @cached(cache_dir=cache_dir)
    async def slow(x):
        calls.append(x)
        await asyncio.sleep(0.2)
        return x * 3

    async def main() -> list[Any]:
        return await asyncio.gather(*(slow(7) for _ in range(6)), slow(8))

    start = time.perf_counter()
    assert asyncio.run(main()) == [21] * 6 + [24]
    assert calls.count(7) == 1
    assert calls.count(8) == 1
    if isinstance(cache_dir, Path):  # the tasks waited together, not one by one; on a
        # remote store each wait is the server's round trips (moto's, on a busy machine)
        assert time.perf_counter() - start < 2


def _driven(coro: Any) -> Any:
    """What a coroutine returns, driven by no event loop memojar knows (as Twisted's
    ``Deferred.fromCoroutine`` on its own reactor, or curio, drive one)."""
    try:
        while True:
            coro.send(None)
    except StopIteration as done:
        return done.value


def test_a_coroutine_driven_by_no_known_loop_is_cached(cache_dir: Path) -> None:
    """Before, on a remote store every call raised "no running event loop" from memojar
    (its reads are made in a worker thread of the loop), the function never run."""
    calls: list[int] = []

    @cached(cache_dir=cache_dir)
    async def f(x: int) -> int:
        calls.append(x)
        return x * 2

    assert _driven(f(2)) == _driven(f(2)) == 4
    assert calls == [2]


def test_a_stale_entry_of_a_coroutine_driven_by_no_known_loop_is_recomputed_in_the_call(
    cache_dir: Path,
) -> None:
    """With no loop to recompute it on in the background, a stale entry is a miss.
    Before, every call raised "no running event loop", on any store."""
    value = ["old"]

    @cached(cache_dir=cache_dir, ttl=0.2, stale_while_revalidate=60)
    async def f(x: int) -> str:
        return value[0]

    assert _driven(f(1)) == "old"
    time.sleep(0.3)
    value[0] = "new"
    assert _driven(f(1)) == "new"


def test_a_coroutine_driven_by_no_known_loop_waits_for_a_key_computed_elsewhere(
    cache_dir: Path,
) -> None:
    """Its wait for the key's lock sleeps in its thread. Before, the wait raised "no
    running event loop" (``asyncio.sleep``)."""
    f, calls, started = _slow_in_the_other_thread(cache_dir)
    with _computing_in_the_other_thread(f, 5, started):
        assert _driven(f(5)) == 15
    assert calls == ["other"]


def _slow_in_the_other_thread(cache_dir: Any, pause: Any = None
                              ) -> tuple[Any, list[str], threading.Event]:
    """A cached coroutine of x -> 3x noting the thread of each computation: in the thread
    named "other" it takes 0.5 s (``started`` set first); elsewhere it awaits ``pause()``
    if given."""
    calls: list[str] = []
    started = threading.Event()

    @cached(cache_dir=cache_dir)
    async def f(x: int) -> int:
        calls.append(threading.current_thread().name)
        if threading.current_thread().name == "other":
            started.set()
            await asyncio.sleep(0.5)
        elif pause is not None:
            await pause()
        return x * 3

    return f, calls, started


@contextlib.contextmanager
def _computing_in_the_other_thread(f: Any, x: int, started: threading.Event
                                   ) -> Iterator[None]:
    """While ``f(x)`` computes in a thread named "other", on its own asyncio loop."""
    other = threading.Thread(target=asyncio.run, args=(f(x),), name="other")
    other.start()
    try:
        assert started.wait(30)
        yield
    finally:
        other.join()


def test_a_coroutine_driven_in_no_task_of_a_running_loop_is_cached(cache_dir: Path) -> None:
    """Driven from a running asyncio loop's callbacks, in no task of it (as Twisted's
    ``asyncioreactor`` drives ``Deferred.fromCoroutine``), a future awaited by memojar
    is sent back at once: the store's calls and a wait are made in the thread, as with no
    loop. Before, on a remote store every call raised "await wasn't used with future",
    the function never run; on the file store, a wait for another caller's lock did."""
    f, calls, started = _slow_in_the_other_thread(cache_dir)

    async def in_a_callback(x: int) -> int:  # driven by the loop's callback, not a task
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def drive() -> None:
            try:
                done.set_result(_driven(f(x)))
            except BaseException as exc:  # noqa: BLE001 - the test's outcome
                done.set_exception(exc)

        asyncio.get_running_loop().call_soon(drive)
        return await asyncio.wait_for(done, 30)

    assert asyncio.run(in_a_callback(2)) == asyncio.run(in_a_callback(2)) == 6
    assert calls == ["MainThread"]
    with _computing_in_the_other_thread(f, 5, started):
        assert asyncio.run(in_a_callback(5)) == 15  # waits for the other thread's value
    assert calls == ["MainThread", "other"]


def test_a_coroutine_driven_by_no_known_loop_finding_its_key_computed_in_its_thread_says_so(
    tmp_path: Path,
) -> None:
    """Coroutines of one thread driven by no loop memojar can wait on (Twisted's default
    reactor gives each its own context) on one key: the second computes at once, since
    waiting would block the thread the first needs, and says so. Before, the warning
    called it a lock-order cycle ("f and f call each other")."""
    import contextvars
    import types

    @types.coroutine
    def pause() -> Any:
        yield

    @cached(cache_dir=tmp_path)
    async def f(x: int) -> int:
        await pause()
        return x * 3

    first, second = f(1), f(1)
    own = contextvars.copy_context()  # the second's, as the reactor gives it
    first.send(None)  # computing, its key locked
    with pytest.warns(MemojarWarning) as warned:
        own.run(second.send, None)  # computes at once (paused in the function)
    assert len(warned) == 1
    said = str(warned[0].message)
    assert "being computed by another coroutine of this thread" in said
    assert "call each other" not in said
    with pytest.raises(StopIteration):
        first.send(None)
    with pytest.raises(StopIteration):
        own.run(second.send, None)


def test_a_coroutine_driven_in_a_loops_callback_finding_its_key_computed_by_a_task_of_it(
    tmp_path: Path,
) -> None:
    """A coroutine driven from a running asyncio loop's callback, in no task of it (as
    Twisted's ``asyncioreactor`` drives one), finds its key computed by a task of that
    loop: it computes at once and says so, since waiting would block the thread the task
    needs. Before, it blocked the loop lock_timeout (600 s by default), the task with it."""
    import types

    @types.coroutine
    def pause() -> Any:
        yield

    @Cache(tmp_path, lock_timeout=20).cached
    async def f(x: int) -> int:
        if asyncio.current_task() is not None:
            await asyncio.sleep(0.2)
        else:
            await pause()
        return x * 3

    async def main() -> tuple[float, Any]:
        task = asyncio.create_task(f(1))
        await asyncio.sleep(0.05)  # computing, its key locked
        driven: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def drive() -> None:
            start = time.monotonic()
            try:
                _driven(f(1))
            finally:
                driven.set_result(time.monotonic() - start)

        asyncio.get_running_loop().call_soon(drive)
        return await driven, await task

    with pytest.warns(MemojarWarning, match="a task of the event loop this thread runs"):
        took, value = asyncio.run(main())
    assert took < 5  # before: 20 (lock_timeout), the loop and its task stopped
    assert value == 3


def test_coroutines_interleaved_in_one_context_leave_no_key_marked_held(
    cache_dir: Path,
) -> None:
    """Calls driven by no known loop may share a context (curio's tasks, ``coro.send``)
    and end in another order than they started. Before, the call ending last set back
    the marks of held keys it found at its start, the other call's among them: later
    calls of that key in the context took it for their own and computed at once without
    its lock, never waiting for another caller computing it (here: computed twice)."""
    import contextvars
    import types

    @types.coroutine
    def pause() -> Any:
        yield

    f, calls, started = _slow_in_the_other_thread(cache_dir, pause)

    def interleaved() -> None:
        first, second = f(1), f(2)
        first.send(None)
        second.send(None)  # both computing, in this context
        for coro in (first, second):  # the first started ends first
            with pytest.raises(StopIteration):
                coro.send(None)
        assert memojar._decorator._held.get() == ()
        f.cache_delete(1)
        with _computing_in_the_other_thread(f, 1, started):
            assert _driven(f(1)) == 3  # waits for the other thread's value

    contextvars.copy_context().run(interleaved)
    assert calls == ["MainThread", "MainThread", "other"]


def test_async_exception_propagates_and_is_not_cached(cache_dir: Path) -> None:
    calls: list[Any] = []

    @cached(cache_dir=cache_dir)
    async def f(x):
        calls.append(x)
        raise ValueError("async failure")

    for _ in range(2):
        with pytest.raises(ValueError, match="async failure"):
            asyncio.run(f(1))
    assert len(calls) == 2


def test_async_refresh_recomputes(cache_dir: Path) -> None:
    calls: list[Any] = []

    @cached(cache_dir=cache_dir)
    async def f(x):
        calls.append(x)
        return len(calls)

    assert asyncio.run(f(1)) == 1
    assert asyncio.run(f.refresh(1)) == 2
    assert asyncio.run(f(1)) == 2


# --- attributes ---------------------------------------------------------------------------

def test_wrapped_and_metadata(cache_dir: Path) -> None:
    def original(x: int, y: int = 2) -> int:
        """Adds."""
        return x + y

    f = cached(cache_dir=cache_dir)(original)
    assert f.__wrapped__ is original
    assert f.__name__ == "original"
    assert f.__doc__ == "Adds."
    assert f.__qualname__ == original.__qualname__
    assert inspect.signature(f) == inspect.signature(original)


@pytest.mark.file_only("it looks at the entry files")
def test_cache_info_counts_hits_misses_and_what_is_stored(cache_dir: Path) -> None:
    f = cached(cache_dir=cache_dir)(counting([]))
    assert f.cache_info() == CacheInfo(0, 0, 0, 0)
    f(1)
    f(1)
    f(2)
    f(1)
    info = f.cache_info()
    assert isinstance(info, CacheInfo)
    assert (info.hits, info.misses, info.entries) == (2, 2, 2)
    assert info.bytes == sum(p.stat().st_size for p in entry_files(cache_dir))


def test_cache_info_is_per_function(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir)
    def f(x):
        return x

    @cached(cache_dir=cache_dir)
    def g(x):
        return x

    f(1)
    f(2)
    g(1)
    assert f.cache_info().entries == 2
    assert g.cache_info().entries == 1
    assert g.cache_info().misses == 1


def test_cache_clear_removes_this_functions_entries(cache_dir: Path) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))

    @cached(cache_dir=cache_dir)
    def other(x):
        return x

    f(1)
    f(2)
    other(1)
    assert f.cache_clear() == 2
    assert f.cache_info() == CacheInfo(0, 0, 0, 0)
    assert other.cache_contains(1)
    f(1)
    assert len(calls) == 3
    assert f.cache_clear() == 1
    assert f.cache_clear() == 0


def test_cache_contains_computes_nothing(cache_dir: Path) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    assert f.cache_contains(1) is False
    assert calls == []
    f(1)
    assert f.cache_contains(1) is True
    assert f.cache_contains(x=1, y=0) is True
    assert f.cache_contains(2) is False
    assert calls == [(1, 0)]
    assert f.cache_info().hits == 0  # asking is not a hit


def test_cache_contains_is_false_for_a_stale_entry(cache_dir: Path, clock: Clock) -> None:
    f = cached(cache_dir=cache_dir, ttl=5)(counting([]))
    f(1)
    assert f.cache_contains(1)
    clock.now += 6
    assert not f.cache_contains(1)


def test_cache_delete_removes_one_entry(cache_dir: Path) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    f(1)
    f(2)
    assert f.cache_delete(1) is True
    assert f.cache_delete(1) is False
    assert not f.cache_contains(1)
    assert f.cache_contains(2)
    f(1)
    assert len(calls) == 3


def test_refresh_recomputes_stores_and_returns(cache_dir: Path) -> None:
    calls: list[Any] = []

    @cached(cache_dir=cache_dir)
    def f(x):
        calls.append(x)
        return (x, len(calls))

    assert f(1) == (1, 1)
    assert f.refresh(1) == (1, 2)
    assert f(1) == (1, 2)
    assert f.refresh(x=2) == (2, 3)
    assert f(2) == (2, 3)
    assert len(calls) == 3


# A refresh, a cache_set and a background recomputation replace the call's entry: a value
# of theirs that is not stored (computed under min_compute_time, unpicklable) is not
# followed by the value it replaced. Before, the old entry stayed and the next call
# returned it (for good, or, for a stale entry, until its window ended).

def test_a_refresh_computed_faster_than_min_compute_time_leaves_no_older_value(
        cache_dir: Path) -> None:
    source = {"value": "old", "delay": 0.3}

    @cached(cache_dir=cache_dir, min_compute_time=0.2)
    def read(x: int) -> str:
        time.sleep(source["delay"])
        return str(source["value"])

    assert read(1) == "old"  # slow: stored
    source.update(value="new", delay=0.0)
    assert read.refresh(1) == "new"  # quick: returned, not stored
    assert read(1) == "new"
    assert not read.cache_contains(1)


def test_an_async_refresh_computed_faster_than_min_compute_time_leaves_no_older_value(
        cache_dir: Path) -> None:
    source = {"value": "old", "delay": 0.3}

    @cached(cache_dir=cache_dir, min_compute_time=0.2)
    async def read(x: int) -> str:
        await asyncio.sleep(source["delay"])
        return str(source["value"])

    assert asyncio.run(read(1)) == "old"
    source.update(value="new", delay=0.0)
    assert asyncio.run(read.refresh(1)) == "new"
    assert asyncio.run(read(1)) == "new"


def test_a_refresh_whose_value_cannot_be_pickled_leaves_no_older_value(
        cache_dir: Path) -> None:
    values: list[Any] = ["old", threading.Lock(), "new"]

    @cached(cache_dir=cache_dir)
    def f(x: int) -> Any:
        return values.pop(0)

    assert f(1) == "old"
    with pytest.warns(MemojarWarning, match="cannot be pickled"):
        f.refresh(1)
    assert f(1) == "new"


def test_cache_set_of_a_value_that_cannot_be_pickled_leaves_no_older_value(
        cache_dir: Path) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    f.cache_set(10, 1)
    with pytest.warns(MemojarWarning, match="cannot be pickled"):
        f.cache_set(threading.Lock(), 1)
    assert not f.cache_contains(1)
    assert f(1) == 2  # computed
    assert calls == [(1, 0)]


def test_a_background_recomputation_too_quick_to_store_ends_the_stale_value(
        cache_dir: Path) -> None:
    """The stale entry is removed: the next call computes the value in the call. Before,
    the stale value was served for the whole window, each call recomputing it in the
    background and throwing the result away."""
    source = {"value": "old", "delay": 0.3}
    calls: list[int] = []

    @cached(cache_dir=cache_dir, ttl=0.5, stale_while_revalidate=600, min_compute_time=0.2)
    def f(x: int) -> str:
        calls.append(x)
        time.sleep(source["delay"])
        return str(source["value"])

    assert f(1) == "old"  # slow: stored
    time.sleep(0.6)
    source.update(value="new", delay=0.0)
    assert f(1) == "old"  # stale, at once; recomputed quickly in the background
    deadline = time.monotonic() + 20
    while f.cache_info().entries:
        assert time.monotonic() < deadline, "the stale entry stayed"
        time.sleep(0.02)
    assert len(calls) == 2
    assert f(1) == "new"


@pytest.mark.file_only("it looks at the entry files")
def test_cache_key_is_a_hex_string(cache_dir: Path) -> None:
    f = cached(cache_dir=cache_dir)(counting([]))
    key = f.cache_key(1)
    assert isinstance(key, str)
    assert len(key) == 32
    int(key, 16)
    assert key == f.cache_key(x=1, y=0)
    assert key != f.cache_key(2)
    f(1)
    assert any(p.name.startswith(key) for p in entry_files(cache_dir))


@pytest.mark.file_only("it looks at the entry files")
def test_cache_key_computes_nothing(cache_dir: Path) -> None:
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    f.cache_key(1)
    assert calls == []
    assert entry_files(cache_dir) == []


# --- MEMOJAR_DISABLE ----------------------------------------------------------------------

@pytest.mark.file_only("it looks at the entry files")
def test_memojar_disable_calls_straight_through(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMOJAR_DISABLE", "1")
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    assert f(1) == f(1) == 2
    assert len(calls) == 2
    assert entry_files(cache_dir) == []
    assert f.__wrapped__ is not None
    assert isinstance(f.cache_key(1), str)


def test_memojar_disable_for_async(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMOJAR_DISABLE", "1")
    calls: list[Any] = []

    @cached(cache_dir=cache_dir)
    async def f(x):
        calls.append(x)
        return x

    assert inspect.iscoroutinefunction(f)
    assert asyncio.run(f(1)) == asyncio.run(f(1)) == 1
    assert len(calls) == 2


# "false", "no", "off" (any case, spaces around): before, any value but "" and "0" turned
# caching off, MEMOJAR_DISABLE=false too.
@pytest.mark.parametrize("value", ["0", "", "false", "False", "no", "OFF", " 0 "])
def test_memojar_disable_off_values_keep_caching(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MEMOJAR_DISABLE", value)
    calls: list[Any] = []
    f = cached(cache_dir=cache_dir)(counting(calls))
    f(1)
    f(1)
    assert len(calls) == 1


# --- logging ------------------------------------------------------------------------------

def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """memojar's messages logged by this thread: a store of an earlier test may still run a
    thread of its own (the breaker's prober of a stopped Redis saying it is still down)."""
    here = threading.get_ident()
    return [r.getMessage() for r in caplog.records if r.name == "memojar" and r.thread == here]


@pytest.mark.file_only("a Redis cache without a secret logs its one trust warning first")
def test_debug_lines_for_miss_store_and_hit(cache_dir: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="memojar")
    f = cached(cache_dir=cache_dir)(counting([]))
    key = f.cache_key(1)
    f(1)
    f(1)
    messages = _messages(caplog)
    kinds = [m.split()[0] for m in messages]
    assert kinds == ["miss", "store", "hit"]
    for message in messages:
        assert f.__memojar__.name in message
        assert key in message
    assert "bytes" in messages[1]
    assert "bytes" in messages[2]
    here = threading.get_ident()
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.thread == here)


def test_debug_line_for_a_hit_on_an_entry_with_a_long_header(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    np = pytest.importorskip("numpy")
    caplog.set_level(logging.DEBUG, logger="memojar")

    @cached(cache_dir=cache_dir)
    def arrays(n):
        return [np.arange(3) for _ in range(n)]

    arrays(1000)
    assert len(arrays(1000)) == 1000  # the log line must not cost the caller the value
    assert [m.split()[0] for m in _messages(caplog)][-1] == "hit"


def test_debug_line_for_lru_eviction(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="memojar")
    cache = Cache(tmp_path / "small", max_size=5000)

    @cache.cached
    def blob(i):
        return bytes(1000) + bytes([i])

    for i in range(10):
        blob(i)
    evictions = [m for m in _messages(caplog) if m.startswith("evict")]
    assert evictions
    assert all("bytes" in m for m in evictions)


def test_debug_line_for_evicting_a_stale_entry(cache_dir: Path, clock: Clock,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="memojar")
    f = cached(cache_dir=cache_dir, ttl=1)(counting([]))
    f(1)
    clock.now += 2
    f(1)
    assert any(m.startswith("evict") and "stale" in m for m in _messages(caplog))


@pytest.mark.file_only("a Redis cache without a secret logs its one trust warning")
def test_nothing_is_logged_at_info_or_above_in_normal_use(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="memojar")
    f = cached(cache_dir=cache_dir)(counting([]))
    f(1)
    f(1)
    f.cache_clear()
    assert _messages(caplog) == []


# --- threads ------------------------------------------------------------------------------

def test_sixteen_threads_with_the_same_arguments_compute_once(cache_dir: Path) -> None:
    calls: list[Any] = []
    barrier = threading.Barrier(16)

    @cached(cache_dir=cache_dir)
    def slow(x):
        calls.append(x)
        time.sleep(0.3)
        return {"value": x}

    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(slow(5))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results == [{"value": 5}] * 16
    assert calls == [5]
    info = slow.cache_info()
    assert (info.hits, info.misses) == (15, 1)


def test_threads_with_different_arguments_do_not_wait_for_each_other(cache_dir: Path) -> None:
    # All eight computations must be running at once to pass the barrier: threads that
    # waited for each other would break it (a time bound measured moto's speed under load).
    inside = threading.Barrier(8, timeout=20)
    broken = []

    @cached(cache_dir=cache_dir)
    def slow(x):
        try:
            inside.wait()
        except threading.BrokenBarrierError:
            broken.append(x)
        return x

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert broken == []
    assert slow.cache_info().entries == 8



def test_threads_making_the_first_calls_at_once_make_one_identity_and_store_each_value(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Python 3.12 took the lock out of functools.cached_property: threads making the first
    # calls at once each made the function's identity (equal objects, not the same one), and
    # where records are kept (IPython) a call whose identity another thread replaced while
    # it ran was taken for one that crossed a change of what it depends on: its value was
    # not stored, and the thread's next call computed it again (CI, Python 3.13).
    monkeypatch.setattr(memojar._identity, "RECORD", True)
    walk, walks = memojar._identity._walk_dependencies, []
    together = threading.Barrier(5, timeout=0.5)  # all five walking at once, if they can

    def walking(target: Any) -> Any:
        walks.append(target)
        try:
            together.wait()
        except threading.BrokenBarrierError:  # one walks at a time: nobody else comes
            pass
        return walk(target)

    monkeypatch.setattr(memojar._identity, "_walk_dependencies", walking)

    @Cache(cache_dir).cached
    def triple(x: int) -> int:
        return 3 * x

    memo, idents = triple.__memojar__, []  # type: ignore[attr-defined]

    def calls(k: int) -> None:
        idents.append(memo.ident)  # what the first call's key_of asks first
        for _ in range(11):
            triple(k)

    threads = [threading.Thread(target=calls, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert walks  # each thread may walk (none waits for another's walk): one is kept
    assert len(idents) == 5 and all(i is idents[0] for i in idents)
    assert triple.cache_info()[:3] == (50, 5, 5)


def test_making_an_identity_never_waits_for_a_thread_making_another(tmp_path: Path) -> None:
    # ``f``'s identity pickles the object of its depends_on method (by state, as a key
    # would), whose ``__getstate__`` takes the object's lock; another thread holds that
    # lock and makes ``g``'s first call meanwhile. Before, the identity was made under one
    # lock for every memo (as 3.11's cached_property made it under its own): ``g`` waited
    # for it, held by the thread walking ``f``, which waited for the object's lock: both for
    # ever (here the walk gives up on the object's lock after 10 s).
    holding, walking = threading.Event(), threading.Event()
    got: list[bool] = []
    cache = Cache(tmp_path / "cache")

    @cache.cached
    def g(w: int) -> int:
        return w + 1

    class Model:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.w = 1

        def __getstate__(self) -> dict[str, int]:
            if holding.is_set() and not got:  # the walk of f's first call
                walking.set()
                got.append(self.lock.acquire(timeout=10))
            else:
                self.lock.acquire()
            try:
                return {"w": self.w}
            finally:
                self.lock.release()

        def predict(self, x: int) -> int:
            return x * self.w

        def update(self) -> None:
            with self.lock:
                holding.set()
                walking.wait(30)
                self.w = g(self.w)

    model = Model()

    @cache.cached(depends_on=[model.predict])
    def f(x: int) -> int:
        return model.predict(x)

    updating = threading.Thread(target=model.update)
    updating.start()
    holding.wait(30)
    assert f(3) == 3 * model.w
    updating.join(30)
    assert got == [True]  # before: [False], after 10 s
    assert model.w == 2

# --- numpy results ---------------------------------------------------------------------

@pytest.mark.parametrize("n", [10, 1_000_000], ids=["read", "mapped"])
def test_a_cached_array_comes_back_equal_and_writable(cache_dir: Path, n: int) -> None:
    np = pytest.importorskip("numpy")

    @cached(cache_dir=cache_dir)
    def ramp(size):
        return np.arange(size, dtype=np.float64)

    first = ramp(n)
    hit = ramp(n)
    assert ramp.cache_info().hits == 1
    np.testing.assert_array_equal(hit, first)
    hit[0] = -1.0  # a private copy (or a copy-on-write mapping): the entry is untouched
    np.testing.assert_array_equal(ramp(n), first)


def _rebuilt(data: Any) -> _LeavesACycle:
    return _LeavesACycle(bytearray(data))


class _LeavesACycle:
    """A result with a buffer pickled out of band whose reduction leaves its own frame in
    a cycle, as user code does (``except E as e: error = e``): the frames that called it,
    memojar's storing it, are kept until the collector runs. A lock after the buffer, if
    given, fails the pickling."""

    def __init__(self, data: bytearray, lock: Any = None) -> None:
        self.data, self.lock = data, lock

    def __reduce_ex__(self, protocol: Any) -> Any:
        import pickle

        try:
            raise LookupError("no such unit")
        except LookupError as e:
            error = e  # noqa: F841 - the cycle
        return (_rebuilt, (pickle.PickleBuffer(self.data), *([self.lock] if self.lock else [])))


@pytest.mark.parametrize("how", ["returned", "cache_set"])
def test_a_stored_result_whose_reduction_leaves_a_cycle_leaves_no_view_exported_in_it(
    cache_dir: Path, how: str,
) -> None:
    """The entry's views of the result's buffers (its ``PickleBuffer``, the raw view
    written) stayed in the frames the cycle held, exported from the result's own view: the
    collector clearing that view first crashed the interpreter (SIGSEGV, CPython 3.11 and
    3.12), after the call returned."""

    @cached(cache_dir=cache_dir)
    def load(n: int) -> _LeavesACycle:
        return _LeavesACycle(bytearray(b"x" * 64))

    def call() -> None:
        if how == "returned":
            load(1)
        else:
            load.cache_set(_LeavesACycle(bytearray(b"y" * 64)), 2)

    kept, views = views_left_in_a_collection(call)
    assert kept  # the cycle kept memojar's frames
    assert views == []
    assert bytes(load(1 if how == "returned" else 2).data) == (
        b"x" * 64 if how == "returned" else b"y" * 64)


def test_a_result_failing_to_pickle_after_a_buffer_leaves_no_view_exported_in_a_cycle(
    cache_dir: Path,
) -> None:
    """The buffers the failed pickling took stayed with its pickler, in the frames the
    result's own cycle held: the collector could crash on them (as on a stored one's)."""

    @cached(cache_dir=cache_dir)
    def load(n: int) -> _LeavesACycle:
        return _LeavesACycle(bytearray(b"x" * 64), threading.Lock())

    with pytest.warns(MemojarWarning, match="cannot be pickled"):
        kept, views = views_left_in_a_collection(lambda: load(1))
    assert kept
    assert views == []


# --- sweeping entries of other code -------------------------------------------------------

def square(x):
    return x * x


def test_the_first_store_of_another_version_evicts_the_old_versions_entries(
    cache_dir: Path,
) -> None:
    old = cached(cache_dir=cache_dir, version=1)(square)
    old(1)
    old(2)
    new = cached(cache_dir=cache_dir, version=2)(square)
    new(3)
    assert [e.version for e in Cache(cache_dir).entries()] == [2]


def test_switching_back_sweeps_again(cache_dir: Path) -> None:
    cached(cache_dir=cache_dir, version=1)(square)(1)
    cached(cache_dir=cache_dir, version=2)(square)(2)
    cached(cache_dir=cache_dir, version=1)(square)(3)
    assert [e.version for e in Cache(cache_dir).entries()] == [1]


def test_the_sweep_holds_no_memory_per_entry_it_removes(tmp_path: Path) -> None:
    """The first store of new code removes the old code's entries as it finds them, in
    batches: its memory does not grow with them (before: 960 MB of RSS for that one call
    over 1,000,000 old entries)."""
    old = cached(cache_dir=tmp_path, version=1)(square)
    for x in range(20_000):
        old(x)
    new = cached(cache_dir=tmp_path, version=2)(square)
    value, peak = traced_peak(lambda: new(-1))  # the first store: the sweep
    assert value == 1
    assert [e.version for e in Cache(tmp_path).entries()] == [2]
    assert peak < 4_000_000, f"{peak:,} bytes at the peak of a sweep of 20,000 entries"


@pytest.mark.parametrize("how", ["Cache.clear", "cache_clear"])
def test_clear_holds_no_memory_per_entry_it_removes(tmp_path: Path, how: str) -> None:
    """``Cache.clear()`` and ``f.cache_clear()`` remove entries as they list them, in
    batches (before: every entry listed was held first, 234 MB of RSS for ``Cache.clear()``
    of 300,000 entries)."""
    cache = Cache(tmp_path)
    f = cache.cached(square)
    for x in range(20_000):
        f(x)
    removed, peak = traced_peak(cache.clear if how == "Cache.clear" else f.cache_clear)
    assert (removed, Cache(tmp_path).stats().entries) == (20_000, 0)
    assert peak < 4_000_000, f"{peak:,} bytes at the peak of a clear of 20,000 entries"


def test_an_unchanged_function_does_not_list_its_entries_again(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache(location)
    cache.cached(square)(1)  # the first store sweeps and notes this code
    again = Cache(location)  # as a new process would

    def no_listing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sweep listed entries of unchanged code")

    monkeypatch.setattr(again.store, "scan", no_listing)
    again.cached(square)(2)
    assert Cache(location).stats().entries == 2
