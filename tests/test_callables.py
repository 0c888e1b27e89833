"""The identity of every kind of callable (issue 10): never another call's result.

Bound methods, partials, callable instances and closures are a function plus what is bound
to it; names never hold memory addresses; copies made by pickle and cloudpickle behave as
the original; what cannot be cached is rejected when decorated.
"""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from memojar import cached
from memojar._identity import function_name
from scaled_kit import LockedScaler, identity_function


def run_script(path: Path, source: str, *args: str, timeout: float = 120) -> str:
    """Write ``source`` to ``path`` and run it as ``__main__``; return its stdout."""
    path.write_text(textwrap.dedent(source))
    proc = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout,
        cwd=path.parent,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --- 1. factories of closures that capture callables --------------------------------------

def adder(n: int):
    def add(x):
        return x + n
    return add


class Model:
    def __init__(self, w: int) -> None:
        self.w = w

    def predict(self, x):
        return self.w * x


def power(x, p):
    return x ** p


def make(fn: Any, cache_dir: Path):
    @cached(cache_dir=cache_dir)
    def f(x):
        return fn(x) * 2
    return f


@pytest.mark.parametrize(
    ("one", "two"),
    [
        pytest.param(lambda: adder(2), lambda: adder(3), id="closure"),
        pytest.param(lambda: Model(2).predict, lambda: Model(3).predict, id="bound-method"),
        pytest.param(lambda: functools.partial(power, p=2), lambda: functools.partial(power, p=3),
                     id="partial"),
    ],
)
def test_factories_capturing_different_callables_never_share_results(
    cache_dir: Path, one: Any, two: Any
) -> None:
    first, second = make(one(), cache_dir), make(two(), cache_dir)
    assert first(5) == one()(5) * 2
    assert second(5) == two()(5) * 2
    assert first(5) == one()(5) * 2


def _reading(table: dict[int, int], cache_dir: Path) -> Any:
    @cached(cache_dir=cache_dir)
    def look(x: int) -> int:
        return table[x]

    return look


def test_closures_over_values_too_large_to_hash_never_share_results(cache_dir: Path) -> None:
    """What tells them apart is counted by its type over 100,000 items (or 16 MB of
    pickle): each closure's results are its own, with a warning saying so. Before, the
    closures over two dicts of 200,000 items had one scope, and the second returned the
    first's value: 3 for -3."""
    from memojar import MemojarWarning

    positive = {i: i for i in range(200_000)}
    negative = {i: -i for i in range(200_000)}
    with pytest.warns(MemojarWarning, match=r"_reading.<locals>.look captures a value too "
                                            r"large to tell its closures apart by"):
        first, second = _reading(positive, cache_dir), _reading(negative, cache_dir)
    assert (first(3), second(3), first(3)) == (3, -3, 3)


def test_a_closure_over_a_value_too_large_to_hash_sees_it_change_in_the_next_run(
        tmp_path: Path) -> None:
    """Before, the next run's closure over the changed dict returned the first run's 3."""
    source = """
        import sys
        from memojar import cached

        def make(table):
            @cached(cache_dir=sys.argv[1])
            def look(x):
                return table[x]
            return look

        print(make({i: i * FACTOR for i in range(200_000)})(3))
    """
    script = tmp_path / "app.py"
    cache = str(tmp_path / "cache")
    assert run_script(script, source.replace("FACTOR", "1"), cache).split() == ["3"]
    assert run_script(script, source.replace("FACTOR", "2"), cache).split() == ["6"]


# --- 2. and identity: bound methods --------------------------------------------------------

class Predictor:
    """joblib's KlassWithCachedMethod pattern."""

    def __init__(self, w: int, cache_dir: Path) -> None:
        self.w = w
        self.calls = 0
        self.predict = cached(cache_dir=cache_dir, ignore=())(self.predict)

    def predict(self, x):
        self.calls += 1
        return self.w * x

    def __getstate__(self) -> dict:
        return {"w": self.w}  # the state that matters (not the wrapper, not the counter)


def test_a_bound_method_cached_in_init_keys_on_its_instance(cache_dir: Path) -> None:
    assert Predictor(2, cache_dir).predict(1) == 2
    assert Predictor(3, cache_dir).predict(1) == 3
    again = Predictor(2, cache_dir)
    assert again.predict(1) == 2
    assert again.calls == 0  # an equal instance: a hit



SCORER = """
    import sys
    from memojar import cached

    calls = []

    class Scorer:
        def __init__(self, w):
            self.w = w
            self.score = cached(cache_dir=sys.argv[1])(self.score)

        def score(self, x):
            calls.append(self.w)
            return self.w * x

    first, second = Scorer(2), Scorer(2)
    print(first.score(1), second.score(1), Scorer(3).score(1), calls)
    unbound = cached(cache_dir=sys.argv[1])(Scorer.score)
    print(first.score.cache_key(1) == second.score.cache_key(1)
          == unbound.cache_key(Scorer(2), 1))
"""


def test_a_bound_method_cached_in_init_without_getstate_keys_on_the_instances_data(
    tmp_path: Path,
) -> None:
    """``self.score = cached(self.score)`` in ``__init__``, no ``__getstate__``: the
    instance's own cached method, in its ``__dict__``, is no part of its key, so equal
    instances share one key, in a script too. Before, the wrapper was keyed by what it
    captures (the instance again, through itself): the first instance of a script keyed
    apart from the next equal ones, a computation more (``[2, 2, 3]``)."""
    out = run_script(tmp_path / "scorer.py", SCORER, str(tmp_path / "cache"))
    assert out.split("\n")[:2] == ["2 2 3 [2, 3]", "True"], out

class Point:
    def __init__(self, x: int) -> None:
        self.x = x

    def scaled(self, k):
        return self.x * k


def test_a_bound_method_shares_entries_with_the_method_decorated_in_its_class(
    cache_dir: Path,
) -> None:
    bound = cached(cache_dir=cache_dir)(Point(2).scaled)
    unbound = cached(cache_dir=cache_dir)(Point.scaled)
    assert function_name(bound) == function_name(unbound) == f"{__name__}.Point.scaled"
    assert bound.cache_key(3) == unbound.cache_key(Point(2), 3)
    assert bound(3) == 6
    assert unbound.cache_contains(Point(2), 3)


def test_a_bound_method_with_self_ignored_keys_on_arguments_only(cache_dir: Path) -> None:
    one = cached(cache_dir=cache_dir, ignore=("self",))(Point(2).scaled)
    two = cached(cache_dir=cache_dir, ignore=("self",))(Point(3).scaled)
    assert one.cache_key(3) == two.cache_key(3)


# --- 4. partials and callable instances ---------------------------------------------------

def total(values, scale=1):
    return sum(values) * scale


class Scaler:
    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, x):
        return self.k * x


def test_partials_key_on_their_bound_arguments(cache_dir: Path) -> None:
    a1 = cached(cache_dir=cache_dir)(functools.partial(total, [1, 2]))
    a2 = cached(cache_dir=cache_dir)(functools.partial(total, [3, 4]))
    assert a1() == 3
    assert a2() == 7
    assert a1(scale=2) == 6


def test_a_partial_keys_like_the_call_it_stands_for(cache_dir: Path) -> None:
    plain = cached(cache_dir=cache_dir)(total)
    part = cached(cache_dir=cache_dir)(functools.partial(total, scale=2))
    assert part.cache_key([1]) == plain.cache_key([1], 2)
    assert part.cache_key([1], scale=3) == plain.cache_key([1], 3)  # the call's keyword wins


def test_callable_instances_key_on_their_state(cache_dir: Path) -> None:
    two = cached(cache_dir=cache_dir)(Scaler(2))
    three = cached(cache_dir=cache_dir)(Scaler(3))
    assert two(5) == 10
    assert three(5) == 15
    assert two.cache_key(5) == cached(cache_dir=cache_dir)(Scaler(2)).cache_key(5)


@pytest.mark.parametrize(
    ("expr", "name"),
    [
        ("functools.partial(total, [1])", "total"),
        ("Scaler(2)", "Scaler.__call__"),
        ("Point(1).scaled", "Point.scaled"),
        ("functools.partial(Point(1).scaled, 2)", "Point.scaled"),
    ],
)
def test_names_never_hold_a_memory_address(expr: str, name: str) -> None:
    made = eval(expr)
    assert function_name(made) == f"{__name__}.{name}"
    assert " at 0x" not in function_name(made)


_NEW_PROCESS = """
import functools, json, sys
sys.path.insert(0, {folder!r})
from memojar import cached
import callmod
calls = []
def record(f):
    return f
fns = [cached(cache_dir={cache!r})(functools.partial(callmod.total, [1, 2])),
       cached(cache_dir={cache!r})(callmod.Scaler(2)),
       cached(cache_dir={cache!r})(callmod.Scaler(2).__call__)]
print(json.dumps([[f(), f.cache_info().hits] if i == 0 else [f(5), f.cache_info().hits]
                  for i, f in enumerate(fns)]))
"""

_CALLMOD = """
def total(values, scale=1):
    return sum(values) * scale

class Scaler:
    def __init__(self, k):
        self.k = k
    def __call__(self, x):
        return self.k * x
"""


def test_partials_and_callable_instances_hit_in_a_new_process(tmp_path: Path) -> None:
    (tmp_path / "callmod.py").write_text(_CALLMOD)
    script = _NEW_PROCESS.format(folder=str(tmp_path), cache=str(tmp_path / "cache"))
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 0, second.stderr
    assert first.stdout.strip() == "[[3, 0], [10, 0], [10, 1]]"
    assert second.stdout.strip() == "[[3, 1], [10, 1], [10, 1]]"


# --- 4b. decorator classes holding what cannot be pickled ---------------------------------

class _Settings:
    """An object of the user's holding a factor beside a lock."""

    def __init__(self, k):
        self.k, self.lock = k, threading.Lock()


class _HoldingSettings:
    """A decorator class of ``functools.update_wrapper`` whose state is one level down."""

    def __init__(self, fn, k):
        self.fn, self.settings = fn, _Settings(k)
        functools.update_wrapper(self, fn)

    def __call__(self, x):
        with self.settings.lock:
            return self.fn(x) * self.settings.k


class _Passing:
    """A decorator class of ``functools.update_wrapper`` around another wrapper object
    (whose attributes ``update_wrapper`` copies onto it: the lock too)."""

    def __init__(self, fn):
        functools.update_wrapper(self, fn)
        self.inner = fn

    def __call__(self, x):
        return self.inner(x)


@pytest.mark.parametrize("held", ["beside", "one level down", "under another wrapper"])
@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
def test_a_wrapper_object_holding_a_lock_is_told_apart_by_its_other_state(
    tmp_path: Path, held: str, memory: int | None
) -> None:
    """Two instances of a decorator class of ``functools.update_wrapper`` that hold a lock
    and another factor ``k`` are two functions: their state counts by its parts, the lock
    by its type. Before, the whole counted by its type (it cannot be pickled): the second
    returned the first's value, 10 for ``k=3``."""
    def wrapper(k):
        if held == "beside":
            return LockedScaler(identity_function, k)
        if held == "one level down":
            return _HoldingSettings(identity_function, k)
        return _Passing(LockedScaler(identity_function, k))

    two = cached(cache_dir=tmp_path / "c", memory=memory)(wrapper(2))
    three = cached(cache_dir=tmp_path / "c", memory=memory)(wrapper(3))
    assert two(5) == 10
    assert three(5) == 15  # before: 10
    assert [two(5), three(5), two(5)] == [10, 15, 10]


_LOCKED_WRAPPER_SCRIPT = """
import sys
from memojar import cached
sys.path.insert(0, sys.argv[3])
from scaled_kit import LockedScaler, identity_function

f = cached(cache_dir=sys.argv[1])(LockedScaler(identity_function, int(sys.argv[2])))
print(f(5), f.cache_info().hits)
"""


def test_a_wrapper_object_holding_a_lock_hits_in_another_process_of_the_same_state_only(
    tmp_path: Path,
) -> None:
    """A process whose decorator-class instance holds the same ``k`` beside a lock of its
    own reads what another stored (the lock counts by its type); one of another ``k``
    computes its own. Before, the process with ``k=3`` read the value the one with ``k=2``
    had stored: 10."""
    script, cache, kit = tmp_path / "scaled.py", str(tmp_path / "c"), str(Path(__file__).parent)
    assert run_script(script, _LOCKED_WRAPPER_SCRIPT, cache, "2", kit).split() == ["10", "0"]
    assert run_script(script, _LOCKED_WRAPPER_SCRIPT, cache, "2", kit).split() == ["10", "1"]
    assert run_script(script, _LOCKED_WRAPPER_SCRIPT, cache, "3", kit).split() == ["15", "0"]


def _captures(s):
    """A closure calling what it captures (made anew each call: a factory's function)."""
    def g(x):
        return s(x)
    return g


def _reads(settings):
    """A closure reading the factor of a settings object it captures."""
    def g(x):
        return settings.k * x
    return g


class _LockedCall:
    """A callable instance (no ``functools.update_wrapper``) holding a lock beside ``k``."""

    def __init__(self, fn, k):
        self.fn, self.k, self.lock = fn, k, threading.Lock()

    def __call__(self, x):
        with self.lock:
            return self.fn(x) * self.k


class _HoldingItself:
    """A callable instance holding a lock and a closure that captures the instance."""

    def __init__(self, k):
        me = self
        self.k, self.lock, self.f = k, threading.Lock(), lambda x: me.k * x

    def __call__(self, x):
        return self.f(x)


def _scaled_by(settings, x):
    return settings.k * x


@pytest.mark.parametrize("captured", ["callable", "holding itself", "settings",
                                      "bound method", "partial"])
def test_a_closure_capturing_an_object_holding_a_lock_is_told_apart_by_its_other_state(
    tmp_path: Path, captured: str
) -> None:
    """Two closures of one factory capturing an object that holds a lock and a factor
    ``k`` (a callable instance it calls, one holding a closure that captures it, settings
    it reads, a method bound to it, a partial holding it) are two functions: the object
    counts by its parts, the lock by its type. Before, the whole counted by its type (it
    cannot be pickled): the second returned the first's value, 10 for ``k=3``."""
    def make(k):
        if captured == "callable":
            return _captures(_LockedCall(identity_function, k))
        if captured == "holding itself":
            return _captures(_HoldingItself(k))
        if captured == "bound method":
            return _captures(_LockedCall(identity_function, k).__call__)
        if captured == "partial":
            return _captures(functools.partial(_scaled_by, _Settings(k)))
        return _reads(_Settings(k))

    two = cached(cache_dir=tmp_path / "c")(make(2))
    three = cached(cache_dir=tmp_path / "c")(make(3))
    assert two(5) == 10
    assert three(5) == 15  # before: 10
    assert [two(5), three(5), cached(cache_dir=tmp_path / "c")(make(2))(5)] == [10, 15, 10]


# --- 4c. wrapt proxies: their wrapper and their own state -------------------------------

def _wrapt_proxy(kind: str, k: int) -> Any:
    """A wrapt proxy around ``identity_function`` multiplying by ``k``, held as ``kind``
    says: the wrapper function itself (2 and 3 apart), captured by it, bound to an object
    holding a lock, a subclass's ``_self_k`` beside a lock."""
    wrapt = pytest.importorskip("wrapt")

    def double(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs) * 2

    def triple(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs) * 3

    def times(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs) * k

    class Decorator:
        def __init__(self, k):
            self.k, self.lock = k, threading.Lock()

        @wrapt.decorator
        def __call__(self, wrapped, instance, args, kwargs):
            with self.lock:
                return wrapped(*args, **kwargs) * self.k

    class Scaling(wrapt.FunctionWrapper):
        def __init__(self, fn, k):
            super().__init__(fn, self.scale)
            self._self_k, self._self_lock = k, threading.Lock()

        def scale(self, wrapped, instance, args, kwargs):
            return wrapped(*args, **kwargs) * self._self_k

    class Proxy(wrapt.ObjectProxy):
        def __init__(self, fn, k):
            super().__init__(fn)
            self._self_k, self._self_lock = k, threading.Lock()

        def __call__(self, x):
            return self.__wrapped__(x) * self._self_k

    if kind == "wrapper":
        return wrapt.FunctionWrapper(identity_function, {2: double, 3: triple}[k])
    if kind == "closure":
        return wrapt.FunctionWrapper(identity_function, times)
    if kind == "decorator object":
        return Decorator(k)(identity_function)
    if kind == "FunctionWrapper subclass":
        return Scaling(identity_function, k)
    return Proxy(identity_function, k)


@pytest.mark.parametrize("kind", ["wrapper", "closure", "decorator object",
                                  "FunctionWrapper subclass", "ObjectProxy subclass"])
def test_wrapt_proxies_around_one_function_are_told_apart_by_their_wrappers(
    tmp_path: Path, kind: str
) -> None:
    """Two wrapt proxies around one function are two functions: the wrapper (its code,
    what it captures, the object it is bound to, a lock there by its type) and a
    subclass's own ``_self_*`` state count beside the function. Before, the proxy passed
    ``__code__`` and ``__closure__`` on to the function it wraps and counted as it: the
    second returned the first's value, 10 for ``k=3``."""
    two = cached(cache_dir=tmp_path / "c")(_wrapt_proxy(kind, 2))
    three = cached(cache_dir=tmp_path / "c")(_wrapt_proxy(kind, 3))
    assert two(5) == 10
    assert three(5) == 15  # before: 10
    assert [two(5), three(5), cached(cache_dir=tmp_path / "c")(_wrapt_proxy(kind, 2))(5)] == [
        10, 15, 10]


_WRAPT_SCRIPT = """
import os, sys
os.environ.pop("WRAPT_DISABLE_EXTENSIONS", None)  # (any value disables them)
if sys.argv[4] == "1":
    os.environ["WRAPT_DISABLE_EXTENSIONS"] = "1"
import wrapt
assert (wrapt.FunctionWrapper.__module__ == "wrapt.wrappers") == (sys.argv[4] == "1")
from memojar import cached

FACTOR = int(sys.argv[3])

def base(x):
    return x

def double(wrapped, instance, args, kwargs):
    return wrapped(*args, **kwargs) * 2

def triple(wrapped, instance, args, kwargs):
    return wrapped(*args, **kwargs) * 3

def by_factor(wrapped, instance, args, kwargs):
    return wrapped(*args, **kwargs) * FACTOR

wrapper = {"double": double, "triple": triple, "by_factor": by_factor}[sys.argv[2]]
f = cached(cache_dir=sys.argv[1])(wrapt.FunctionWrapper(base, wrapper))
print(f(5), f.cache_info().hits)
"""


@pytest.mark.parametrize("pure", ["0", "1"], ids=["compiled", "pure Python"])
def test_a_wrapt_proxy_hits_in_another_process_of_the_same_wrapper_only(
    tmp_path: Path, pure: str
) -> None:
    """A process whose wrapt proxy has the same wrapper reads what another stored; one of
    another wrapper, or whose wrapper reads another value of a global, computes its own.
    Before, the process with ``triple`` read the value the one with ``double`` had
    stored: 10. The same with wrapt's proxies of pure Python (``WRAPT_DISABLE_EXTENSIONS``),
    which before failed the call (taken for a callable instance, the proxy was pickled
    into the key), then returned each other's values (their ``_self_*`` unseen)."""
    pytest.importorskip("wrapt")
    script, cache = tmp_path / "wrapped.py", str(tmp_path / "c")

    def run(wrapper: str, factor: str) -> list[str]:
        return run_script(script, _WRAPT_SCRIPT, cache, wrapper, factor, pure).split()

    assert run("double", "0") == ["10", "0"]
    assert run("double", "0") == ["10", "1"]
    assert run("triple", "0") == ["15", "0"]
    assert run("triple", "0") == ["15", "1"]
    assert run("by_factor", "4") == ["20", "0"]
    assert run("by_factor", "5") == ["25", "0"]


# --- 5. key= gets the bound arguments; defaults are code ----------------------------------

def test_key_function_receives_the_defaults(cache_dir: Path) -> None:
    seen: list[tuple] = []

    def key(x, method):
        seen.append((x, method))
        return (x, method)

    @cached(cache_dir=cache_dir, key=key)
    def f(x, method="mean"):
        return (x, method)

    f(1)
    f(1, method="max")
    assert seen[0] == (1, "mean")
    assert f.cache_key(1) == f.cache_key(1, "mean") != f.cache_key(1, "max")


def test_key_function_that_cannot_take_the_arguments_is_rejected_by_name(
    cache_dir: Path,
) -> None:
    def analyse(x, method="mean"):
        return x

    with pytest.raises(TypeError, match=r"key= of .*analyse must take the same arguments"):
        cached(cache_dir=cache_dir, key=lambda x: x)(analyse)


def test_key_function_of_a_bound_method_still_keys_on_the_instance(cache_dir: Path) -> None:
    one = cached(cache_dir=cache_dir, key=lambda k: k)(Point(2).scaled)
    two = cached(cache_dir=cache_dir, key=lambda k: k)(Point(3).scaled)
    assert one(3) == 6
    assert two(3) == 9


def test_an_edited_default_with_key_does_not_serve_old_results(tmp_path: Path) -> None:
    source = """
    import sys
    from memojar import cached

    @cached(cache_dir={cache!r}, key=lambda x, method: x)
    def f(x, method={default!r}):
        return method
    print(f(1))
    """
    cache = str(tmp_path / "cache")
    assert run_script(tmp_path / "a.py", source.format(cache=cache, default="mean")) == "mean\n"
    assert run_script(tmp_path / "a.py", source.format(cache=cache, default="max")) == "max\n"


# --- 6. objects that answer attribute lookups their own way -------------------------------

def _plus_one():
    """A fresh function (its ``__code__`` is reassigned by the tests below)."""
    def inner(x):
        return x + 1
    return inner


def _times_two(x):
    return x * 2


class _RaisingGetattr:
    """A wrapper object whose ``__getattr__`` raises a RuntimeError for every name it lacks
    (``__code__``, ``__signature__``...), as werkzeug's ``LocalProxy`` does outside its
    context; of ``functools.update_wrapper``, or not."""

    def __init__(self, fn, k, wraps=True):
        self.fn, self.k = fn, k
        if wraps:
            functools.update_wrapper(self, fn)

    def __call__(self, *args):
        return self.k * self.fn(*args)

    def __getattr__(self, name):
        raise RuntimeError(f"no {name} here")


class _AnsweringGetattr(_RaisingGetattr):
    """A proxy whose ``__getattr__`` answers every name it lacks (``__code__`` is 42)."""

    def __getattr__(self, name):
        return 42


class _RaisingWrapped:
    """A callable instance whose ``__wrapped__`` is a property that raises."""

    def __init__(self, fn, k):
        self.fn, self.k = fn, k

    def __call__(self, *args):
        return self.k * self.fn(*args)

    @property
    def __wrapped__(self):
        raise RuntimeError("nothing wrapped")


class _RaisingDict:
    """A wrapper object whose ``__dict__`` is a property that raises (its attributes are
    set one by one: ``functools.update_wrapper`` reads ``__dict__``)."""

    def __init__(self, fn, k):
        self.fn, self.k, self.__wrapped__ = fn, k, fn

    def __call__(self, *args):
        return self.k * self.fn(*args)

    @property
    def __dict__(self):
        raise RuntimeError("no dict")


class _NumberedModule:
    """A wrapper object of ``functools.update_wrapper`` whose class's ``__module__`` is no
    module name (its instances take the function's)."""

    def __init__(self, fn, k):
        self.fn, self.k = fn, k
        functools.update_wrapper(self, fn)

    def __call__(self, *args):
        return self.k * self.fn(*args)


_NumberedModule.__module__ = 5  # type: ignore[assignment]


def _adder():
    """A fresh function of two parameters (its ``__code__`` is reassigned below)."""
    def add(base, x):
        return base + x
    return add


def _minus(base, x):
    return base - x


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="a partial binds as a method there")
@pytest.mark.filterwarnings("ignore:functools.partial will be a method descriptor")
def test_an_instance_whose_class_call_is_a_partial_runs_the_partial(tmp_path: Path) -> None:
    """``class P: __call__ = partial(add, 10)``: ``P()(5)`` runs ``add(10, 5)``, the
    instance unseen (a partial is no method descriptor before Python 3.14; 3.13 warns), so
    it is that partial. Before: "function() takes 0 positional arguments but 1 was given":
    the call was bound by ``inspect.signature``, which drops the partial's first parameter
    left as if it were ``self``."""
    add = _adder()

    class P:
        __call__ = functools.partial(add, 10)

    f = cached(cache_dir=tmp_path)(P())
    assert f(5) == P()(5) == 15
    assert f(5) == 15 and f.cache_info().hits == 1
    assert f.cache_key(5) == cached(cache_dir=tmp_path)(functools.partial(add, 10)).cache_key(5)
    add.__code__ = _minus.__code__
    assert f(5) == 5


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="a partial binds as a method there")
@pytest.mark.filterwarnings("ignore:functools.partial will be a method descriptor")
def test_a_key_instance_whose_class_call_is_a_partial_is_taken(tmp_path: Path) -> None:
    """``key=`` an instance whose class says ``__call__ = partial(first)`` is called as
    that partial, with the call's arguments. Before, it was refused on 3.10 to 3.12
    ("key(y) cannot: too many positional arguments"): ``inspect`` dropped the partial's
    first parameter as if it were ``self``."""
    def first(x, y):
        return x

    class Key:
        __call__ = functools.partial(first)

    f = cached(cache_dir=tmp_path, key=Key())(lambda x, y: x + y)
    assert [f(1, 2), f(1, 3), f(2, 3)] == [3, 3, 5]


@pytest.mark.parametrize("wraps", [True, False], ids=["update_wrapper", "bare"])
def test_a_getattr_raising_another_error_than_attributeerror_is_read_as_absent(
    tmp_path: Path, wraps: bool
) -> None:
    """Every name looked up on such an object that it lacks counts as absent, as an
    AttributeError would, and the object as a wrapper of the function (or as a callable
    instance). Before, its RuntimeError failed the decoration from inside memojar."""
    inner = _plus_one()
    two, three = _RaisingGetattr(inner, 2, wraps), _RaisingGetattr(inner, 3, wraps)
    if sys.version_info < (3, 11):
        # pickle asks the instance for __getstate__ there: its state cannot be read, and
        # instances of other state could not be told apart
        with pytest.raises(TypeError, match=r"cannot cache .*its state cannot be read "
                                            r"\(RuntimeError: no __getstate__ here\)"):
            cached(cache_dir=tmp_path)(two)
        return
    f = cached(cache_dir=tmp_path)(two)
    assert f(5) == f(5) == 12 and f.cache_info().hits == 1
    inner.__code__ = _times_two.__code__  # what it runs, edited: computed again
    assert f(5) == 20
    assert cached(cache_dir=tmp_path)(three)(5) == 30  # another state: another value


@pytest.mark.parametrize("wraps", [True, False], ids=["update_wrapper", "bare"])
def test_a_proxy_whose_getattr_answers_every_name_is_cached_by_what_it_runs(
    tmp_path: Path, wraps: bool
) -> None:
    """A ``__getattr__`` answering every name (a lazy proxy's, a mock's): what it answers
    where memojar needs a code object, a signature, a name or a table counts as absent.
    Before: "'int' object has no attribute 'co_flags'" (and "__name__ must be set to a
    string object") from inside memojar."""
    inner = _plus_one()
    two, three = _AnsweringGetattr(inner, 2, wraps), _AnsweringGetattr(inner, 3, wraps)
    if sys.version_info < (3, 11):  # pickle takes the state from the 42 it answers there
        with pytest.raises(TypeError, match=r"its state cannot be read \(its __getattr__ "
                                            r"answers __getstate__ \(int\)\)"):
            cached(cache_dir=tmp_path)(two)
        return
    f = cached(cache_dir=tmp_path)(two)
    assert f(5) == f(5) == 12 and f.cache_info().hits == 1
    inner.__code__ = _times_two.__code__  # what it runs, edited: computed again
    assert f(5) == 20
    assert cached(cache_dir=tmp_path)(three)(5) == 30  # another state: another value


def test_a_wrapped_property_that_raises_is_a_callable_instance(tmp_path: Path) -> None:
    """``__wrapped__`` a property raising: nothing wrapped, the object its class's
    ``__call__`` and the instance (in the key). Before: its RuntimeError, from inside
    memojar (``scope_of``)."""
    inner = _plus_one()
    f = cached(cache_dir=tmp_path)(_RaisingWrapped(inner, 2))
    assert f(5) == f(5) == 12 and f.cache_info().hits == 1
    inner.__code__ = _times_two.__code__  # the function its state holds: another key
    assert f(5) == 20
    assert cached(cache_dir=tmp_path)(_RaisingWrapped(inner, 3))(5) == 30  # another state


def test_a_wrapper_whose_class_module_is_no_name_is_followed_as_the_users(
    tmp_path: Path,
) -> None:
    """``Wrapper.__module__ = 5``: where its code lives is not known, so it is the user's,
    whose methods count in its identity. Before: "'int' object has no attribute
    'partition'" at its first call, from inside memojar."""
    inner = _plus_one()
    f = cached(cache_dir=tmp_path)(_NumberedModule(inner, 2))
    assert f(5) == f(5) == 12 and f.cache_info().hits == 1
    inner.__code__ = _times_two.__code__  # what it runs, edited: computed again
    assert f(5) == 20
    assert cached(cache_dir=tmp_path)(_NumberedModule(inner, 3))(5) == 30  # another state


def test_a_wrapper_whose_dict_property_raises_keys_on_its_state(tmp_path: Path) -> None:
    """``__dict__`` a property raising: memojar's wrapper takes what it can of it, and its
    state is read as pickle reads it (from the instance itself). Before: its RuntimeError
    failed the decoration from inside memojar; and once read past that, instances of
    other state returned each other's values (its state was not read at all)."""
    inner = _plus_one()
    f = cached(cache_dir=tmp_path)(_RaisingDict(inner, 2))
    assert f(5) == f(5) == 12 and f.cache_info().hits == 1
    inner.__code__ = _times_two.__code__  # what it runs, edited: computed again
    assert f(5) == 20
    assert cached(cache_dir=tmp_path)(_RaisingDict(inner, 3))(5) == 30  # another state


# --- copies: pickle, cloudpickle, joblib, multiprocessing ---------------------------------

@cached
def module_level(x):
    return x + 1


def test_pickle_copies_a_decorated_function_by_reference() -> None:
    assert pickle.loads(pickle.dumps(module_level)) is module_level


# A decorated function copied by value (cloudpickle: a function of the test body, of
# ``__main__`` or of a notebook) carries the wrapper's closure by value: its ``_Memo`` with the
# opened store, and its hit counter. A file store's attributes happen to pickle, but the S3
# store holds a boto3 client (an ``SSLContext``) and the Redis store a redis-py client (an
# ``RLock``). The fix belongs in ``_decorator.py``: ``_Memo`` pickles its cache (which reduces
# to its location, secret and options), not the store, and takes ``cache.store`` again when
# unpickled. The counters (``functools.partial(next, itertools.count())``, also in the closure
# as ``hit``) pickle only with a DeprecationWarning on 3.12 and 3.13 and not at all on 3.14:
# a copy needs fresh counters (a ``count`` subclass whose ``__reduce__`` starts at 0).
# (test_distributed.py sends such copies to dask workers.)
def test_a_cloudpickle_copy_behaves_as_the_original(location: str) -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    calls: list[int] = []

    @cached(cache_dir=location)
    def local(x):
        calls.append(x)
        return x * 10

    copy = cloudpickle.loads(cloudpickle.dumps(local))
    assert copy(1) == 10  # a miss in the copy: the value, not memojar's marker
    assert copy(1) == 10
    assert local(1) == 10  # the copy's entry is the original's
    assert calls == []  # the copy appended to its own copy of the list
    assert local.cache_info().hits == 1


_JOBLIB = """
import sys
from joblib import Parallel, delayed
from memojar import cached

@cached(cache_dir=sys.argv[1])
def square(x):
    return x * x

if __name__ == "__main__":
    out = Parallel(n_jobs=2, backend="loky")(delayed(square)(i) for i in range(6))
    print(out, sum(square.cache_contains(i) for i in range(6)))
"""


def test_joblib_parallel_with_loky_returns_values_and_stores_them(tmp_path: Path) -> None:
    pytest.importorskip("joblib")
    out = run_script(tmp_path / "par.py", _JOBLIB, str(tmp_path / "cache"))
    assert out == "[0, 1, 4, 9, 16, 25] 6\n"


_MP = """
import multiprocessing, os, sys
from memojar import cached
from memojar._identity import function_name

@cached(cache_dir=sys.argv[1])
def work(x):
    with open(sys.argv[2], "a") as log:
        log.write(f"{{os.getpid()}}\\n")
    return x * 3

def where(_):
    return function_name(work), work(7)

if __name__ == "__main__":
    work(7)
    ctx = multiprocessing.get_context({method!r})
    with ctx.Pool(1) as pool:
        print(pool.map(where, [0]))
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_worker_processes_share_the_scripts_entries(tmp_path: Path, method: str) -> None:
    log = tmp_path / "computed.log"
    out = run_script(tmp_path / "mp.py", _MP.format(method=method), str(tmp_path / "cache"),
                     str(log))
    assert out == "[('__main__.work', 21)]\n"
    assert len(log.read_text().splitlines()) == 1  # computed once, by the script


# --- rejected when decorated --------------------------------------------------------------

def test_generator_functions_are_rejected(cache_dir: Path) -> None:
    def numbers(n):
        yield from range(n)

    with pytest.raises(TypeError, match=r"numbers: it is a generator function.*return a list"):
        cached(cache_dir=cache_dir)(numbers)


def test_async_generator_functions_are_rejected(cache_dir: Path) -> None:
    async def numbers(n):
        for i in range(n):
            yield i

    with pytest.raises(TypeError, match=r"numbers: it is an async generator function"):
        cached(cache_dir=cache_dir)(numbers)


def test_a_cache_method_reached_through_an_instance_says_it_takes_self(tmp_path: Path
                                                                       ) -> None:
    # model.predict.cache_contains(3) bound 3 to self and said only "Model.predict() missing
    # 1 required positional argument: 'x'", when x was what the user had passed.
    class Model:
        @cached(cache_dir=tmp_path)
        def predict(self, x):
            return x

    model = Model()
    model.predict(3)
    for method in ("cache_contains", "cache_key", "cache_delete", "cache_explain", "refresh"):
        # each names itself: before, every hint showed cache_contains
        with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'x' "
                                            r"\(the cache methods of a method take self too: "
                                            rf"obj.predict.{method}\(obj, ...\)"):
            getattr(model.predict, method)(3)
    with pytest.raises(TypeError, match=r"take self too: obj.predict.cache_set\(value, obj, "):
        model.predict.cache_set(9, 3)
    assert model.predict.cache_contains(model, 3)  # as the message says
    with pytest.raises(TypeError) as raised:  # a plain function's error is Python's alone
        cached(cache_dir=tmp_path)(lambda x: x).cache_contains()
    assert "take self" not in str(raised.value)


def test_classes_are_rejected(cache_dir: Path) -> None:
    with pytest.raises(TypeError, match=r"functions, not classes \(.*Point\)"):
        cached(cache_dir=cache_dir)(Point)


@pytest.fixture(params=[True, False], ids=["bare", "with-options"])
def decorate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
             tmp_path: Path) -> Any:
    """``@cached`` as written bare and with options, on the default cache (in tmp_path)."""
    monkeypatch.setenv("MEMOJAR_DIR", str(tmp_path))
    return cached if request.param else cached(ttl=60)


def test_cached_above_classmethod_keys_on_the_class(decorate: Any) -> None:
    # Before: "@cached is above @classmethod ...: put it below", a TypeError at the class's
    # definition, of the order the types accept (tests/test_typing.py's Model.build) and
    # that works for @staticmethod.
    calls = []

    class Base:
        size = 1

        @decorate
        @classmethod
        def build(cls, x):
            calls.append(cls.__name__)
            return cls.size * x

    class Big(Base):
        size = 10

    assert isinstance(vars(Base)["build"], classmethod)
    assert Base.build(2) == 2 and Big.build(2) == 20 and Base().build(2) == 2
    assert calls == ["Base", "Big"]
    assert Base.build.cache_info().hits == 1


def test_cached_above_property_is_rejected_with_the_fix(decorate: Any) -> None:
    # Before: "cached needs a function to decorate, not property ...; to set options, call
    # it with keywords: @cached(ttl=60)" (bare), or the same without the hint.
    with pytest.raises(TypeError, match=r"@cached is above @property on .*Bad\.area: put "
                                        r"it below \(@property, then @cached, then def\)"):
        class Bad:
            @decorate
            @property
            def area(self):
                return 1


def test_cached_below_classmethod_keys_on_the_class(cache_dir: Path) -> None:
    class Base:
        size = 1

        @classmethod
        @cached(cache_dir=cache_dir)
        def build(cls, x):
            return cls.size * x

    class Big(Base):
        size = 10

    assert Base.build(2) == 2
    assert Big.build(2) == 20


def test_unpicklable_instance_of_a_bound_method_names_self(cache_dir: Path) -> None:
    class Holder:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def get(self, x):
            return x

    with pytest.raises(TypeError, match=r"argument 'self' of .*Holder.get"):
        cached(cache_dir=cache_dir)(Holder().get)(1)


def test_a_bound_async_method_is_cached_as_a_coroutine_function(cache_dir: Path) -> None:
    import asyncio
    import inspect

    class Client:
        def __init__(self, base: int) -> None:
            self.base = base

        async def fetch(self, x):
            return self.base + x

    fetch = cached(cache_dir=cache_dir)(Client(10).fetch)
    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(1)) == 11
    assert asyncio.run(fetch(1)) == 11
    assert fetch.cache_info().hits == 1


def test_library_callable_objects_key_on_their_state(cache_dir: Path) -> None:
    import operator

    first = cached(cache_dir=cache_dir)(operator.itemgetter(0))
    second = cached(cache_dir=cache_dir)(operator.itemgetter(1))
    assert first("ab") == "a"
    assert second("ab") == "b"
    assert " at 0x" not in function_name(first.__wrapped__)


class _RaisingClass:
    """A wrapper object whose ``__class__`` is a property that raises (``isinstance`` and
    ``pickle`` ask for it)."""

    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *args):
        return self.fn(*args)

    @property  # type: ignore[misc]
    def __class__(self):
        raise RuntimeError("no class")


def test_an_object_whose_class_cannot_be_looked_up_is_rejected_with_what_to_do(
    tmp_path: Path,
) -> None:
    # Before: its RuntimeError, from isinstance inside memojar.
    with pytest.raises(TypeError, match=r"cannot cache this .*_RaisingClass object: looking "
                                        r"up its __class__ raises RuntimeError \(no class\)"
                                        r".*decorate the function it calls instead"):
        cached(cache_dir=tmp_path)(_RaisingClass(_plus_one()))


def test_a_mock_with_a_function_spec_is_keyed_with_its_instance(tmp_path: Path) -> None:
    # Mock(spec=f) says its __class__ is a function's: it was taken for one, and failed
    # the decoration ("unsupported operand type(s) for &: 'Mock' and 'int'": its __code__ a
    # Mock). It is a callable instance, whose instance, which decides what it returns, is
    # in the key: refused as any unpicklable instance is, naming self.
    from unittest import mock

    f = cached(cache_dir=tmp_path)(mock.Mock(spec=_times_two, return_value=1))
    with pytest.raises(TypeError, match=r"argument 'self' of .*__call__ cannot be pickled"):
        f(5)


# --- closures sent by cloudpickle -------------------------------------------------------

def _closure_whose_helper_comes_after(factor: int, cache_dir: Path) -> Any:
    @cached(cache_dir=cache_dir)
    def scaled(x):
        return times(x)

    def times(x):  # an empty cell when ``scaled`` was decorated
        return x * factor

    return scaled


def test_a_cloudpickle_copy_of_a_closure_sent_before_its_helper_was_filled_in_runs(
    tmp_path: Path,
) -> None:
    # Before: such a closure's binder until its first call held its memo by a weak
    # reference, and cloudpickle refused it ("cannot pickle 'weakref.ReferenceType'
    # object"): a loky or dask task calling it could not be sent.
    cloudpickle = pytest.importorskip("cloudpickle")
    double = _closure_whose_helper_comes_after(2, tmp_path)
    quintuple = _closure_whose_helper_comes_after(5, tmp_path)
    copies = cloudpickle.loads(cloudpickle.dumps((double, quintuple)))
    assert [copies[0](3), copies[1](3)] == [6, 15]
    assert [double(3), quintuple(3)] == [6, 15]
    assert double.cache_info().hits == 1  # the copy's entry, kept apart from its sibling's


# --- methods of a class a function defines -------------------------------------------------

def _made_class(factor: int, cache_dir: Path) -> Any:
    class Local:  # no module holds it by name: its methods' class is found at the call
        def scale(self, x):
            return x * factor

        @cached(cache_dir=cache_dir, ignore=("self",))  # self cannot be pickled
        def run(self, x):
            return self.scale(x)

    return Local


def test_cached_methods_of_two_classes_one_factory_made_never_share_results(
    tmp_path: Path,
) -> None:
    # Before: the class of a method named ``make.<locals>.Local.run`` was not looked for,
    # so the identity held ``run``'s code alone, alike in both classes, and the second
    # class's run(3) returned the first's value: 6, for 15.
    double, quintuple = _made_class(2, tmp_path)(), _made_class(5, tmp_path)()
    assert double.run(3) == 6
    assert quintuple.run(3) == 15
    assert double.run(3) == 6


def test_a_method_of_a_class_a_function_defines_sees_an_edited_sibling_method(
    tmp_path: Path,
) -> None:
    # Before: an edit of ``scale``, which the cached ``run`` calls through ``self``, was not
    # seen: the edited script's run(3) returned the old value, 6 for 9. A classmethod's
    # class is found from its first argument alike.
    source = """
        import sys
        from memojar import cached

        def make():
            class Local:
                def scale(self, x):
                    return x * FACTOR

                @cached(cache_dir=sys.argv[1], ignore=("self",))
                def run(self, x):
                    return self.scale(x)

                @classmethod
                @cached(cache_dir=sys.argv[1], key=lambda cls, x: x)
                def build(cls, x):
                    return cls().scale(x) + 1

            return Local

        Local = make()
        print(Local().run(3), Local.build(3))
    """
    script = tmp_path / "app.py"
    cache = str(tmp_path / "cache")
    assert run_script(script, source.replace("FACTOR", "2"), cache).split() == ["6", "7"]
    assert run_script(script, source.replace("FACTOR", "3"), cache).split() == ["9", "10"]
    assert run_script(script, source.replace("FACTOR", "2"), cache).split() == ["6", "7"]


def test_a_cloudpickle_copy_of_a_method_of_a_class_a_function_defines_is_sent_and_runs(
    tmp_path: Path,
) -> None:
    # Before its first call, such a method's binder notes its class there: it held the
    # memo by a weak reference, which cloudpickle refused ("cannot pickle
    # 'weakref.ReferenceType' object": a loky task calling it could not be sent).
    cloudpickle = pytest.importorskip("cloudpickle")
    Local = _made_class(2, tmp_path)
    copy = cloudpickle.loads(cloudpickle.dumps(Local))
    assert copy().run(3) == 6
    assert _made_class(5, tmp_path)().run(3) == 15


def _made_class_reading_its_data(factor: int, cache_dir: Path) -> Any:
    class Local:
        K = factor  # read through self alone: only the class's data tells them apart

        @cached(cache_dir=cache_dir, ignore=("self",))
        def run(self, x):
            return x * self.K

    return Local


def test_a_method_of_a_class_a_function_defines_first_called_with_self_by_keyword(
    tmp_path: Path,
) -> None:
    # Before: a first call passing ``self`` by keyword raised "_BindingFirst.__call__() got
    # multiple values for argument 'self'"; past that, its class was not noted (it looked at
    # the positional arguments only), and make(5)'s run(x=3) returned make(2)'s 6 for 15.
    double, quintuple = (_made_class_reading_its_data(k, tmp_path) for k in (2, 5))
    assert double.run(self=double(), x=3) == 6
    assert quintuple.run(self=quintuple(), x=3) == 15
    assert [double().run(3), quintuple().run(3)] == [6, 15]


def _classes_sharing_a_method(factor: int, cache_dir: Path) -> Any:
    class Local:
        K = factor

        @cached(cache_dir=cache_dir, ignore=("self",))
        def run(self, x):
            return x * self.K

    class Other:  # the same method, not inherited: its first call's self is no Local
        K = factor
        run = Local.run
        twice = Local.run

    return Local, Other


@pytest.mark.parametrize("name", ["run", "twice"])
def test_a_method_of_a_class_a_function_defines_first_called_through_another_class(
    tmp_path: Path, name: str,
) -> None:
    # Before: the class was looked for by the method's qualname (``Local``) in the MRO of
    # the first call's ``self``, an ``Other``: none noted, make(2) and make(5) had one
    # scope under ignore=("self",), and make(5)'s Other().run(3) returned make(2)'s 6.
    for factor in (2, 5):
        Local, Other = _classes_sharing_a_method(factor, tmp_path)
        assert getattr(Other(), name)(3) == 3 * factor
        assert Local().run(3) == 3 * factor
