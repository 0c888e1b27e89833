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
