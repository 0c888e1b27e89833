"""Functions sharing a name in one scope: the closures one factory makes, the lambdas of one
module. Each is its own identity (API.md: closures count with what they capture), so each
keeps its own entries, hits in every process, and the clean-up of superseded code (the first
store's sweep, ``prune``) never takes a sibling's entries for older code; an edited closure
still supersedes its old entries. On every store (``location``), in real processes."""

from __future__ import annotations

import operator
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python
from memojar import Cache, _entry
from memojar._cache import FRESH, SUPERSEDED, judge
from memojar._identity import sibling_of

SECRET = "siblings"  # remote stores warn once without one

# A module of siblings: two closures of one factory, two lambdas. ``{body}`` is the
# closure's code (edited by a test), ``{captured}`` what ``make`` is called with.
MODULE = """
import os
from memojar import Cache

cache = Cache(os.environ["SIBLINGS_CACHE"], secret={secret!r})

def make(n):
    @cache.cached
    def add(x):
        print("computed", n, x)
        return {body}
    return add

add1, add2 = make({captured}[0]), make({captured}[1])
double = cache.cached(lambda x: (print("computed double", x), x * 2)[1])
succ = cache.cached(lambda x: (print("computed succ", x), x + 1)[1])
"""

RUN = """
import sys
sys.path.insert(0, sys.argv[1])
import siblings
for name in sys.argv[2:]:
    for _ in range(2):
        print(name, getattr(siblings, name)(5))
"""


def write_module(folder: Path, body: str = "x + n", captured: str = "(1, 2)") -> None:
    folder.mkdir(exist_ok=True)
    (folder / "siblings.py").write_text(MODULE.format(secret=SECRET, body=body,
                                                      captured=captured))


def run(folder: Path, location: str, *names: str) -> tuple[list[str], list[str]]:
    """Call each named function twice with 5 in a new process: (what it computed, values)."""
    out = run_python(RUN, str(folder), *names, env={"SIBLINGS_CACHE": str(location)},
                     timeout=120).splitlines()
    return ([line for line in out if line.startswith("computed")],
            [line for line in out if not line.startswith("computed")])


def counting(cache: Cache) -> tuple[Any, Any, list[Any]]:
    computed: list[Any] = []

    def make(n: int) -> Any:
        @cache.cached
        def add(x: int) -> int:
            computed.append(n)
            return x + n
        return add

    return make(1), make(2), computed


# --- in one process -----------------------------------------------------------------------

def test_closures_of_one_factory_keep_their_entries_in_one_process(location: str) -> None:
    cache = Cache(location, secret=SECRET)
    add1, add2, computed = counting(cache)
    for _ in range(3):
        assert (add1(5), add2(5)) == (6, 7)
    assert computed == [1, 2]  # before: each call replaced the other's entry, [1, 2] * 3
    assert len(list(cache.entries())) == 2


def test_two_lambdas_of_one_scope_keep_their_entries_in_one_process(location: str) -> None:
    cache = Cache(location, secret=SECRET)
    computed: list[str] = []
    double = cache.cached(lambda x: (computed.append("double"), x * 2)[1])
    succ = cache.cached(lambda x: (computed.append("succ"), x + 1)[1])
    for _ in range(3):
        assert (double(5), succ(5)) == (10, 6)
    assert computed == ["double", "succ"]
    assert len(list(cache.entries())) == 2


def test_prune_keeps_every_siblings_entries(location: str) -> None:
    cache = Cache(location, secret=SECRET)
    add1, add2, computed = counting(cache)
    add1(5)
    time.sleep(0.01)  # add2's entry is the newest of the function's
    add2(5)
    assert cache.prune() == 0  # before: add1's entry was "superseded" by add2's
    assert (add1(5), add2(5)) == (6, 7) and computed == [1, 2]


def test_clear_of_a_closure_removes_its_own_entries(location: str) -> None:
    cache = Cache(location, secret=SECRET)
    add1, add2, computed = counting(cache)
    add1(5)
    add2(5)
    assert add1.cache_clear() == 1
    assert (add1(5), add2(5)) == (6, 7) and computed == [1, 2, 1]


def test_explain_names_a_siblings_entry(location: str) -> None:
    cache = Cache(location, secret=SECRET)
    add1, add2, _ = counting(cache)
    add1(5)
    assert add2.cache_explain(5) == ("miss: no entry for these arguments; a closure of this "
                                     "name capturing other values stored one (each keeps its "
                                     "own)")
    assert add1.cache_explain(5).startswith("hit:")


# --- in real processes --------------------------------------------------------------------

@pytest.mark.parametrize(("first", "second", "computed"), [
    (("add1", 6), ("add2", 7), ["computed 1 5", "computed 2 5"]),
    (("double", 10), ("succ", 6), ["computed double 5", "computed succ 5"]),
], ids=["closures of one factory", "two lambdas of one module"])
def test_siblings_hit_in_a_second_process(location: str, tmp_path: Path,
                                          first: tuple[str, int], second: tuple[str, int],
                                          computed: list[str]) -> None:
    write_module(tmp_path / "v1")
    (a, va), (b, vb) = first, second
    assert run(tmp_path / "v1", location, a, b) == (
        computed, [f"{a} {va}", f"{a} {va}", f"{b} {vb}", f"{b} {vb}"])
    assert run(tmp_path / "v1", location, b, a) == (
        [], [f"{b} {vb}", f"{b} {vb}", f"{a} {va}", f"{a} {va}"])


def test_an_edited_closure_supersedes_its_old_entries(location: str, tmp_path: Path) -> None:
    """The edited code's first store sweeps the old code's entries of every capture (add2's
    too, though this process made only add1), and ``prune`` finds none left; a lambda's
    entries are another function's, kept."""
    write_module(tmp_path / "v1")
    run(tmp_path / "v1", location, "add1", "add2", "double")
    write_module(tmp_path / "v2", body="x + n * 10")
    assert run(tmp_path / "v2", location, "add1") == (["computed 1 5"], ["add1 15", "add1 15"])
    cache = Cache(location, secret=SECRET)
    functions = sorted(e.function for e in cache.entries())
    assert functions == ["siblings.<lambda>", "siblings.make.<locals>.add"]
    assert cache.prune() == 0
    assert run(tmp_path / "v2", location, "add2") == (["computed 2 5"], ["add2 25", "add2 25"])


def stored_then_edited(tmp_path: Path, location: str) -> None:
    """add1 and add2 stored by the module's first version (v1); a second (v2), with
    ``add``'s code edited, written beside it."""
    write_module(tmp_path / "v1")
    run(tmp_path / "v1", location, "add1", "add2")
    time.sleep(0.01)
    write_module(tmp_path / "v2", body="x + n * 10")


def test_prune_removes_an_edited_closures_old_entries(location: str, tmp_path: Path) -> None:
    """Without a sweep, ``prune`` tells the old code's entries of every capture (add2's too,
    which the new code never stored) from the newest code's."""
    stored_then_edited(tmp_path, location)
    store_without_sweep = """
import sys
sys.path.insert(0, sys.argv[1])
import siblings
siblings.add1.__memojar__.swept = True  # judge alone decides here
print(siblings.add1(5))
"""
    run_python(store_without_sweep, str(tmp_path / "v2"),
               env={"SIBLINGS_CACHE": str(location)}, timeout=120)
    cache = Cache(location, secret=SECRET)
    verdicts = sorted(v for _, _, v in judge(cache.store.scan(), time.time()))
    assert verdicts == [FRESH, SUPERSEDED, SUPERSEDED]  # v2's add1; v1's add1 and add2
    assert cache.prune() == 2
    assert run(tmp_path / "v2", location, "add1", "add2") == (
        ["computed 2 5"], ["add1 15", "add1 15", "add2 25", "add2 25"])


def test_explain_and_ls_say_an_edited_closures_code_changed(location: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    from memojar import _cli

    stored_then_edited(tmp_path, location)
    explain = """
import sys
sys.path.insert(0, sys.argv[1])
import siblings
print(siblings.add1.cache_explain(5))
siblings.add1.__memojar__.swept = True  # keep the old entries for ls
siblings.add1(5)
"""
    out = run_python(explain, str(tmp_path / "v2"), env={"SIBLINGS_CACHE": str(location)},
                     timeout=120)
    assert out.splitlines()[0] == "incompatible: the code of siblings.make.<locals>.add changed"
    assert _cli.main(["--dir", str(location), "ls", "siblings.make.<locals>.add"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "incompatible" in line]
    assert len(rows) == 2  # v1's add1 and add2, each saying why
    assert all("the code of siblings.make.<locals>.add changed" in row for row in rows)


def test_a_closure_whose_captured_value_changes_between_runs_misses(
    location: str, tmp_path: Path
) -> None:
    write_module(tmp_path / "v1")
    run(tmp_path / "v1", location, "add1")
    write_module(tmp_path / "v2", captured="(3, 4)")  # the same code capturing another n
    assert run(tmp_path / "v2", location, "add1") == (["computed 3 5"], ["add1 8", "add1 8"])
    assert run(tmp_path / "v1", location, "add1") == ([], ["add1 6", "add1 6"])  # kept


# --- the identity part that tells siblings apart -------------------------------------------

def test_a_module_function_has_no_sibling_part() -> None:
    assert sibling_of(write_module) == "" and sibling_of(Cache.prune) == ""


def test_siblings_differ_in_what_they_capture_or_their_code() -> None:
    def make(n: int) -> Any:
        def add(x: int) -> int:
            return x + n
        return add

    one, two, again = (sibling_of(make(n)) for n in (1, 2, 1))
    assert one != two and one == again
    assert one[:16] == two[:16]  # one code: a family (see family_of)
    lambdas = [sibling_of(lambda x: x + 1), sibling_of(lambda x: x * 2)]
    assert lambdas[0][:16] != lambdas[1][:16]


@pytest.mark.parametrize("kind", ["closure", "lambda"])
def test_an_older_memojars_entry_of_a_sibling_is_swept_and_pruned(
    location: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries an older memojar wrote for such a name (no sibling part, at keys this one
    never reads) go at the first store of its name, and ``prune`` calls them superseded."""
    from memojar import _decorator

    def made() -> Any:
        func = (lambda n: lambda x: x + n)(1) if kind == "lambda" else _closure(1)
        return Cache(location, secret=SECRET).cached(func)

    with monkeypatch.context() as patched:
        patched.setattr(_decorator, "sibling_of", lambda func: "")  # as before
        old = made()
        old(5)
        old(6)
    cache = Cache(location, secret=SECRET)
    assert [v for _, _, v in judge(cache.store.scan(), time.time())] == [SUPERSEDED] * 2
    new = made()
    new(5)  # its first store
    assert [(v, h.scope != "") for _, h, v in judge(cache.store.scan(), time.time())] == [
        (FRESH, True)]
    assert _entry.PYTHON in {e.python for e in cache.entries()}


def _closure(n: int) -> Any:
    def add(x: int) -> int:
        return x + n
    return add


def test_an_edited_lambda_s_old_entries_are_swept_and_another_lambda_s_kept(
    location: str, tmp_path: Path
) -> None:
    """An edited lambda cannot be told from another by its entries; by the program it can:
    the first store of a process in which no lambda of its name has the old code sweeps that
    code's entries (``prune``, which sees no program, keeps them)."""
    write_module(tmp_path / "v1")
    run(tmp_path / "v1", location, "double", "succ")
    (tmp_path / "v2").mkdir()
    edited = (tmp_path / "v1" / "siblings.py").read_text().replace("x * 2", "x * 3")
    (tmp_path / "v2" / "siblings.py").write_text(edited)
    assert run(tmp_path / "v2", location, "double") == (["computed double 5"],
                                                        ["double 15", "double 15"])
    cache = Cache(location, secret=SECRET)
    assert len(list(cache.entries("siblings.<lambda>"))) == 2  # the new double's, succ's
    assert run(tmp_path / "v2", location, "succ", "double") == (
        [], ["succ 6", "succ 6", "double 15", "double 15"])


def test_prune_keeps_a_lambda_no_program_is_seen_to_drop(location: str, tmp_path: Path) -> None:
    cache = Cache(location, secret=SECRET)
    double = cache.cached(lambda x: x * 2)
    double(5)
    time.sleep(0.01)
    triple = cache.cached(lambda x: x * 3)
    triple(5)
    assert cache.prune() == 0
    assert [v for _, _, v in judge(cache.store.scan(), time.time())] == [FRESH, FRESH]


FACTORY = """
def make(n):
    def add(x):
        return {body}
    return add
"""


def _make(cache: Cache, body: str, n: int) -> Any:
    """``make(n)`` of a module ``factory`` whose closure's code is ``body``."""
    namespace: dict[str, Any] = {"__name__": "factory"}
    exec(FACTORY.format(body=body), namespace)
    return cache.cached(namespace["make"](n))


def test_an_edited_closure_leaves_another_pythons_entries(tmp_path: Path) -> None:
    from test_scope import _forge_python

    cache = Cache(tmp_path / "cache")
    _make(cache, "x + n", 1)(1)
    (stored,) = cache.store.scan()
    other = "3.99"[: len(_entry.PYTHON)]
    _forge_python(cache, stored, other)
    _make(cache, "x + n", 2)(1)  # this Python's old code, another capture
    assert _make(cache, "x + n * 10", 1)(1) == 11  # edited: its first store sweeps
    assert [e.python for e in cache.entries()].count(_entry.PYTHON) == 1
    assert other in {e.python for e in cache.entries()}
    assert cache.prune() == 0  # the other Python's closure entry: not superseded here
    assert cache.prune(other_pythons=True) == 1


REBOUND = """
import os
from memojar import Cache

cache = Cache(os.environ["SIBLINGS_CACHE"], secret={secret!r})

def make():
    n = 1
    @cache.cached
    def add(x):
        print("computed", n, x)
        return x + n
    n = {later}  # after decorating: the sibling part saw 1, the identity sees this
    return add

add1 = make()
"""


def test_a_captured_variable_rebound_after_decorating_never_gives_its_old_value(
    location: str, tmp_path: Path
) -> None:
    """What tells siblings apart is taken when decorating; the value a closure computes with
    is the one at its call, which its identity covers: a change of it after decorating is a
    miss, never the old value."""
    for version, later in (("v1", 2), ("v2", 3)):
        (tmp_path / version).mkdir()
        (tmp_path / version / "siblings.py").write_text(REBOUND.format(secret=SECRET,
                                                                       later=later))
    assert run(tmp_path / "v1", location, "add1") == (["computed 2 5"], ["add1 7", "add1 7"])
    assert run(tmp_path / "v2", location, "add1") == (["computed 3 5"], ["add1 8", "add1 8"])
    assert run(tmp_path / "v1", location, "add1") == (["computed 2 5"], ["add1 7", "add1 7"])


# Closures of one factory capturing values the identity counts by type (an instance, a tuple
# of them, a Decimal, a date, a module; not a list, dict or set: see Known limits): each
# call gets its own closure's value, in a process and in another one with another hash
# seed, where each hits. Before, each pair shared its keys and its identity: the second
# closure got the first one's value.
CAPTURES = """
import cmath, datetime, decimal, math, os, sys
from memojar import Cache

cache = Cache(sys.argv[1], secret={secret!r})

class Config:
    def __init__(self, k):
        self.k, self.tags = k, {{"a", "b", str(k)}}

def make(captured, use):
    @cache.cached
    def f(x):
        print("computed", use(captured, x))
        return use(captured, x)
    return f

pairs = {{
    "instance": (Config(2), Config(5), lambda c, x: x * c.k + len(c.tags)),
    "tuple": ((Config(1),), (Config(3),), lambda c, x: x * c[0].k),
    "frozenset": (frozenset({{"p"}}), frozenset({{"p", "q"}}), lambda c, x: x * len(c)),
    "decimal": (decimal.Decimal(1), decimal.Decimal(2), lambda c, x: str(c * x)),
    "date": (datetime.date(2020, 1, 1), datetime.date(2021, 1, 1), lambda c, x: c.year + x),
    "module": (math, cmath, lambda c, x: str(c.sqrt(x))),
}}
for name, (one, two, use) in pairs.items():
    first, second = make(one, use), make(two, use)
    for _ in range(2):
        print(name, first(3) == use(one, 3), second(3) == use(two, 3))
"""


def test_closures_capturing_objects_of_one_type_keep_their_own_values(
        location: str, tmp_path: Path) -> None:
    script = CAPTURES.format(secret=SECRET)
    runs = [run_python(script, location, env={"PYTHONHASHSEED": seed}, timeout=120)
            for seed in ("1", "2")]
    for out in runs:
        values = [line for line in out.splitlines() if not line.startswith("computed")]
        assert len(values) == 12 and all(line.endswith("True True") for line in values), out
    assert runs[0].count("computed") == 12  # each closure once, both of each pair
    assert "computed" not in runs[1]  # another process, another hash seed: every one hits


SPAWNED = """
import multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
from memojar import Cache

cache = Cache(sys.argv[1], secret={secret!r})

class Config:
    def __init__(self, k):
        self.k = k

def make(config):
    @cache.cached
    def scale(x):
        print("computed", x, file=sys.stderr)
        return x * config.k
    return scale

def call(k):
    scale = make(Config(k))
    return scale(3), scale.cache_info().misses

if __name__ == "__main__":
    print("script", call(2))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        print("worker", pool.submit(call, 2).result())
"""


def test_a_spawn_worker_making_the_scripts_closure_again_hits_its_entry(
        location: str, tmp_path: Path) -> None:
    """A closure capturing an instance of the script's class, made in a spawn worker (where
    the script is ``__mp_main__``) is the script's: before, what it captures counted by a
    type of another module (``__mp_main__.Config``), another identity, and the worker
    computed the script's entry again and replaced it."""
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED.format(secret=SECRET))
    proc = subprocess.run([sys.executable, str(script), location], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["script (6, 1)", "worker (6, 0)"], proc.stdout


def test_what_tells_closures_apart_looks_inside_what_they_capture() -> None:
    """An object counted by type inside a captured list or dict, or captured by a captured
    closure, counts by its state there too; so do a C callable's (``itemgetter(0)``) and a
    built-in method's object (``"x".join``)."""
    class Config:
        def __init__(self, k: int) -> None:
            self.k = k

    def inner(config: Config) -> Any:
        return lambda: config.k

    def make(captured: Any) -> Any:
        return lambda x: (captured, x)

    for one, two in (([len, Config(1)], [len, Config(2)]), ("x".join, "y".join),
                     (operator.itemgetter(0), operator.itemgetter(1)),
                     ({"f": len, "o": Config(1)}, {"f": len, "o": Config(2)}),
                     (inner(Config(1)), inner(Config(2)))):
        assert sibling_of(make(one)) != sibling_of(make(two))
        assert sibling_of(make(one))[:16] == sibling_of(make(two))[:16]


LOCAL_CLASSES = """
import sys
from memojar import Cache

cache = Cache(sys.argv[1], secret={secret!r})

def make_model(k):
    class Model:
        K, NAMES = k, {{"a", str(k)}}

        @cache.cached
        def fit(self, x):
            print("computed", self.K, x)
            return x * self.K + len(self.NAMES)
    return Model

for k in (2, 3):
    print("value", make_model(k)().fit(5))
"""


def test_a_cached_method_of_classes_one_function_makes_keys_by_their_data(
        location: str) -> None:
    """``make_model(2)`` and ``make_model(3)`` make two classes ``make_model.<locals>.Model``
    whose method reads a class attribute: ``self`` keys by its class, whose data counts too
    (before: only its methods, and the second class got the first one's value)."""
    script = LOCAL_CLASSES.format(secret=SECRET)
    runs = [run_python(script, location, env={"PYTHONHASHSEED": seed}, timeout=120)
            for seed in ("1", "2")]
    for out in runs:
        assert [line for line in out.splitlines() if line.startswith("value")] == [
            "value 12", "value 17"], out
    assert runs[0].count("computed") == 2 and "computed" not in runs[1]


UNPICKLED_SELF = """
import sys
from memojar import Cache

cache = Cache(sys.argv[1], secret={secret!r})

def make_model(k):
    class Model:
        K = k

        def scale(self, x):
            return {body}

        @cache.cached(ignore=("self",))  # its key holds no class: its scope tells them apart
        def fit(self, x):
            print("computed", self.K, x)
            return self.scale(x)
    return Model

for k in (2, 3):
    print("value", make_model(k)().fit(int(sys.argv[2])))
print("entries", len(list(cache.entries())))
"""


def test_a_method_of_classes_one_function_makes_ignoring_self_keeps_each_ones_entries(
        location: str) -> None:
    """Under ``ignore=("self",)`` the classes of one factory (``make_model(2)``, ``(3)``)
    are told apart by their class, which their first call notes: each keeps its own
    entries, whatever process stores (a new argument each run), and hits in the next;
    an edit of a method ``fit`` calls through ``self`` supersedes their old entries. Before
    (c4613a1), each class's first store swept the other's as older code's, and every
    process computed both again."""
    def run(body: str, x: int) -> list[str]:
        return run_python(UNPICKLED_SELF.format(secret=SECRET, body=body), location,
                          str(x), timeout=120).splitlines()

    assert run("x * self.K", 1) == [
        "computed 2 1", "value 2", "computed 3 1", "value 3", "entries 2"]
    assert run("x * self.K", 2)[-1] == "entries 4"
    assert run("x * self.K", 1) == ["value 2", "value 3", "entries 4"]
    assert run("x * self.K", 2) == ["value 4", "value 6", "entries 4"]
    assert run("x * self.K + 1", 1) == [  # edited: the old code's entries are swept
        "computed 2 1", "value 3", "computed 3 1", "value 4", "entries 2"]


HELPER_AFTER = """
import sys
from memojar import Cache

cache = Cache(sys.argv[1], secret={secret!r})

def make(k):
    @cache.cached
    def scale(x):
        return helper(x)

    def helper(x):  # defined after: scale's cell for it is empty when decorated
        print("computed", k, x)
        return x * k
    return scale

def make_fib(k):
    @cache.cached
    def fib(n):
        return n * k if n < 2 else fib(n - 1) + fib(n - 2)
    return fib

one, two, fib1, fib2 = make(1), make(2), make_fib(1), make_fib(10)
for _ in range(2):
    print("value", one(3), two(3), fib1(20), fib2(20))
print("misses", fib1.cache_info().misses, fib2.cache_info().misses)
"""


def test_closures_telling_themselves_apart_through_a_helper_defined_after_keep_their_entries(
        location: str) -> None:
    """What tells the closures apart is captured by a helper the factory defines after the
    decorated closure (its cell is empty when decorated): taken again at the first call.
    Before, both closures had one key: each call replaced the other's entry."""
    script = HELPER_AFTER.format(secret=SECRET)
    first, second = (run_python(script, location, timeout=120) for _ in range(2))
    for out in (first, second):
        assert out.count("value 3 6 6765 67650") == 2, out
    assert first.count("computed") == 2 and "computed" not in second, first
    assert "misses 21 21" in first and "misses 0 0" in second


def test_a_closure_with_a_helper_defined_after_leaves_no_cycle(tmp_path: Path) -> None:
    """Its binder until the first call (which takes its sibling part again) was a bound
    method kept in the memo's own dict: a reference cycle, so a dropped cache's store (its
    open folders) stayed until the cycle collector ran."""
    import gc
    import weakref

    def make(k: int) -> Any:
        @Cache(tmp_path / "cache").cached
        def scale(x: int) -> int:
            return helper(x)

        def helper(x: int) -> int:
            return x * k

        return scale

    collecting = gc.isenabled()
    gc.disable()
    try:
        uncalled, called = make(1), make(2)
        assert called(3) == 6
        memos = [weakref.ref(f.__memojar__) for f in (uncalled, called)]
        del uncalled, called
        assert [m() for m in memos] == [None, None]
    finally:
        if collecting:
            gc.enable()
