"""What a function depends on is part of its identity (issue 13), across real processes.

Each test writes a small project of real module files, runs it in a fresh interpreter,
edits a file, and runs it again: the edit must recompute (and ``cache_explain`` name it),
the absence of one must hit.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import time
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest
import xxhash

from conftest import as_another_user
from memojar import Cache, MemojarWarning, _decorator, _entry

SRC = str(Path(__file__).resolve().parents[1] / "src")

RUN = """
import json, main
fn, args = getattr(main, "fn", None) or main.f, getattr(main, "args", (3,))
explain = fn.cache_explain(*args)
value = fn(*args)
print(json.dumps({"explain": explain, "value": repr(value),
                  "misses": fn.cache_info().misses,
                  "ident": fn.__memojar__.ident.decode()}))
"""


def write(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        for cached in path.parent.glob("__pycache__"):  # same-second edits: no stale .pyc
            for pyc in cached.iterdir():
                pyc.unlink()


def run(root: Path, seed: str = "0", extra_path: str = "") -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (SRC, str(root), extra_path)
                                                       if p),
           "MEMOJAR_DIR": str(root / "cache"), "PYTHONHASHSEED": seed,
           "PYTHONDONTWRITEBYTECODE": "1",
           # a crash of the script shows its stack (one SIGSEGV on 3.12 CI said nothing)
           "PYTHONFAULTHANDLER": "1"}
    done = subprocess.run([sys.executable, "-c", RUN], cwd=root, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


MAIN = """
    from memojar import cached
    import helpers
    from helpers import scale

    @cached
    def f(x):
        return scale(x) + helpers.offset(x)
"""
HELPERS = """
    import json
    import xxhash
    FACTOR = 2
    UNUSED = 5

    def scale(x):
        return x * FACTOR

    def offset(x):
        return deeper(x) + len(json.dumps([x])) + 0 * xxhash.xxh3_64_intdigest(b"")

    def deeper(x):
        return x + 1
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path, {"main.py": MAIN, "helpers.py": HELPERS})
    return tmp_path


def test_unchanged_code_hits_in_a_new_process(project: Path) -> None:
    first = run(project)
    assert first["misses"] == 1
    assert first["explain"] == "miss: no entry for these arguments"
    second = run(project)
    assert second["misses"] == 0 and second["value"] == first["value"]
    assert second["explain"].startswith("hit: stored ")


CACHED_HELPER = """
    import json
    from memojar import cached

    @cached(version=1, depends_on=[("rates-2025",)])
    def g(x):
        return x * json.loads(open("k.json").read())
"""


@pytest.mark.parametrize("bump", ["version=2", "depends_on=[('rates-2026',)]"])
def test_a_cached_helpers_version_or_depends_on_bumped_recomputes_its_callers(
    tmp_path: Path, bump: str
) -> None:
    """A cached helper's version= (or depends_on=) bumped says its values changed (its
    data file did): the cached function calling it recomputes too. Before, the caller's
    identity followed the helper's code alone, and it returned the value computed from
    the old data (6, not 15)."""
    write(tmp_path, {"main.py": "from memojar import cached\nfrom helpers import g\n\n"
                                "@cached\ndef f(x):\n    return g(x)\n",
                     "helpers.py": CACHED_HELPER, "k.json": "2"})
    assert run(tmp_path)["value"] == "6"
    assert run(tmp_path)["misses"] == 0
    edited = CACHED_HELPER.replace(
        "version=1" if bump.startswith("version") else "depends_on=[(\"rates-2025\",)]",
        bump)
    write(tmp_path, {"helpers.py": edited, "k.json": "5"})
    second = run(tmp_path)
    assert second["value"] == "15"  # before: 6
    what = "version=" if bump.startswith("version") else "depends_on[0]"
    assert second["explain"] == f"incompatible: cached helper helpers.g({what}) changed"


FIELD_HELPER = """
    import json
    import operator
    from memojar import cached

    FIELD = "qty"

    @cached(OPTION)
    def g(row):
        return row["qty"] * json.loads(open("k.json").read())
"""


@pytest.mark.parametrize("option", ["depends_on", "key"])
def test_a_library_callable_of_a_cached_helper_changed_recomputes_its_callers(
    tmp_path: Path, option: str
) -> None:
    """A cached helper's ``depends_on=[operator.itemgetter(FIELD)]`` (or ``key=``) made with
    another field is another helper: the cached function calling it recomputes too, as
    the helper does. Before, the caller's identity held the callable's name, not what it
    holds, and it returned the value computed from the old data (6, not 15)."""
    helper = FIELD_HELPER.replace("OPTION", {
        "depends_on": "depends_on=[operator.itemgetter(FIELD)]",
        "key": "key=operator.itemgetter(FIELD)"}[option])
    write(tmp_path, {"main.py": "from memojar import cached\nfrom helpers import g\n\n"
                                "args = ({'qty': 3, 'unit': 1},)\n\n"
                                "@cached\ndef f(row):\n    return g(row)\n",
                     "helpers.py": helper, "k.json": "2"})
    assert run(tmp_path)["value"] == "6"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"helpers.py": helper.replace('FIELD = "qty"', 'FIELD = "unit"'),
                     "k.json": "5"})
    second = run(tmp_path)
    assert second["value"] == "15"  # before: 6
    assert second["explain"] == (
        "incompatible: cached helper helpers.g(operator.itemgetter) changed")


SCALED_HELPER = """
    import functools
    from memojar import cached

    def scaled(fn):
        @functools.wraps(fn)  # copies fn.__dict__: the wrapper carries __memojar__ too
        def wrapper(*args):
            return fn(*args) * 2
        return wrapper

    @scaled
    @cached
    def g(x):
        return x + 1
"""


def test_a_decorator_above_a_cached_helper_edited_recomputes_its_callers(
    tmp_path: Path,
) -> None:
    """A ``functools.wraps`` decorator above a cached helper (``@scaled @cached def g``)
    copies memojar's ``__memojar__`` onto its wrapper, which is still the user's code: an
    edit of it (``* 2`` made ``* 3``) recomputes the cached function calling ``g``.
    Before, the wrapper counted as memojar's and the caller returned the old value (8,
    not 12)."""
    write(tmp_path, {"main.py": "from memojar import cached\nfrom helpers import g\n\n"
                                "@cached\ndef f(x):\n    return g(x)\n",
                     "helpers.py": SCALED_HELPER})
    assert run(tmp_path)["value"] == "8"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"helpers.py": SCALED_HELPER.replace("* 2", "* 3")})
    second = run(tmp_path)
    assert second["value"] == "12"  # before: 8
    assert second["explain"] == "incompatible: helper helpers.g changed"


def test_a_caller_of_a_decorated_cached_helper_called_first_hits_in_the_next_process(
    tmp_path: Path,
) -> None:
    """``@scaled @cached def g``, called before its caller in each process: the caller's
    identity is the same whatever the helper's memo has counted. Before, the digest of
    what the wrapper captures followed it into memojar's own wrapper and hashed the
    memo's counters, and the caller missed in the second process."""
    write(tmp_path, {"main.py": "from memojar import cached\nfrom helpers import g\n\n"
                                "g(1)\n\n@cached\ndef f(x):\n    return g(x)\n",
                     "helpers.py": SCALED_HELPER})
    assert run(tmp_path)["value"] == "8"
    assert run(tmp_path)["misses"] == 0  # before: 1


def test_a_helper_edited_recomputes(project: Path) -> None:
    run(project)
    write(project, {"helpers.py": HELPERS.replace("return x * FACTOR", "return x * FACTOR * 10")})
    second = run(project)
    assert second["misses"] == 1 and second["value"] == str(3 * 20 + 4 + 3)
    assert second["explain"] == "incompatible: helper helpers.scale changed"


def test_a_constant_edited_recomputes(project: Path) -> None:
    run(project)
    write(project, {"helpers.py": HELPERS.replace("FACTOR = 2", "FACTOR = 3")})
    second = run(project)
    assert second["misses"] == 1 and second["value"] == str(9 + 4 + 3)
    assert second["explain"] == "incompatible: constant helpers.FACTOR changed"


NESTED = """
    from memojar import cached

    @cached
    def load(n):
        return list(range(n))

    @cached
    def f(n):
        return sum(load(n))
"""


def test_a_cached_function_another_calls_counts_by_its_code_not_its_calls(
    tmp_path: Path,
) -> None:
    """``f`` calls ``load``, cached too: whether ``load`` was called first in the process
    changes nothing of ``f``'s identity. Before, its row held ``load``'s memo state: a
    script calling ``load`` before ``f`` missed ("the code changed") and swept the other
    script's entries, each run in turn."""
    write(tmp_path, {"main.py": NESTED})
    assert run(tmp_path)["misses"] == 1
    write(tmp_path, {"main.py": NESTED + "\n    load(3)\n"})  # called first, on import
    second = run(tmp_path)
    assert second["misses"] == 0, second["explain"]
    write(tmp_path, {"main.py": NESTED})
    assert run(tmp_path)["misses"] == 0


def test_explain_names_a_helper_of_two_rows_one_of_which_changed() -> None:
    """A decorator's wrapper and the function it wraps (``@scale_by(2)`` made
    ``@scale_by(3)``) are two rows of one name. Before, only the last row of a name was
    compared: an edit of the other was "the code changed", naming nothing."""
    from memojar._depends import changes

    old = "function helpers.h aaaa\nfunction helpers.h bbbb"
    assert changes(old, "function helpers.h cccc\nfunction helpers.h bbbb", "mod.f") == (
        "helper helpers.h changed")
    assert changes(old, "function helpers.h bbbb\nfunction helpers.h aaaa", "mod.f") == (
        "the code changed")  # the same rows (nothing named: another part differs)


# A table whose order the code follows, reordered in the source: keys hash a dict
# whatever its order, and so did the fingerprint of one a function reads.
REORDERED = {
    "constant": ("""
        COLUMNS = {"a": int, "b": float}

        def f(x):
            return [name * x for name in COLUMNS]
    """, '{"a": int, "b": float}', '{"b": float, "a": int}', "['bbb', 'aaa']"),
    "nested constant": ("""
        SCHEMA = [{"a": 1, "b": 2}]

        def f(x):
            return [name * x for name in SCHEMA[0]]
    """, '{"a": 1, "b": 2}', '{"b": 2, "a": 1}', "['bbb', 'aaa']"),
    "table of functions": ("""
        def inc(x):
            return x + 1

        def dbl(x):
            return x * 2

        STEPS = {"inc": inc, "dbl": dbl}

        def f(x):
            for step in STEPS.values():
                x = step(x)
            return x
    """, '{"inc": inc, "dbl": dbl}', '{"dbl": dbl, "inc": inc}', "7"),
    "Counter": ("""
        import collections

        COUNTS = collections.Counter(["a", "b"])

        def f(x):
            return [name * x for name, _ in COUNTS.most_common()]
    """, '["a", "b"]', '["b", "a"]', "['bbb', 'aaa']"),
    "default": ("""
        def f(x, columns={"a": 1, "b": 2}):
            return [name * x for name in columns]
    """, '{"a": 1, "b": 2}', '{"b": 2, "a": 1}', "['bbb', 'aaa']"),
    "instance": ("""
        class Config:
            def __init__(self, columns):
                self.columns = columns

        CONFIG = Config({"a": 1, "b": 2})

        def f(x):
            return [name * x for name in CONFIG.columns]
    """, '{"a": 1, "b": 2}', '{"b": 2, "a": 1}', "['bbb', 'aaa']"),
    "captured": ("""
        def make(columns):
            def f(x):
                return [name * x for name in columns]
            return f

        f = make({"a": 1, "b": 2})
    """, '{"a": 1, "b": 2}', '{"b": 2, "a": 1}', "['bbb', 'aaa']"),
}


@pytest.mark.parametrize("source, old, new, value", REORDERED.values(), ids=REORDERED.keys())
def test_a_table_reordered_in_the_source_recomputes(tmp_path: Path, source: str, old: str,
                                                    new: str, value: str) -> None:
    main = "from memojar import cached\nimport helpers\nf = cached(helpers.f)\n"
    write(tmp_path, {"helpers.py": source, "main.py": main})
    run(tmp_path)
    write(tmp_path, {"helpers.py": source.replace(old, new)})
    second = run(tmp_path)
    assert (second["misses"], second["value"]) == (1, value)


STATS = """
    import threading

    class Stats:
        def __init__(self):
            self.lock, self.calls = threading.Lock(), 0

        def bump(self):
            with self.lock:
                self.calls += 1

    STATS = Stats()

    def f(x):
        STATS.bump()
        return x * 2
"""


def test_a_global_holding_a_lock_beside_what_its_methods_change_hits_in_a_new_process(
    tmp_path: Path,
) -> None:
    """A global that cannot be pickled whole (a lock beside a counter its methods bump)
    counts by its type, not by its parts: its counter at the first call would make each
    process's identity follow what ran before (tried, and taken back, on 2026-12-06: a miss
    in every process)."""
    main = ("from memojar import cached\nimport helpers\nhelpers.STATS.bump()\n"
            "f = cached(helpers.f)\n")
    write(tmp_path, {"helpers.py": STATS, "main.py": main})
    assert run(tmp_path)["misses"] == 1
    write(tmp_path, {"main.py": main.replace("helpers.STATS.bump()", "")})
    assert run(tmp_path)["misses"] == 0


REFUSED_BY_PICKLE = {
    "struct.Struct": ("""
        import struct

        PACKER = struct.Struct("<2i")

        def f(x):
            return PACKER.size * x
    """, "<2i", "<3i", "24", "36"),
    "code object": ("""
        RULE = compile("x * 2", "<rule>", "eval")

        def f(x):
            return eval(RULE)
    """, "x * 2", "x * 3", "6", "9"),
    "context variable's default": ("""
        from contextvars import ContextVar

        SCALE = ContextVar("scale", default=2)

        def f(x):
            return SCALE.get() * x
    """, "default=2", "default=3", "6", "9"),
    "context variable's name": ("""
        from contextvars import ContextVar

        SCALE = ContextVar("scale")

        def f(x):
            return len(SCALE.name) * x
    """, '"scale"', '"scale2"', "15", "18"),
}


@pytest.mark.parametrize("source, old, new, first, second", REFUSED_BY_PICKLE.values(),
                         ids=REFUSED_BY_PICKLE.keys())
def test_a_global_that_pickle_refuses_counts_by_what_it_holds(
    tmp_path: Path, source: str, old: str, new: str, first: str, second: str
) -> None:
    """A ``struct.Struct`` counts by its format, a code object by its code and a
    ``ContextVar`` by its name and default, the same in every process. Before, each counted
    by its type (pickle refuses them): edited, the old value was returned."""
    main = "from memojar import cached\nimport helpers\nf = cached(helpers.f)\n"
    write(tmp_path, {"helpers.py": source, "main.py": main})
    assert run(tmp_path)["value"] == first
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"helpers.py": source.replace(old, new)})
    again = run(tmp_path)
    assert (again["misses"], again["value"]) == (1, second)


SENTINELS = """
    MISSING = object()
    ALL = object()
"""
SENTINEL_SWAPPED = {
    "a helper's default": ("""
        def pick(x=ALL):
            return "missing" if x is MISSING else "all"

        def f(x):
            return pick()
    """, "x=ALL", "x=MISSING"),
    "a table's value": ("""
        DEFAULTS = {"mode": ALL}

        def f(x):
            return "missing" if DEFAULTS["mode"] is MISSING else "all"
    """, '"mode": ALL', '"mode": MISSING'),
    "a class attribute": ("""
        class Options:
            MODE = ALL

        def f(x):
            return "missing" if Options.MODE is MISSING else "all"
    """, "MODE = ALL", "MODE = MISSING"),
    "a table in a class attribute": ("""
        class Options:
            MODES = {"m": [ALL]}

        def f(x):
            return "missing" if Options.MODES["m"][0] is MISSING else "all"
    """, "[ALL]", "[MISSING]"),
    "a class's sentinel in a helper's default": ("""
        class Options:
            UNSET = object()
            ALL = object()

        def pick(x=Options.ALL):
            return "missing" if x is Options.UNSET else "all"

        def f(x):
            return pick()
    """, "x=Options.ALL", "x=Options.UNSET"),
    "a class's sentinel in a table": ("""
        class Options:
            UNSET = object()
            ALL = object()

        DEFAULTS = {"mode": Options.ALL}

        def f(x):
            return "missing" if DEFAULTS["mode"] is Options.UNSET else "all"
    """, '"mode": Options.ALL', '"mode": Options.UNSET'),
    "a table of a module of a ModuleType subclass": ("""
        import sys, types

        DEFAULTS = {"mode": ALL}

        def f(x):
            return "missing" if DEFAULTS["mode"] is MISSING else "all"

        class _Module(types.ModuleType):  # a module's __getattr__ (of deprecations)
            def __getattr__(self, name):
                raise AttributeError(name)

        sys.modules[__name__].__class__ = _Module
    """, '"mode": ALL', '"mode": MISSING'),
    "a helper's capture": ("""
        def make(mode):
            def pick():
                return "missing" if mode is MISSING else "all"
            return pick

        pick = make(ALL)

        def f(x):
            return pick()
    """, "make(ALL)", "make(MISSING)"),
    "the function's own capture": ("""
        def make(mode):
            def f(x):
                return "missing" if mode is MISSING else "all"
            return f

        f = make(ALL)
    """, "make(ALL)", "make(MISSING)"),
}


@pytest.mark.parametrize("source, old, new", SENTINEL_SWAPPED.values(),
                         ids=SENTINEL_SWAPPED.keys())
def test_a_sentinel_swapped_for_another_recomputes(tmp_path: Path, source: str, old: str,
                                                   new: str) -> None:
    """A bare ``object()`` in what a function reads (``MISSING = object()``) counts by its
    name in the module that reads it, the same in every process. Before, every
    ``object()`` hashed alike: ``x=ALL`` edited to ``x=MISSING`` returned "all"."""
    source = textwrap.dedent(SENTINELS) + textwrap.dedent(source)
    main = "from memojar import cached\nimport helpers\nf = cached(helpers.f)\n"
    write(tmp_path, {"helpers.py": source, "main.py": main})
    assert run(tmp_path)["value"] == "'all'"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"helpers.py": source.replace(old, new)})
    again = run(tmp_path)
    assert (again["misses"], again["value"]) == (1, "'missing'")


SENTINEL_ALIASED = """
    import multiprocessing, sys
    from memojar import cached

    missing = object()

    def pick(x=missing):
        return x is missing

    @cached
    def f(x):
        return pick()

    def misses(x):
        f(x)
        return f.cache_info().misses

    if __name__ == "__main__":
        default = missing  # a name the script's main block alone makes
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            print(misses(1), pool.map(misses, [1])[0])
"""


def _misses_of_a_script_and_its_worker(tmp_path: Path, script: str) -> list[list[str]]:
    """What ``script`` (as ``prog.py``, printing the misses of itself and of a spawned
    worker) prints in each of two runs."""
    write(tmp_path, {"prog.py": script})
    env = {**os.environ, "PYTHONPATH": SRC, "MEMOJAR_DIR": str(tmp_path / "cache"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    runs = [subprocess.run([sys.executable, "prog.py"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert [run.returncode for run in runs] == [0, 0], runs[-1].stderr
    return [run.stdout.split() for run in runs]


def test_a_sentinel_named_again_by_the_main_block_keeps_the_identity_of_a_worker(
        tmp_path: Path) -> None:
    """A sentinel a script's main block (or a notebook's output, ``_5``) also names counts
    by the name the module made first: a spawned worker, which does not run the block,
    hits the script's entry, and the script's next run hits. Before, by the name that
    sorts first: ``default``, where the worker said ``missing``, so each computed again
    and swept the other's entry."""
    assert _misses_of_a_script_and_its_worker(tmp_path, SENTINEL_ALIASED) == [
        ["1", "0"], ["0", "0"]]


CLASS_SENTINEL_ALIASED = """
    import multiprocessing, sys
    from memojar import cached

    class Options:
        UNSET = object()

    @cached
    def f(x):
        return x is Options.UNSET

    def misses(x):
        f(Options.UNSET)
        return f.cache_info().misses

    if __name__ == "__main__":
        default = Options.UNSET  # a name the script's main block alone makes
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            print(misses(1), pool.map(misses, [1])[0])
"""


def test_a_class_sentinel_the_main_block_names_keeps_its_key_and_identity_in_a_worker(
        tmp_path: Path) -> None:
    """A sentinel of a script's class (``Options.UNSET``) that its main block also names
    (``default = Options.UNSET``) counts by its class's name for it, as an argument and in
    what a function reads: a spawned worker, which does not run the block, hits the
    script's entry. Before, by ``default`` where the worker said ``Options.UNSET``: each
    computed again."""
    assert _misses_of_a_script_and_its_worker(tmp_path, CLASS_SENTINEL_ALIASED) == [
        ["1", "0"], ["0", "0"]]


def test_a_constant_the_function_does_not_read_is_not_tracked(project: Path) -> None:
    run(project)
    write(project, {"helpers.py": HELPERS.replace("UNUSED = 5", "UNUSED = 6")})
    assert run(project)["misses"] == 0


def test_a_helper_of_a_helper_edited_recomputes(project: Path) -> None:
    run(project)
    write(project, {"helpers.py": HELPERS.replace("return x + 1", "return x + 100")})
    second = run(project)
    assert second["misses"] == 1
    assert second["explain"] == "incompatible: helper helpers.deeper changed"


SHADOWING_MAIN = """
    from memojar import cached
    from statistics import robust_mean

    @cached
    def f(x):
        return robust_mean([x, x + 1, x + 5])
"""
SHADOWING_STATISTICS = """
    def robust_mean(xs):
        return sum(xs) / len(xs)
"""


def test_a_helper_in_a_module_named_like_a_standard_library_one_edited_recomputes(
    tmp_path: Path,
) -> None:
    """A project's own ``statistics.py`` (found before the standard library's, from the
    project's folder) is the user's code by its file, as any module outside the libraries'
    folders. Before, it was taken for the standard library by its name: its edit returned
    the old value."""
    write(tmp_path, {"main.py": SHADOWING_MAIN, "statistics.py": SHADOWING_STATISTICS})
    assert run(tmp_path)["value"] == "5.0"
    write(tmp_path, {"statistics.py": SHADOWING_STATISTICS.replace(
        "return sum(xs) / len(xs)", "return sorted(xs)[1]")})
    second = run(tmp_path)
    assert second["value"] == "4"  # before: 5.0, the old code's
    assert second["explain"] == "incompatible: helper statistics.robust_mean changed"


def test_library_functions_are_not_tracked_and_stay_stable(project: Path) -> None:
    first = run(project)
    rows = _entry.parse_rows(first["ident"].partition(_entry.MANIFEST.decode())[2])
    # json.dumps: the standard library's code; xxhash: an installed distribution's. The
    # globals naming them count by the module they are bound to (``import json``), by name.
    assert not [name for name in rows if name.startswith(("json", "xxhash"))]
    assert rows["helpers.json"][0] == rows["helpers.xxhash"][0] == "constant"
    assert "helpers.offset" in rows
    assert run(project)["misses"] == 0


def test_the_function_own_code_edited_is_named(project: Path) -> None:
    run(project)
    write(project, {"main.py": MAIN.replace("+ helpers.offset(x)", "- helpers.offset(x)")})
    second = run(project)
    assert second["misses"] == 1
    assert second["explain"] == "incompatible: the code of __main__.f changed".replace(
        "__main__", "main")


RECURSIVE = """
    def even(n):
        return True if n == 0 else odd(n - 1)

    def odd(n):
        return False if n == 0 else even(n - 1)
"""


def test_mutually_recursive_helpers_terminate_and_track_both(tmp_path: Path) -> None:
    write(tmp_path, {"helpers.py": RECURSIVE, "main.py": """
        from memojar import cached
        from helpers import even

        @cached
        def f(x):
            return even(x)
    """})
    first = run(tmp_path)
    assert first["value"] == "False"
    assert "helpers.odd" in first["ident"] and "helpers.even" in first["ident"]
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"helpers.py": RECURSIVE.replace("return False if", "return bool(0) if")})
    second = run(tmp_path)
    assert second["misses"] == 1
    assert second["explain"] == "incompatible: helper helpers.odd changed"


COMPLEX = """
    TABLE = {"b": {1, 2, 3}, "a": frozenset({"x", "y", "z"}), "c": (1.5, None, b"raw")}
    NAMES = {"alpha", "beta", "gamma", "delta"}

    class Model:
        LIMIT = 3

        def run(self, x):
            return x in {"p", "q", "r"} or x in NAMES

    def helper(x):
        return sorted(TABLE) + sorted(NAMES) + [Model().run(x)]
"""


def test_identity_is_the_same_under_four_hash_seeds(tmp_path: Path) -> None:
    write(tmp_path, {"helpers.py": COMPLEX, "main.py": """
        from memojar import cached
        import helpers

        @cached
        def f(x):
            return helpers.helper(x), helpers.Model
    """})
    runs = [run(tmp_path, seed) for seed in ("0", "1", "42", "12345")]
    assert len({r["ident"] for r in runs}) == 1
    rows = _entry.parse_rows(runs[0]["ident"].partition("\x1e")[2])
    assert rows["helpers.TABLE"][0] == "constant" and rows["helpers.Model"][0] == "class"
    assert rows["helpers.Model.LIMIT"][0] == "constant"  # a class attribute, its own row
    assert [r["misses"] for r in runs] == [1, 0, 0, 0]


METHOD = """
    from memojar import cached

    class Shape:
        def __init__(self, side):
            self.side = side

        @cached(ignore=("self",))
        def area(self, x):
            return self.unit() * x

        def unit(self):
            return 2
"""


def test_a_method_depends_on_its_class(tmp_path: Path) -> None:
    write(tmp_path, {"shapes.py": METHOD, "main.py": """
        from shapes import Shape
        fn, args = Shape.area, (Shape(1), 3)
    """})
    first = run(tmp_path)
    assert first["value"] == "6"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"shapes.py": METHOD.replace("return 2", "return 5")})
    second = run(tmp_path)
    assert second["misses"] == 1 and second["value"] == "15"
    assert second["explain"] == "incompatible: class shapes.Shape changed"


# --- a global the function changes in place --------------------------------------------

ACCUMULATORS = {
    "a list it appends to": ("LOG = []", "LOG.append(x)"),
    "a memo it stores into": ("_memo = {}", "_memo[x, 1] = x"),
    "a counter it bumps": ("COUNT = {'n': 0}", "COUNT['n'] += 1"),
    "a set it adds to": ("SEEN = set()", "SEEN.add(x)"),
    "another module's list": ("import store", "store.LOG.append(x)"),
    "a class attribute": ("class Registry:\n    items = []",
                          "Registry.items.append(x)"),
}


@pytest.mark.parametrize("made, change", ACCUMULATORS.values(), ids=ACCUMULATORS.keys())
def test_a_global_the_functions_change_in_place_does_not_cost_other_processes_their_entries(
        tmp_path: Path, made: str, change: str) -> None:
    """A list, dict or set the function and another function change in place (a log, a
    memo, a counter) is their accumulator: it counts by type. Before, by its contents at
    the first call, which depend on what ran before: a run that called ``g`` first made
    another identity for ``f``, missed, and its store swept the other run's entry as older
    code, so every run recomputed."""
    write(tmp_path, {"store.py": "LOG = []\n", "main.py": f"""
        import sys
        from memojar import cached

        {textwrap.indent(made, " " * 8).lstrip()}

        def note(x):
            {change}

        @cached
        def g(x):
            note(x)
            return x

        @cached
        def f(x):
            note(x)
            return x * 2

        if __name__ == "__main__":
            for x in sys.argv[1:]:
                g(int(x))
            print(f(5), f.cache_info().misses)
    """})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((SRC, str(tmp_path))),
           "MEMOJAR_DIR": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}

    def run_main(*args: str) -> str:
        done = subprocess.run([sys.executable, "main.py", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run_main() == "10 1"
    assert run_main("1", "2") == "10 0"
    assert run_main("3") == "10 0"
    assert run_main() == "10 0"


def _prints_by_scale(root: Path) -> None:
    """``main.py`` of ``root`` run with the scales 2, 3, 2 in turn prints 5 times each."""
    env = {**os.environ, "PYTHONPATH": SRC, "MEMOJAR_DIR": str(root / "cache"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    for scale, value in (("2", "10"), ("3", "15"), ("2", "10")):
        done = subprocess.run([sys.executable, "main.py", scale], cwd=root, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == value, done.stderr


def test_a_global_table_the_function_only_reads_still_counts_by_its_contents(
        tmp_path: Path) -> None:
    """Only what the walked code changes in place is an accumulator: a table it reads,
    filled by code it does not run (``configure``), still counts by its contents."""
    write(tmp_path, {"main.py": """
        import sys
        from memojar import cached

        SETTINGS = {}
        OUT = {}

        def configure(scale):
            SETTINGS["scale"] = scale

        @cached
        def f(x):
            OUT["scale"] = SETTINGS["scale"]
            return x * SETTINGS["scale"]

        if __name__ == "__main__":
            configure(int(sys.argv[1]))
            print(f(5))
    """})
    _prints_by_scale(tmp_path)


@pytest.mark.parametrize("build", [
    "SETTINGS = {'scale': int(sys.argv[1])}; SETTINGS['self'] = SETTINGS",
    "SETTINGS = {'scale': int(sys.argv[1]), 'all': []}; SETTINGS['all'].append(SETTINGS['all'])",
    "SETTINGS = {'scale': int(sys.argv[1]), 'all': Node()}; SETTINGS['all'].me = SETTINGS",
    "SETTINGS = {'scale': int(sys.argv[1]), 'cells': [{'nb': []} for _ in range(60)]}\n"
    "        for i, c in enumerate(SETTINGS['cells']):\n"
    "            c['nb'] += [SETTINGS['cells'][(i + d) % 60] for d in (1, 2, 59)]",
], ids=["dict-holding-itself", "list-holding-itself", "through-an-object", "neighbours"])
def test_a_global_table_that_holds_itself_still_counts_by_its_contents(
        tmp_path: Path, build: str) -> None:
    """A global that holds itself was counted by its type: its items were counted again at
    each way back until past the limit (and normalising recursed), so a run with another
    value returned the first run's."""
    write(tmp_path, {"main.py": f"""
        import sys
        from memojar import cached

        class Node:
            pass

        {build}

        @cached
        def f(x):
            return x * SETTINGS["scale"]

        if __name__ == "__main__":
            print(f(5))
    """})
    _prints_by_scale(tmp_path)


LOOK_FIRST = """
    import sys
    from memojar import cached

    SCALE = 1

    @cached
    def f(x):
        return helper(x) * SCALE

    if sys.argv[1] == "explain":
        f.cache_explain(3)
    elif sys.argv[1] == "contains":
        f.cache_contains(3)
    SCALE = int(sys.argv[2])  # set before the first call, after the look

    def helper(x):
        return x * FACTOR

    print(f(3))
"""


@pytest.mark.parametrize("look", ["explain", "contains"])
def test_a_look_before_the_first_call_leaves_the_identity_to_the_call(
        tmp_path: Path, look: str) -> None:
    """``cache_explain`` or ``cache_contains`` at a script's top, before the helper the
    function calls is defined and a global it reads is set: before, the look made and kept
    the identity then, without them; the call stored its value under it, and a later run
    that looked first returned that value after the helper or the global changed."""
    env = {**os.environ, "PYTHONPATH": SRC, "MEMOJAR_DIR": str(tmp_path / "cache"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    for factor, scale, value in (("10", "1", "30"), ("20", "1", "60"), ("20", "2", "120")):
        write(tmp_path, {"main.py": LOOK_FIRST.replace("FACTOR", factor)})
        done = subprocess.run([sys.executable, "main.py", look, scale], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == value, done.stderr


def test_looks_before_the_first_call_walk_once_and_the_call_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The identity a look makes serves the next looks (a loop of ``cache_contains``
    walked once a look: 200 looks of a function of 300 helpers took 0.48 s), and the first
    call still makes its own."""
    def g(x):
        return x * 2

    Cache(tmp_path).cached(g)(1)
    walks = []
    walk = _decorator.dependencies
    monkeypatch.setattr(_decorator, "dependencies", lambda f: walks.append(f) or walk(f))
    f = Cache(tmp_path).cached(g)
    assert all(f.cache_contains(1) for _ in range(3))
    assert len(walks) == 1
    assert f(1) == 2 and f.cache_info().hits == 1
    assert len(walks) == 2


# --- globals defined after the decorated function ---------------------------------------

def test_globals_defined_after_the_function_count_and_resolve_once(tmp_path: Path) -> None:
    write(tmp_path, {"memojar_late.py": f"""
        from memojar import Cache, _entry

        @Cache({str(tmp_path / "cache")!r}).cached
        def f(x):
            return later(x)

        def later(x):
            return x + 1
    """})
    sys.path.insert(0, str(tmp_path))
    try:
        import memojar_late as late
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("memojar_late", None)
    memo = late.f.__memojar__
    assert "ident" not in vars(memo)  # nothing resolved at decoration time
    assert late.f(1) == 2
    ident = vars(memo)["ident"]
    assert b"function memojar_late.later" in ident
    late.f(1)
    assert vars(memo)["ident"] is ident  # fixed after the first call


# --- depends_on= ------------------------------------------------------------------------

def _dist(site: Path, name: str, version: str, imports: str = "") -> None:
    """A distribution ``name`` installed in ``site``, providing the top-level import
    ``imports`` if given (as PyYAML provides ``yaml``)."""
    for old in site.glob(f"{name}-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if imports:
        (info / "top_level.txt").write_text(f"{imports}\n")


def test_a_package_version_bump_recomputes(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "memojar_fakepkg", "1.0")
    write(tmp_path, {"main.py": """
        from memojar import cached

        @cached(depends_on=("memojar_fakepkg", 7))
        def f(x):
            return x
    """})
    assert run(tmp_path, extra_path=str(site))["misses"] == 1
    assert run(tmp_path, extra_path=str(site))["misses"] == 0
    _dist(site, "memojar_fakepkg", "1.1")
    second = run(tmp_path, extra_path=str(site))
    assert second["misses"] == 1
    assert second["explain"] == "incompatible: package memojar_fakepkg 1.0 -> 1.1"


def test_depends_on_an_import_name_counts_its_distribution_s_version(tmp_path: Path) -> None:
    # depends_on=("yaml",) (PyYAML's import name, as "sklearn", "cv2", "PIL") was a
    # ValueError saying the package "is not installed", of a package the program imports.
    site = tmp_path / "site"
    _dist(site, "memojar_fake_dist", "1.0", imports="memojar_fakeimport")
    write(tmp_path, {"main.py": """
        from memojar import cached

        @cached(depends_on=("memojar_fakeimport",))
        def f(x):
            return x
    """})
    assert run(tmp_path, extra_path=str(site))["misses"] == 1
    assert run(tmp_path, extra_path=str(site))["misses"] == 0
    _dist(site, "memojar_fake_dist", "1.1", imports="memojar_fakeimport")
    second = run(tmp_path, extra_path=str(site))
    assert second["misses"] == 1
    assert second["explain"] == "incompatible: package memojar_fakeimport 1.0 -> 1.1"


def test_depends_on_an_import_name_of_several_distributions_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = tmp_path / "site"
    _dist(site, "memojar_fake_a", "1.0", imports="memojar_shared_ns")
    _dist(site, "memojar_fake_b", "2.0", imports="memojar_shared_ns")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ValueError, match=r"'memojar_shared_ns', which is imported from several "
                                         r"distributions \('memojar_fake_a', "
                                         r"'memojar_fake_b'\): name the one"):
        Cache(tmp_path / "cache").cached(depends_on=("memojar_shared_ns",))(lambda x: x)


def test_depends_on_an_import_name_lists_the_distributions_once_for_many_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each decoration naming an import name (``depends_on=("yaml",)``) listed every
    distribution's top-level names, a scan of all installed (130 ms for 140: 20 such
    functions took 3.3 s to import). They are listed once, and again for a name not
    found (installed since); the version is still read at each decoration (an upgrade is
    seen)."""
    from importlib import metadata

    site = tmp_path / "site"
    _dist(site, "memojar_fake_once", "1.0", imports="memojar_fake_once_import")
    monkeypatch.syspath_prepend(str(site))
    listed = []
    real = metadata.packages_distributions

    def counted() -> Any:
        listed.append(1)
        return real()

    monkeypatch.setattr(metadata, "packages_distributions", counted)
    cache = Cache(tmp_path / "cache")
    for i in range(5):
        f = cache.cached(depends_on=("memojar_fake_once_import",))(lambda x, i=i: x + i)
        assert f(1) == 1 + i
    assert len(listed) == 1
    _dist(site, "memojar_fake_later", "3.0", imports="memojar_fake_later_import")
    f = cache.cached(depends_on=("memojar_fake_later_import",))(lambda x: -x)
    assert f(2) == -2 and len(listed) == 2  # installed since: listed again
    g = cache.cached(depends_on=("memojar_fake_once_import",))(lambda x: x)
    assert g(1) == 1
    _dist(site, "memojar_fake_once", "1.1", imports="memojar_fake_once_import")
    g = cache.cached(depends_on=("memojar_fake_once_import",))(lambda x: x)
    assert g.cache_explain(1) == "incompatible: package memojar_fake_once_import 1.0 -> 1.1"
    assert len(listed) == 2


def test_depends_on_a_package_that_is_not_installed_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'no_such_dist_xyz', which is not installed"):
        Cache(tmp_path).cached(depends_on=("no_such_dist_xyz",))(lambda x: x)


def test_depends_on_errors_say_how_to_write_a_value(tmp_path: Path) -> None:
    # depends_on=("v1",) was told to "pass a plain value in a tuple", which it was; and
    # depends_on=3 was refused by a message saying plain values are taken.
    with pytest.raises(ValueError, match=r"put it in a tuple of its own: "
                                         r"depends_on=\[\('v1',\)\]"):
        Cache(tmp_path).cached(depends_on=("v1",))(lambda x: x)
    f = Cache(tmp_path).cached(depends_on=[("v1",)])(lambda x: x + 1)
    assert f(1) == 2
    g = Cache(tmp_path).cached(depends_on=3)(lambda x: x + 2)
    assert g(1) == 3
    assert Cache(tmp_path).cached(depends_on=3)(lambda x: x + 2).cache_contains(1)
    assert not Cache(tmp_path).cached(depends_on=4)(lambda x: x + 2).cache_contains(1)
    with pytest.raises(TypeError, match=r"depends_on= takes a package name, a callable or a "
                                        r"plain value, or a tuple of them, not object"):
        Cache(tmp_path).cached(depends_on=object())(lambda x: x)


def test_depends_on_a_value_of_another_type_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"depends_on\[0\] is a object"):
        Cache(tmp_path).cached(depends_on=(object(),))(lambda x: x)


def test_depends_on_a_callable_tracks_its_code(tmp_path: Path) -> None:
    write(tmp_path, {"helpers.py": HELPERS, "main.py": """
        from memojar import cached
        import helpers

        @cached(depends_on=(helpers.scale,))
        def f(x):
            return x
    """})
    run(tmp_path)
    write(tmp_path, {"helpers.py": HELPERS.replace("FACTOR = 2", "FACTOR = 4")})
    second = run(tmp_path)
    assert second["misses"] == 1
    assert second["explain"] == "incompatible: constant helpers.FACTOR changed"


DEPENDS_BOUND = """
    from functools import partial
    from memojar import cached
    import helpers

    class Scaler:
        def __init__(self, k):
            self.k = k

        def transform(self, x):
            return helpers.scale(x) * self.k

    def shift(x, by):
        return x + by

    PRE = partial(shift, by=0)
    SCALER = Scaler(2)

    @cached(depends_on=(PRE, SCALER.transform, Scaler))
    def f(x):
        return globals()["SCALER"].transform(x), globals()["PRE"](x)  # not followed
"""


@pytest.mark.parametrize("edit", [
    ("Scaler(2)", "Scaler(7)", "main.Scaler.transform(bound)"),
    ("partial(shift, by=0)", "partial(shift, by=1)", "main.shift(bound)"),
], ids=["instance", "partial"])
def test_depends_on_a_bound_method_or_partial_counts_what_is_bound(
        tmp_path: Path, edit: tuple[str, str, str]) -> None:
    # depends_on=(partial(g, a),) is g with a, obj.method is the method with obj, as for the
    # function itself (before: only the code, and SCALER = Scaler(7) returned Scaler(2)'s
    # value).
    write(tmp_path, {"helpers.py": HELPERS, "main.py": DEPENDS_BOUND})
    first = run(tmp_path)
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"main.py": DEPENDS_BOUND.replace(edit[0], edit[1])})
    second = run(tmp_path)
    assert second["misses"] == 1 and second["value"] != first["value"]
    assert second["explain"] == f"incompatible: depends_on value {edit[2]} changed"
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


def test_depends_on_a_class_follows_what_its_methods_call(tmp_path: Path) -> None:
    # Before: the class's own methods only; an edited helper of a method was not seen.
    write(tmp_path, {"helpers.py": HELPERS, "main.py": DEPENDS_BOUND.replace(
        "(PRE, SCALER.transform, Scaler)", "(Scaler,)")})
    run(tmp_path)
    write(tmp_path, {"helpers.py": HELPERS.replace("return x * FACTOR", "return x * FACTOR * 3")})
    second = run(tmp_path)
    assert second["misses"] == 1
    assert second["explain"] == "incompatible: helper helpers.scale changed"


ARGUMENTS = """
    from memojar import cached
    import models

    @cached
    def fit(model, x):
        return model.predict(x)

    @cached
    def apply(fn, x):
        return fn(x)

    fn, args = {call}
"""
ARG_MODELS = """
    import functools
    from helpers import scale

    class Model:
        def predict(self, x):
            return scale(x) + 1

    def transform(x):
        return scale(x) - 1

    @functools.cache
    def cached_transform(x):
        return scale(x) - 2

    class Singleton(Model):
        def __reduce__(self):  # pickled as its global name
            return "SINGLETON"

    SINGLETON = Singleton()
"""


@pytest.mark.parametrize(("call", "held"), [
    ("fit, (models.Model(), 3)", "models.Model"),
    ("apply, (models.transform, 3)", "models.transform"),
    ("apply, (models.cached_transform, 3)", "models.cached_transform"),
    ("fit, (models.SINGLETON, 3)", "models.Singleton"),
], ids=["instance", "function", "functools-cache-wrapper", "instance-pickled-by-its-name"])
def test_a_helper_of_a_function_or_instance_given_as_an_argument_edited_recomputes(
        tmp_path: Path, call: str, held: str) -> None:
    # fit(model, x) runs Model.predict, apply(transform, x) runs transform: an argument
    # keys with what it depends on (before: its own code only, and the edited scale's
    # calls returned the old scale's value). Also one that pickle writes as its global
    # name alone (a functools.cache wrapper, an instance whose __reduce__ returns its
    # name): before, the key held no code at all, and a new process got the old value.
    write(tmp_path, {"helpers.py": HELPERS, "models.py": ARG_MODELS,
                     "main.py": ARGUMENTS.format(call=call)})
    first = run(tmp_path)
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"helpers.py": HELPERS.replace("return x * FACTOR", "return x * FACTOR * 5")})
    second = run(tmp_path)
    assert second["misses"] == 1 and second["value"] != first["value"]
    # The function's own code is unchanged, so its entries cannot say what changed; the
    # explanation names the code the arguments hold (before: a bare "no entry").
    assert second["explain"] == (
        f"miss: no entry for these arguments; they hold {held} of your code, and the key "
        "covers it and what it calls: an edit of either is another key")
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


def _a_helper(x: int) -> int:
    return x + 1


def test_explaining_a_miss_of_arguments_holding_code_leaves_nothing_for_the_collector(
        tmp_path: Path) -> None:
    # The names of the code the arguments hold were noted by a pickler of a class made at
    # each explanation: a class is a cycle, and each such line left one to the collector.
    import gc

    @Cache(tmp_path).cached
    def apply(fn: Any, x: int) -> int:
        return fn(x)

    apply(_a_helper, 1)
    apply.cache_explain(_a_helper, 2)  # what a first explanation imports and makes once
    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        line = apply.cache_explain(_a_helper, 3)
        gc.collect()
        kept = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert "they hold test_depends._a_helper of your code" in line
    assert kept == []


# --- files= -----------------------------------------------------------------------------

FILES_MAIN = """
    from pathlib import Path
    from memojar import cached

    @cached(files=("path",))
    def f(x, path=Path(__file__).with_name("data.txt")):
        return Path(path).read_text()
"""


def test_a_file_edited_with_size_and_mtime_restored_recomputes(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("alpha")
    write(tmp_path, {"main.py": FILES_MAIN})
    assert run(tmp_path)["value"] == "'alpha'"
    assert run(tmp_path)["misses"] == 0
    before = data.stat()
    data.write_text("omega")  # same size
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert data.stat().st_mtime_ns == before.st_mtime_ns
    second = run(tmp_path)
    assert second["misses"] == 1 and second["value"] == "'omega'"
    # Nothing stored tells which file changed (its content is in the key), but the
    # explanation says that the key covers it (before: a bare "no entry")
    assert second["explain"] == (
        "miss: no entry for these arguments; the key covers the content of the files= "
        "paths (path): an edited file is another key")


def test_a_directory_argument_holding_the_cache_hits(tmp_path: Path) -> None:
    """The cache inside a files= folder (the project's folder, its cache in ".cache"):
    before, every entry stored and every statistics write changed the folder, so no call
    ever hit, each stored one more entry, and each warned that a file changed while the
    function ran. The cache is left out of the folder's content; the user's files count."""
    (tmp_path / "in.txt").write_text("1")
    cache = Cache(tmp_path / ".cache")

    @cache.cached(files=("root",))
    def total(root):
        return int((Path(root) / "in.txt").read_text())

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "changed while it ran": it is memojar's
        assert [total(str(tmp_path)) for _ in range(3)] == [1, 1, 1]
    assert total.cache_info().misses == 1
    assert total.cache_info().entries == 1
    (tmp_path / "in.txt").write_text("2")
    assert total(str(tmp_path)) == 2


def test_explain_names_a_files_path_that_does_not_exist(tmp_path: Path) -> None:
    """Before, a deleted input file was explained as "an edited file is another key"."""
    data = tmp_path / "data.txt"
    data.write_text("1")

    @Cache(tmp_path / "cache").cached(files=("path", "extra"))
    def read(path, extra=None):
        return Path(path).read_text()

    assert read(str(data)) == "1"
    data.unlink()
    assert read.cache_explain(str(data)) == (
        f"miss: no entry for these arguments; the files= path path={str(data)!r} does not "
        "exist (or cannot be read): the call computes, and the function meets that itself")
    with pytest.raises(FileNotFoundError):
        read(str(data))
    # a pattern matching nothing is no missing path: its matches are the content
    assert "does not exist" not in read.cache_explain(str(tmp_path / "*.csv"))


def test_a_files_path_this_user_cannot_read_is_not_keyed_as_a_missing_one(
        shared_folder: Path) -> None:
    """A function that answers a missing file itself (``except FileNotFoundError``) stored
    that answer; the file was then made, unreadable to this user. Before, an unreadable
    path was keyed as a missing one: the call returned the missing file's answer, where the
    function raises ``PermissionError``."""
    data = shared_folder / "data.txt"

    def job() -> str:
        @Cache(shared_folder / "cache").cached(files=("path",))
        def read(path):
            try:
                return Path(path).read_text()
            except FileNotFoundError:
                return "no file"

        assert read(str(data)) == "no file"
        data.write_text("secret")
        data.chmod(0)
        try:
            return f"returned {read(str(data))!r}"
        except PermissionError:
            return "raised PermissionError"

    importlib.import_module("sysconfig")  # read by the identity's walk; that user cannot
    assert as_another_user(job) == "raised PermissionError"


def test_a_directory_argument_covers_the_files_inside(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("1")
    calls = []

    @Cache(tmp_path / "cache").cached(files="root")
    def f(root):
        calls.append(root)
        return len(calls)

    assert f(str(folder)) == 1 and f(str(folder)) == 1
    (folder / "sub" / "a.txt").write_text("2")
    assert f(str(folder)) == 2
    (folder / "sub" / "b.txt").write_text("")
    assert f(str(folder)) == 3


NOT_A_FILE = """
import os, sys, threading, time
from memojar import Cache

@Cache(sys.argv[1]).cached(files=("path",))
def read(path):
    with open(path, "rb") as f:
        return f.read(5)

path = sys.argv[2]
if path.endswith("fifo"):
    def writer():  # a writer, so that a blocked open would go on to consume its data
        time.sleep(0.5)
        fd = os.open(path, os.O_WRONLY)
        os.write(fd, b"hello")
        os.close(fd)
    threading.Thread(target=writer, daemon=True).start()
try:
    read(path)
except ValueError as exc:
    print(exc)
"""


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_fifo_or_device_path_is_an_error_never_a_hang(tmp_path: Path, kind: str) -> None:
    path = kind
    if kind == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    done = subprocess.run([sys.executable, "-c", NOT_A_FILE, str(tmp_path / "cache"), path],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    what = "a FIFO" if kind == "fifo" else "a device"
    assert f"files= parameter 'path' of __main__.read is '{path}', {what}" in done.stdout


@pytest.mark.parametrize("url", ["s3://bucket/data.parquet", "https://host/data.csv?v=1"])
def test_a_url_given_to_a_files_parameter_is_an_error(tmp_path: Path, url: str) -> None:
    """Before, keyed as a missing file: stored, and every later call returned the value,
    whatever became of the object (the URL in a list too)."""
    calls = []

    def load(path: object) -> None:
        calls.append(path)

    f = Cache(tmp_path / "cache").cached(files=("path",))(load)
    said = rf"files= parameter 'path' of .* is the URL '{re.escape(url)}': memojar follows"
    with pytest.raises(ValueError, match=said):
        f(url)
    with pytest.raises(ValueError, match=said):
        f([str(tmp_path / "local.csv"), url])
    assert calls == []


@pytest.mark.parametrize("url", ["file:///data/my%20table.csv",
                                 "FILE://localhost/data/my%20table.csv"])
def test_a_file_url_given_to_a_files_parameter_says_to_pass_its_path(tmp_path: Path,
                                                                     url: str) -> None:
    """A file:// URL names a file of this machine: the error says to pass its path. Before,
    it read as a remote object's ("memojar follows files of this machine, and would never see
    the object change ... key= returning the object's version (its ETag)")."""
    f = Cache(tmp_path / "cache").cached(files=("path",))(lambda path: None)
    with pytest.raises(ValueError) as raised:
        f(url)
    said = str(raised.value)
    assert "files= parameter 'path' of " in said and f"is the URL {url!r}" in said
    assert "pass its path, '/data/my table.csv'" in said
    assert "ETag" not in said and "would never see" not in said


def test_a_folder_named_as_a_url_is_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    os.makedirs("s3:/bucket")
    Path("s3:/bucket/data.csv").write_text("1")
    f = Cache(tmp_path / "cache").cached(files=("path",))(_what_is_there)
    assert f("s3://bucket/data.csv") == "1"
    Path("s3:/bucket/data.csv").write_text("2")
    assert f("s3://bucket/data.csv") == "2"


def _what_is_there(path: str) -> str:
    return "a folder" if os.path.isdir(path) else Path(path).read_text()


def test_a_file_made_a_folder_while_its_key_is_made_is_keyed_as_the_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``files=`` path that another thread (or process) replaced by a folder between the
    key's ``stat`` (a file) and its ``open`` (a folder): the call raised memojar's
    ValueError that the path is 'not a regular file'. It is looked at again, and keyed as
    what it is now."""
    from memojar import _depends

    path = tmp_path / "input"
    path.write_text("text")
    f = Cache(tmp_path / "cache").cached(files=("path",))(_what_is_there)
    digest = _depends._file_digest

    def made_a_folder_meanwhile(name: str, st: os.stat_result) -> str | None:
        monkeypatch.setattr(_depends, "_file_digest", digest)
        os.unlink(name)
        os.mkdir(name)
        return digest(name, st)

    monkeypatch.setattr(_depends, "_file_digest", made_a_folder_meanwhile)
    assert f(str(path)) == "a folder"
    os.rmdir(path)
    path.write_text("text")
    assert f(str(path)) == "text"


def test_a_fifo_inside_a_directory_is_never_read(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.txt").write_text("1")
    os.mkfifo(folder / "pipe")
    code = f"""
import sys
from memojar import Cache
f = Cache({str(tmp_path / "cache")!r}).cached(files=("root",))(lambda root: 7)
print(f({str(folder)!r}), f({str(folder)!r}), f.cache_info().misses)
"""
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["7", "7", "1"]


def _counting(cache_dir: Path):
    calls = []

    @Cache(cache_dir).cached(files="root")
    def f(root):
        calls.append(root)
        return len(calls)

    return f


def test_a_linked_folder_inside_a_directory_counts_with_its_content(tmp_path: Path) -> None:
    folder, other = tmp_path / "d", tmp_path / "other"
    folder.mkdir()
    other.mkdir()
    (other / "b.txt").write_text("1")
    (folder / "link").symlink_to(other)
    f = _counting(tmp_path / "cache")
    assert f(str(folder)) == 1 and f(str(folder)) == 1
    (other / "b.txt").write_text("2")
    assert f(str(folder)) == 2


def test_an_empty_folder_added_to_a_directory_recomputes(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.txt").write_text("1")
    f = _counting(tmp_path / "cache")
    assert f(str(folder)) == 1 and f(str(folder)) == 1
    (folder / "new").mkdir()
    assert f(str(folder)) == 2


def test_an_empty_folder_and_an_empty_file_at_one_path_are_two_keys(tmp_path: Path) -> None:
    # A folder's digest and a file's were each xxh3 of the bytes hashed: nothing, for an
    # empty folder and an empty file. A function telling them apart (a path to a file or
    # to a folder of files) had the empty file's value returned for the empty folder.
    path = tmp_path / "x"
    path.touch()

    @Cache(tmp_path / "cache").cached(files=("p",))
    def kind(p: str) -> str:
        return "folder" if os.path.isdir(p) else "file"

    assert kind(str(path)) == "file"
    path.unlink()
    path.mkdir()
    assert kind(str(path)) == "folder"


def test_a_link_loop_and_an_undecodable_name_in_a_directory_are_keyed(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "up").symlink_to(folder)
    (folder / "dangling").symlink_to(tmp_path / "nowhere")
    odd = os.path.join(os.fsencode(folder), b"\xff.txt")
    with open(odd, "wb") as out:
        out.write(b"1")
    f = _counting(tmp_path / "cache")
    assert f(str(folder)) == 1 and f(str(folder)) == 1
    with open(odd, "wb") as out:
        out.write(b"2")
    assert f(str(folder)) == 2


def test_a_file_edited_while_the_function_runs_is_not_stored_under_its_old_content(
        tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("A")
    edits = ["B"]  # someone saves the file while the first call runs

    @Cache(tmp_path / "cache").cached(files=("path",))
    def read(path):
        if edits:
            data.write_text(edits.pop())
        return Path(path).read_text()

    with pytest.warns(MemojarWarning, match="changed while it ran"):
        assert read(str(data)) == "B"  # what it read, returned
    data.write_text("A")  # back to the content hashed before that call
    assert read(str(data)) == "A"
    assert read.cache_info().misses == 2


def test_a_file_rewritten_with_the_same_content_while_the_function_runs_is_not_stored(
        tmp_path: Path) -> None:
    # Another job regenerates the same export while the function runs: it truncates the
    # file, the function reads it empty, and the job writes the same content back before
    # the function returns. The content after the call is the content hashed before it,
    # but the value was computed from neither: it must not be stored under that content
    # (before: 0 rows stored for the 3-row file, returned by every later run).
    data = tmp_path / "data.csv"
    data.write_text("a\nb\nc\n")
    rewrites = ["a\nb\nc\n"]

    @Cache(tmp_path / "cache").cached(files=("path",))
    def rows(path):
        if rewrites:
            time.sleep(0.05)  # past the file system's timestamp tick
            data.write_text("")  # truncated by the exporter
        n = len(Path(path).read_text().splitlines())
        if rewrites:
            data.write_text(rewrites.pop())  # and written again, the same
        return n

    with pytest.warns(MemojarWarning, match="changed while it ran"):
        assert rows(str(data)) == 0  # what it read, returned
    assert rows(str(data)) == 3
    assert rows(str(data)) == 3 and rows.cache_info()[:2] == (1, 2)


def test_a_tree_rewritten_with_the_same_content_while_the_function_runs_is_not_stored(
        tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.csv").write_text("1\n2\n")
    rewrites = ["1\n2\n"]

    @Cache(tmp_path / "cache").cached(files=("path",))
    def rows(path):
        if rewrites:
            time.sleep(0.05)
            (folder / "a.csv").write_text("")
        n = sum(len(p.read_text().splitlines()) for p in Path(path).iterdir())
        if rewrites:
            (folder / "a.csv").write_text(rewrites.pop())
        return n

    with pytest.warns(MemojarWarning, match="changed while it ran"):
        assert rows(str(folder)) == 0
    assert rows(str(folder)) == 2


def test_a_function_writing_its_own_files_path_warns_once_and_returns_its_values(
        tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"
    counter.write_text("0")

    @Cache(tmp_path / "cache").cached(files=("path",))
    def bump(path):
        n = int(Path(path).read_text()) + 1
        Path(path).write_text(str(n))  # an output declared as an input: never stored
        return n

    with pytest.warns(MemojarWarning) as caught:
        assert bump(str(counter)) == 1
    assert len(caught) == 1 and caught[0].filename == __file__  # the caller's line
    message = str(caught[0].message)
    assert "bump" in message and f"path={str(counter)!r}" in message
    assert "not cached" in message and "declare in files= only the files it reads" in message
    assert bump(str(counter)) == 2  # no second warning (filterwarnings = error)
    assert bump.cache_info()[1:3] == (2, 0)  # two misses, nothing stored


class _PathOf:
    """A path argument that is an ``os.PathLike`` but no ``str``: its own ``__str__`` and
    ``__repr__`` are the object's (or fail)."""

    def __init__(self, path: Path, shown: bool = True) -> None:
        self.path, self.shown = path, shown

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        if not self.shown:
            raise RuntimeError("this object cannot be shown")
        return object.__repr__(self)


@pytest.mark.parametrize("wrap", [os.fsencode, _PathOf], ids=["bytes", "PathLike"])
def test_the_files_warning_names_a_bytes_or_pathlike_path_as_the_path(
        tmp_path: Path, wrap: Any, monkeypatch) -> None:
    monkeypatch.setattr(_decorator, "_FILES_WARNED", set())  # each case warns (once)
    counter = tmp_path / "counter.txt"
    counter.write_text("0")

    @Cache(tmp_path / "cache").cached(files=("path",))
    def bump(path):
        Path(os.fsdecode(os.fspath(path))).write_text("1")
        return 1

    with pytest.warns(MemojarWarning, match="changed while it ran") as caught:
        assert bump(wrap(counter)) == 1
    assert f"path={str(counter)!r}" in str(caught[0].message)


def test_the_files_warning_of_a_copy_sent_by_cloudpickle_points_at_the_callers_line(
        tmp_path: Path) -> None:
    """cloudpickle copies a function of a test body (or of ``__main__``) by value, memojar's
    wrapper with it: its code's file name is then cloudpickle's ``<dynamic-code>``, not
    memojar's, and must not be taken for the caller's."""
    cloudpickle = pytest.importorskip("cloudpickle")
    counter = tmp_path / "counter.txt"
    counter.write_text("0")

    @Cache(tmp_path / "cache").cached(files=("path",))
    def bump_copied(path):
        Path(path).write_text("1")
        return 1

    copy = cloudpickle.loads(cloudpickle.dumps(bump_copied))
    with pytest.warns(MemojarWarning, match="changed while it ran") as caught:
        assert copy(str(counter)) == 1
    assert caught[0].filename == __file__


def test_the_files_warning_of_a_coroutine_run_by_asyncio_points_at_the_callers_line(
        tmp_path: Path) -> None:
    """``asyncio.run(f(path))``: no frame of the caller's awaits the wrapper, which the
    event loop runs; the warning points past asyncio's frames, at the line that ran it."""
    import asyncio

    counter = tmp_path / "counter.txt"
    counter.write_text("0")

    @Cache(tmp_path / "cache").cached(files=("path",))
    async def bump_async(path):
        Path(path).write_text("1")
        return 1

    with pytest.warns(MemojarWarning, match="changed while it ran") as caught:
        assert asyncio.run(bump_async(str(counter))) == 1
    assert caught[0].filename == __file__


def test_the_files_warning_never_loses_the_value_of_a_path_that_cannot_be_shown(
        tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"
    counter.write_text("0")

    @Cache(tmp_path / "cache").cached(files=("path",))
    def bump(path):
        counter.write_text("1")
        return 1

    path = _PathOf(counter, shown=False)
    with pytest.warns(MemojarWarning, match="changed while it ran"):
        assert bump(path) == 1


def test_an_unchanged_file_is_not_read_again(tmp_path: Path, monkeypatch) -> None:
    from memojar import _depends

    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 100)
    old = time.time() - 10
    os.utime(data, (old, old))
    time.sleep(_depends._RECENT + 0.1)  # a ctime this recent is not trusted
    f = Cache(tmp_path / "cache").cached(files=("p",))(lambda p: 1)
    f(data)
    reads = []
    monkeypatch.setattr(_depends, "open", lambda *a, **k: reads.append(a), raising=False)
    f(data)
    assert reads == []


def _on_fat(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stat`` of ``path`` as a FAT file system reports it: modification and change times
    counted in two seconds (ctime is the modification time there, as on sshfs)."""
    ino = path.stat().st_ino
    real_stat, real_fstat = os.stat, os.fstat

    def coarse(st: os.stat_result) -> os.stat_result:
        if st.st_ino != ino:
            return st
        tick = st.st_mtime_ns // 2_000_000_000 * 2_000_000_000
        fields = [st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                  st.st_size, st.st_atime, tick // 10**9, tick // 10**9]
        return os.stat_result(fields, {"st_atime_ns": st.st_atime_ns, "st_mtime_ns": tick,
                                       "st_ctime_ns": tick})

    monkeypatch.setattr(os, "stat", lambda *a, **k: coarse(real_stat(*a, **k)))
    monkeypatch.setattr(os, "fstat", lambda fd: coarse(real_fstat(fd)))


def test_two_writes_in_one_tick_of_a_coarse_clock_are_told_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On FAT, timestamps count two seconds: a file written 1.3 s into a tick, hashed
    (older than the one second a ctime was not trusted for), then written again with the
    same size, had the same inode, size, mtime and ctime, and the call returned the value of
    the first content. A ctime of whole seconds is now not trusted for three."""
    data = tmp_path / "data.txt"
    data.write_text("first")
    _on_fat(data, monkeypatch)
    cache = Cache(tmp_path / "cache")

    @cache.cached(files=("path",))
    def read(path):
        return Path(path).read_text()

    while not 1.2 < time.time() % 2 < 1.5:  # 1.2 s into a tick of the FAT clock
        time.sleep(0.01)
    data.write_text("alpha")
    assert read(str(data)) == "alpha"
    data.write_text("omega")  # same size, same tick: nothing of its stat changed
    assert read(str(data)) == "omega"


def test_the_digests_of_files_kept_are_bounded(tmp_path: Path, monkeypatch) -> None:
    """A long-running process reading ever new files (a pipeline over a growing folder)
    kept the digest of every file it ever hashed. The last ones hashed are kept (checked
    with the bound lowered: the real one is tens of thousands of files)."""
    from memojar import _depends

    monkeypatch.setattr(_depends, "_HASHES_MAX", 50, raising=False)
    monkeypatch.setattr(_depends, "_hashes", {})
    files = []
    for i in range(150):
        path = tmp_path / f"in-{i}.txt"
        path.write_text(str(i))
        files.append(path)
    time.sleep(_depends._RECENT + 0.1)  # a ctime this recent is not trusted
    digests = [_depends.content_digest(path) for path in files]
    assert len(set(digests)) == 150
    assert len(_depends._hashes) == 50
    assert str(files[-1]) in _depends._hashes  # the latest kept: not read again
    assert [_depends.content_digest(path) for path in files] == digests  # and all still right


def test_the_parsed_result_class_records_kept_are_bounded(tmp_path: Path, monkeypatch) -> None:
    """A notebook that runs a cell defining a class and a function returning it again and
    again kept, per run, the record of the classes its stored results hold: one table entry
    per class version hit, for the life of the kernel. The latest are kept (checked with
    the bound lowered: the real one is thousands)."""
    from memojar import _depends

    monkeypatch.setattr(_depends, "_SECTIONS_MAX", 20, raising=False)
    monkeypatch.setattr(_depends, "_sections", {})
    cell = types.ModuleType("cells_of_a_notebook")
    monkeypatch.setitem(sys.modules, cell.__name__, cell)
    cache = Cache(tmp_path / "c")
    for run in range(60):  # the cell run again, its class edited each time
        exec(f"class Point:\n    def norm(self):\n        return {run}\n", vars(cell))

        @cache.cached
        def make() -> Any:
            return cell.Point()

        assert make().norm() == run  # a miss, then a hit through the class's record
        assert make().norm() == run
    assert 0 < len(_depends._sections) <= 20


def test_files_names_a_parameter_the_function_has(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="files= names 'pth'"):
        Cache(tmp_path).cached(files=("pth",))(lambda path: 1)


def _summing(cache: Path) -> Any:
    @Cache(cache).cached(files=("paths",))
    def total(paths):
        import glob

        names = sorted(glob.glob(paths)) if isinstance(paths, str) else paths
        return sum(int(Path(p).read_text()) for p in names)

    return total


@pytest.mark.parametrize("kind", [list, tuple, set], ids=["list", "tuple", "set"])
def test_a_list_of_paths_covers_each_file(tmp_path: Path, kind: type) -> None:
    # Before: a list was no path, its content "-": an edited file returned the old sum.
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("1")
    b.write_text("2")
    total = _summing(tmp_path / "cache")
    assert total(kind([str(a), str(b)])) == 3 and total(kind([str(a), str(b)])) == 3
    b.write_text("50")
    assert total(kind([str(a), str(b)])) == 51
    assert total.cache_info()[:2] == (1, 2)


def _column(kind: str) -> Any:
    """A maker of a column of paths as a data scientist holds one: ``df["path"]``, its
    ``.values``, a ``deque``."""
    if kind == "deque":
        import collections

        return collections.deque
    if kind == "ndarray":
        np = pytest.importorskip("numpy")
        return np.array
    if kind == "polars":
        return pytest.importorskip("polars").Series
    pd = pytest.importorskip("pandas")
    return {"series": pd.Series, "index": pd.Index}[kind]


@pytest.mark.parametrize("kind", ["ndarray", "series", "index", "deque", "polars"])
def test_a_column_of_paths_covers_each_file(tmp_path: Path, kind: str) -> None:
    # total(df["path"]), total(df["path"].values): before, no list, tuple or set, keyed by
    # the paths' names only: an edited file returned the old sum, with no warning.
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("1")
    b.write_text("2")
    column = _column(kind)
    total = _summing(tmp_path / "cache")
    assert total(column([str(a), str(b)])) == 3 and total(column([str(a), str(b)])) == 3
    b.write_text("50")
    assert total(column([str(a), str(b)])) == 51
    assert total.cache_info()[:2] == (1, 2)


def test_a_dict_of_paths_covers_each_file(tmp_path: Path) -> None:
    # load({"train": "train.csv", "test": "test.csv"}): before, a dict was no path, keyed
    # by its value only, and an edited file returned the old value.
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    for path, text in ((a, "1"), (b, "2"), (c, "4")):
        path.write_text(text)

    @Cache(tmp_path / "cache").cached(files=("paths",))
    def total(paths):
        return sum(int(Path(p).read_text()) for p in (
            paths["train"], *paths["more"]["test"]))

    def split() -> dict[str, Any]:
        return {"train": str(a), "more": {"test": [str(b), str(c)]}}

    assert total(split()) == 7
    assert total({"more": split()["more"], "train": str(a)}) == 7  # another order: a hit
    b.write_text("50")  # a file named in a list in a dict in the dict
    assert total(split()) == 55
    a.write_text("9")
    assert total(split()) == 63 and total(split()) == 63
    assert total.cache_info()[:2] == (2, 3)


def test_a_glob_pattern_covers_the_files_it_matches(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1")
    total = _summing(tmp_path / "cache")
    pattern = str(tmp_path / "*.csv")
    assert total(pattern) == 1 and total(pattern) == 1
    (tmp_path / "a.csv").write_text("7")  # an edit
    assert total(pattern) == 7
    (tmp_path / "b.csv").write_text("3")  # a new match
    assert total(pattern) == 10
    (tmp_path / "other.txt").write_text("5")  # no match: still a hit
    assert total(pattern) == 10 and total.cache_info()[:2] == (2, 3)


def test_a_path_under_the_home_folder_written_with_a_tilde_covers_the_file(
        tmp_path: Path, monkeypatch) -> None:
    # pandas.read_csv("~/data.csv") expands the tilde; the key did not (a missing file's
    # "-"), and an edited file returned the old value.
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "n.txt").write_text("1")
    read = Cache(tmp_path / "cache").cached(files=("path",))(
        lambda path: int(Path(path).expanduser().read_text()))
    assert read("~/n.txt") == 1 and read("~/n.txt") == 1
    (tmp_path / "n.txt").write_text("22")
    assert read("~/n.txt") == 22 and read.cache_info()[:2] == (1, 2)


def test_a_files_argument_that_is_no_path_is_keyed_by_its_value(tmp_path: Path) -> None:
    """A parameter that takes a path or the data already read (a frame, a dict). (For a
    while it was a TypeError.)"""
    data = tmp_path / "a.txt"
    data.write_text("1")

    def total(source: Any) -> int:
        return sum(source.values()) if isinstance(source, dict) else int(data.read_text())

    f = Cache(tmp_path / "cache").cached(files=("source",))(total)
    assert (f({"a": 1}), f({"a": 2}), f(data)) == (1, 2, 1)
    data.write_text("7")
    assert (f({"a": 1}), f({"a": 2}), f(data)) == (1, 2, 7)
    assert f.cache_info()[:2] == (2, 4)
    with open(data) as opened, pytest.raises(TypeError, match=r"argument 'source'.*cannot be "
                                             r"pickled"):
        f(opened)


# --- result classes ---------------------------------------------------------------------

MODELS = """
    class Point:
        def __init__(self, x):
            self.x = x

        def norm(self):
            return abs(self.x)

        def __repr__(self):
            return f"Point({self.x})"
"""


def test_a_result_class_changed_is_not_loaded_into_the_new_class(tmp_path: Path) -> None:
    write(tmp_path, {"models.py": MODELS, "main.py": """
        from memojar import cached
        import models

        @cached
        def f(x):
            return [models.Point(x)]
    """})
    assert run(tmp_path)["value"] == "[Point(3)]"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"models.py": MODELS.replace("abs(self.x)", "self.x ** 2")})
    second = run(tmp_path)
    assert second["misses"] == 1
    assert second["explain"] == "incompatible: class models.Point changed"


TYPED = """
    class Typed:  # a pydantic-like base: converts each field by its declared type
        def __init__(self, **values):
            for name, kind in type(self).__annotations__.items():
                setattr(self, name, kind(values[name]))

        def __repr__(self):
            return f"{type(self).__name__}({vars(self)})"

    class Reading(Typed):
        value: int
"""


def test_a_field_type_edited_in_a_class_recomputes(tmp_path: Path) -> None:
    # Only the annotation changes: no method, no class attribute (before: the class's
    # fingerprint was the same, and the int computed with the old type was returned).
    write(tmp_path, {"models.py": TYPED, "main.py": """
        from memojar import cached
        import models

        @cached
        def f(x):
            return models.Reading(value=x / 2).value
    """})
    assert run(tmp_path)["value"] == "1"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"models.py": TYPED.replace("value: int", "value: float")})
    second = run(tmp_path)
    assert second["misses"] == 1 and second["value"] == "1.5"
    assert second["explain"] == "incompatible: class models.Reading changed"
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


def test_a_result_class_field_type_edited_is_not_loaded_into_the_new_class(
        tmp_path: Path) -> None:
    read = "\ndef read(x):\n    return Reading(value=x)\n"
    write(tmp_path, {"models.py": textwrap.dedent(TYPED) + read,
                     "main.py": """
        from memojar import cached

        @cached
        def f(x):
            import models  # not followed: the result class is checked at the hit
            return models.read(x)
    """})
    assert run(tmp_path)["value"] == "Reading({'value': 3})"
    write(tmp_path, {"models.py": textwrap.dedent(TYPED).replace("value: int", "value: float")
                     + read})
    second = run(tmp_path)
    assert second["misses"] == 1 and second["value"] == "Reading({'value': 3.0})"
    assert second["explain"] == "incompatible: result class models.Reading changed"


PYDANTIC = """
    from pydantic import BaseModel

    class Config(BaseModel):
        threshold: float = 0.5

    class Row(BaseModel):
        value: int
"""


@pytest.mark.parametrize("edit", [("threshold: float = 0.5", "threshold: float = 0.7"),
                                  ("value: int", "value: float")],
                         ids=["default", "type"])
def test_a_pydantic_field_edited_recomputes(tmp_path: Path, edit: tuple[str, str]) -> None:
    # A field's default lives in no method and no class attribute of a pydantic model:
    # only in the fields pydantic records (before: ``x > Config().threshold`` kept the old
    # default's answer, and a Row of the old field type was loaded).
    pytest.importorskip("pydantic")
    write(tmp_path, {"models.py": PYDANTIC, "main.py": """
        from memojar import cached
        from models import Config, Row

        @cached
        def f(x):
            return x / 10 > Config().threshold, Row(value=x)
        args = (6,)
    """})
    assert run(tmp_path)["value"] == "(True, Row(value=6))"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"models.py": PYDANTIC.replace(*edit)})
    second = run(tmp_path)
    assert second["misses"] == 1
    assert second["value"] == {"default": "(False, Row(value=6))",
                               "type": "(True, Row(value=6.0))"}[
        "default" if edit[0].startswith("threshold") else "type"]
    assert second["explain"] == ("incompatible: class models.Config changed"
                                 if edit[0].startswith("threshold") else
                                 "incompatible: class models.Row changed")
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


@pytest.mark.parametrize("edit", [("__tablename__ = 'users'", "__tablename__ = 'accounts'"),
                                  ("_limit_ = 2", "_limit_ = 5")])
def test_a_class_attribute_of_a_dunder_or_sunder_name_edited_recomputes(
        tmp_path: Path, edit: tuple[str, str]) -> None:
    # A class attribute named as Python names its own (SQLAlchemy's ``__tablename__``)
    # was left out with Python's: an edit of it alone returned the old value, read by the
    # function, by a method, or by a helper given the class (before: "users" after
    # "accounts", 2 rows after 5).
    models = """
        class User:
            __tablename__ = 'users'
            _limit_ = 2

            def limit(self):
                return self._limit_
    """
    write(tmp_path, {"models.py": models, "main.py": """
        from memojar import cached
        from models import User

        def table(model):
            return model.__tablename__

        @cached
        def f(x):
            return x, table(User), User().limit()
    """})
    assert run(tmp_path)["value"] == "(3, 'users', 2)"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"models.py": models.replace(*edit)})
    second = run(tmp_path)
    assert second["misses"] == 1
    assert second["value"] == ("(3, 'accounts', 2)" if "tablename" in edit[0] else
                               "(3, 'users', 5)")
    assert second["explain"] == f"incompatible: constant models.User.{edit[0].split()[0]} changed"
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


DISPATCH = """
    import functools

    class Convert:
        @functools.singledispatchmethod
        def conv(self, x):
            return "other"

        @conv.register
        def _(self, x: int):
            return "int 1"

        @conv.register
        def _(self, x: str):
            return "str"

    class Parse:
        @functools.singledispatchmethod
        @classmethod
        def parse(cls, x):
            return "other"

        @parse.register
        @classmethod
        def _(cls, x: int):
            return "int 2"

        @parse.register
        @classmethod
        def _(cls, x: str):
            return "str"
"""


@pytest.mark.parametrize("edit", [("models.py", "int 1", "int 10"),
                                  ("models.py", "int 2", "int 20"),
                                  ("regs.py", "float 3", "float 30")])
def test_a_singledispatchmethod_implementation_no_name_holds_edited_recomputes(
        tmp_path: Path, edit: tuple[str, str, str]) -> None:
    # A ``singledispatchmethod``'s class counted the generic function it holds, and its
    # implementations only where a name of the class held them: the ``int`` one of two
    # ``def _`` (the second takes the name, as Python's docs write them), those of a
    # generic ``classmethod``, one registered outside the class. An edit of one of those
    # returned the old value.
    regs = """
        from models import Convert

        @Convert.conv.register
        def _(self, x: float):
            return "float 3"
    """
    write(tmp_path, {"models.py": DISPATCH, "regs.py": regs, "main.py": """
        from memojar import cached
        from models import Convert, Parse
        import regs

        @cached
        def f(x):
            return Convert().conv(x), Parse.parse(x), Convert().conv(float(x))
    """})
    assert run(tmp_path)["value"] == "('int 1', 'int 2', 'float 3')"
    assert run(tmp_path)["misses"] == 0
    name, old, new = edit
    write(tmp_path, {name: (DISPATCH if name == "models.py" else regs).replace(old, new)})
    second = run(tmp_path)
    assert second["misses"] == 1
    assert second["value"] == "('int 1', 'int 2', 'float 3')".replace(old, new)
    assert second["explain"].startswith("incompatible: helper ")
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


DISPATCHED = {"formats.py": """
    import functools

    import tools

    K = 2

    @functools.singledispatch
    def fmt(x):
        return "other"

    @fmt.register
    def _(x: int):
        return x * K

    @fmt.register(float)
    def _(x):
        return tools.half(x)
""", "tools.py": """
    def half(x):
        return x / 2
""", "extra.py": """
    import formats

    SUFFIX = "!"

    @formats.fmt.register
    def _(x: str):
        return x + SUFFIX
"""}


@pytest.mark.parametrize("edit", [("formats.py", "K = 2", "K = 3", "(9, 1.5, 'a!')"),
                                  ("tools.py", "x / 2", "x / 4", "(6, 0.75, 'a!')"),
                                  ("extra.py", 'SUFFIX = "!"', 'SUFFIX = "?"',
                                   "(6, 1.5, 'a?')")])
def test_what_a_singledispatch_registration_calls_edited_recomputes(
        tmp_path: Path, edit: tuple[str, str, str, str]) -> None:
    # The functions a ``functools.singledispatch`` function registers are in its closure
    # (its registry), followed as helpers: what they read and call counts, a constant of
    # theirs, a helper of another module, one registered in another module. (The README
    # said what they call was not followed.)
    write(tmp_path, {**DISPATCHED, "main.py": """
        from memojar import cached
        import extra
        from formats import fmt

        @cached
        def f(x):
            return fmt(x), fmt(3.0), fmt("a")
    """})
    assert run(tmp_path)["value"] == "(6, 1.5, 'a!')"
    assert run(tmp_path)["misses"] == 0
    name, before, after, value = edit
    write(tmp_path, {name: DISPATCHED[name].replace(before, after)})
    second = run(tmp_path)
    assert (second["misses"], second["value"]) == (1, value)
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


@pytest.mark.parametrize("kind", ["classmethod", "staticmethod"])
def test_a_partialmethod_of_a_classmethod_or_staticmethod_edited_recomputes(
        tmp_path: Path, kind: str) -> None:
    # A ``partialmethod`` (or ``singledispatchmethod``) holding a ``classmethod`` or
    # ``staticmethod`` counted neither its function nor its arguments (the class's
    # fingerprint took only a function it holds, the walk found nothing to pickle): an
    # edit of ``k=2`` returned the old value.
    args = "cls, x, k" if kind == "classmethod" else "x, k"
    models = f"""
        import functools

        class Scaler:
            @{kind}
            def _scale({args}):
                return x * k

            scale = functools.partialmethod(_scale, k=2)
    """
    write(tmp_path, {"models.py": models, "main.py": """
        from memojar import cached
        from models import Scaler

        @cached
        def f(x):
            return Scaler().scale(x)
    """})
    assert run(tmp_path)["value"] == "6"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"models.py": models.replace("k=2", "k=3")})
    second = run(tmp_path)
    assert (second["misses"], second["value"]) == (1, "9")
    assert second["explain"] == "incompatible: class models.Scaler changed"
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


@pytest.mark.parametrize("edit", [('attrgetter("_x")', 'attrgetter("_y")'),
                                  ("itemgetter(0)", "itemgetter(1)"),
                                  ("k=2", "k=5"), ("K = 1", "K = 5")])
def test_a_property_of_no_plain_function_edited_recomputes(
        tmp_path: Path, edit: tuple[str, str]) -> None:
    # A property's accessors counted only where they were plain functions: an edit of
    # ``property(attrgetter("_x"))``, ``property(itemgetter(0))`` or of a partial's
    # argument, or of what the partial's function reads, returned the old value.
    models = """
        import functools
        import operator

        K = 1

        def get(self, k):
            return k * K

        class Row(tuple):
            first = property(operator.itemgetter(0))

        class Point:
            def __init__(self):
                self._x, self._y = 2, 5

            x = property(operator.attrgetter("_x"))
            scale = property(functools.partial(get, k=2))
    """
    write(tmp_path, {"models.py": models, "main.py": """
        from memojar import cached
        from models import Point, Row

        @cached
        def f(x):
            return x, Point().x, Row((2, 5)).first, Point().scale
    """})
    assert run(tmp_path)["value"] == "(3, 2, 2, 2)"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"models.py": models.replace(*edit)})
    second = run(tmp_path)
    assert second["misses"] == 1
    assert second["value"] == {"_x": "(3, 5, 2, 2)", "itemgetter(0)": "(3, 2, 5, 2)",
                               "k=2": "(3, 2, 2, 5)", "K = 1": "(3, 2, 2, 10)"}[
        next(key for key in ("_x", "itemgetter(0)", "k=2", "K = 1") if key in edit[0])]
    assert second["explain"] == ("incompatible: constant models.K changed" if edit[0] == "K = 1"
                                 else "incompatible: class models."
                                 f"{'Row' if 'item' in edit[0] else 'Point'} changed")
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


BUILTIN_DUNDERS = """
    import enum
    import operator

    class Loud(str):
        __str__ = str.upper

    class AttrDict(dict):
        __getattr__ = dict.get

    class Num(int):
        __add__ = int.__sub__

    class Box:
        __call__ = operator.neg

    class Color(str, enum.Enum):
        __str__ = str.__str__
        RED = "red"
"""


@pytest.mark.parametrize("edit", [
    ("Loud", "__str__ = str.upper", "__str__ = str.title", "('AbAbAb', 1, 3, -2, 'red')"),
    ("AttrDict", "__getattr__ = dict.get", "__getattr__ = dict.setdefault",
     "('ABABAB', 2, 3, -2, 'red')"),
    ("Num", "__add__ = int.__sub__", "__add__ = int.__mul__", "('ABABAB', 1, 10, -2, 'red')"),
    ("Box", "__call__ = operator.neg", "__call__ = operator.invert",
     "('ABABAB', 1, 3, -3, 'red')"),
    ("Color", "__str__ = str.__str__", "__str__ = str.upper", "('ABABAB', 1, 3, -2, 'RED')")])
def test_a_dunder_bound_to_a_builtin_edited_recomputes(
        tmp_path: Path, edit: tuple[str, str, str, str]) -> None:
    # A class attribute of a dunder name bound to a built-in (a function or method of C)
    # counted neither in its class's fingerprint (no function of Python's) nor as a row
    # (no plain value): an edit of ``__str__ = str.upper`` to ``str.title``, of the
    # AttrDict idiom's ``dict.get``, returned the old value.
    owner, before, after, value = edit
    write(tmp_path, {"models.py": BUILTIN_DUNDERS, "main.py": """
        from memojar import cached
        from models import AttrDict, Box, Color, Loud, Num

        @cached
        def f(x):
            d = AttrDict(a=1)
            d.zz
            return str(Loud("ab")) * x, len(d), Num(5) + 2, Box()(2), str(Color.RED)
    """})
    assert run(tmp_path)["value"] == "('ABABAB', 1, 3, -2, 'red')"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"models.py": BUILTIN_DUNDERS.replace(before, after)})
    second = run(tmp_path)
    assert (second["misses"], second["value"]) == (1, value)
    name = before.split()[0]
    assert second["explain"] == f"incompatible: constant models.{owner}.{name} changed"
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


def test_a_frozen_attrs_class_hits_under_every_hash_seed(tmp_path: Path) -> None:
    # attrs writes into the ``__hash__`` it generates a number hashed from a string, which
    # differs with PYTHONHASHSEED: a function reaching the class had another identity in
    # each new process, and missed ("incompatible: class models.P changed").
    pytest.importorskip("attrs")
    models = """
        import attrs

        @attrs.frozen
        class P:
            x: int = 1
    """
    write(tmp_path, {"models.py": models, "main.py": """
        from memojar import cached
        from models import P

        @cached
        def f(x):
            return x, P().x
    """})
    assert run(tmp_path, "1")["value"] == "(3, 1)"
    assert [run(tmp_path, seed)["misses"] for seed in ("2", "42")] == [0, 0]
    write(tmp_path, {"models.py": models.replace("x: int = 1", "x: int = 2")})
    assert run(tmp_path, "3")["value"] == "(3, 2)"  # its fields still count


def test_a_cloudpickle_copy_reaching_a_frozen_attrs_class_hits_under_every_hash_seed(
        tmp_path: Path) -> None:
    # cloudpickle copies code by value with ``<dynamic-code>`` for its file name, attrs'
    # ``<attrs generated ...>`` too: copies sent by processes of other seeds (a scheduler
    # and its workers, each started afresh) had each another identity, and missed.
    pytest.importorskip("attrs")
    pytest.importorskip("cloudpickle")
    write(tmp_path, {"models.py": """
        import attrs

        @attrs.frozen
        class P:
            x: int = 1
    """, "main.py": """
        from memojar import cached
        from models import P

        @cached
        def f(x):
            return x, P().x
    """, "send.py": """
        import sys, cloudpickle, main, models
        cloudpickle.register_pickle_by_value(main)
        cloudpickle.register_pickle_by_value(models)
        sys.stdout.buffer.write(cloudpickle.dumps(main.f))
    """, "receive.py": """
        import json, pickle, sys
        copy = pickle.loads(sys.stdin.buffer.read())
        value = copy(3)
        print(json.dumps({"value": repr(value), "misses": copy.cache_info().misses}))
    """})

    def sent_and_called(seed: str) -> dict:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join((SRC, str(tmp_path))),
               "MEMOJAR_DIR": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
        sent = subprocess.run([sys.executable, "send.py"], cwd=tmp_path, capture_output=True,
                              env={**env, "PYTHONHASHSEED": seed}, timeout=60, check=True)
        called = subprocess.run([sys.executable, "receive.py"], cwd=tmp_path, text=False,
                                input=sent.stdout, capture_output=True, timeout=60,
                                env={**env, "PYTHONHASHSEED": "0"})
        assert called.returncode == 0, called.stderr.decode()
        return json.loads(called.stdout.decode().strip().splitlines()[-1])

    assert sent_and_called("1") == {"value": "(3, 1)", "misses": 1}
    assert [sent_and_called(seed)["misses"] for seed in ("2", "42")] == [0, 0]


def test_a_builtin_a_library_sets_on_a_class_is_no_row() -> None:
    # Enum (3.11 and later: an IntEnum's, a StrEnum's, a ReprEnum's ``__format__`` and
    # ``__str__``), attrs (``__setattr__`` on a subclass of a class with its own) and
    # typing (``__init__`` on a Protocol's subclass, at its first instance) set dunders to
    # built-ins on the user's classes: rows of those would have recomputed every function
    # reaching such a class once after the upgrade, and the Protocol's differed between a
    # process that had made an instance before the first call and one that had not.
    attrs = pytest.importorskip("attrs")
    import enum

    @attrs.define(on_setattr=attrs.setters.validate)
    class Checked:
        x: int = attrs.field(default=1, validator=attrs.validators.instance_of(int))

    @attrs.define(on_setattr=attrs.setters.NO_OP)
    class Sub(Checked):
        y: int = 2

    @typing.runtime_checkable
    class Goes(typing.Protocol):
        def go(self) -> int: ...

    class Goer(Goes):
        def go(self) -> int:
            return 1

    Goer()
    classes: list[type] = [Sub, Goer]
    if sys.version_info >= (3, 11):
        classes += [enum.IntEnum("Level", "LOW HIGH"), enum.IntFlag("Perm", "R W"),
                    enum.StrEnum("Mode", "ON OFF"),
                    enum.ReprEnum("Ratio", {"HALF": 0.5}, type=float)]
    from memojar._identity import dependencies

    for cls in classes:
        assert [name for name, member in vars(cls).items() if name.startswith("__") and (
            isinstance(member, (types.BuiltinFunctionType, types.MethodDescriptorType,
                                types.WrapperDescriptorType)))], cls

        def f(x, cls=cls):
            return cls, x

        rows = [row for row in dependencies(f) if row[1].startswith(
            f"{cls.__module__}.{cls.__qualname__}.__")]
        assert not rows, (cls, rows)


_T = TypeVar("_T")


class _Base(Generic[_T]):
    pass


class _Repo(_Base[int]):  # ``__parameters__ = ()`` in its own namespace
    LIMIT = 3


@typing.final
class _Sealed:  # ``__final__ = True`` (3.11 and later)
    pass


def test_typings_own_names_of_a_class_are_no_rows() -> None:
    # A class attribute of a dunder name is a row when it is the user's (above), never
    # when ``typing`` wrote it: a row of those would have made every function reaching
    # such a class compute again once after the upgrade, for nothing.
    from memojar._identity import dependencies

    def f(x):
        return _Repo.LIMIT, _Sealed, x

    names = [row[1] for row in dependencies(f)]
    assert f"{__name__}._Repo.LIMIT" in names
    assert not [name for name in names if name.rpartition(".")[2].startswith("__")], names


def test_a_pydantic_model_with_a_set_default_hits_under_every_hash_seed(
        tmp_path: Path) -> None:
    # Its declared fields are fingerprinted by value, a set sorted: by their repr, the
    # set's order followed PYTHONHASHSEED and each process missed.
    pytest.importorskip("pydantic")
    write(tmp_path, {"models.py": """
        from pydantic import BaseModel

        class Config(BaseModel):
            tags: set = {"alpha", "beta", "gamma", "delta", "epsilon"}
    """, "main.py": """
        from memojar import cached
        from models import Config

        @cached
        def f(x):
            return x in Config().tags
    """})
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "2", "3", "4")] == [1, 0, 0, 0]


def test_a_result_class_not_named_in_the_code_is_checked_too(tmp_path: Path) -> None:
    make = "\ndef make(x):\n    return Point(x)\n"
    write(tmp_path, {"models.py": textwrap.dedent(MODELS) + make,
                     "other.py": "import models\n\ndef build(x):\n    return models.make(x)\n",
                     "main.py": """
        from memojar import cached

        @cached
        def f(x):
            import other
            return other.build(x)
    """})
    assert run(tmp_path)["misses"] == 1
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"models.py": textwrap.dedent(MODELS).replace("abs(self.x)", "-self.x")
                     + make})
    second = run(tmp_path)
    assert second["misses"] == 1
    assert second["explain"] == "incompatible: result class models.Point changed"


REBUILT = """
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __reduce__(self):
            return (rebuild, (self.x, self.y))

        def __repr__(self):
            return f"Point({self.x}, {self.y})"

    def rebuild(x, y):
        return Point(x, y)
"""


# The rebuilder as it is, or under ``functools.lru_cache`` (interning the instances it
# makes): then the pickle names the wrapper, a library's object, whose function runs when
# the entry loads (before, it was no row of the result classes).
_UNDER_LRU_CACHE = ("    import functools\n\n"
                    "    @functools.lru_cache(maxsize=None)\n"
                    "    def rebuild(")


@pytest.mark.parametrize("rebuilder", ["plain", "under functools.lru_cache"])
def test_a_result_rebuilt_by_a_function_of_the_users_code_is_checked_too(
        tmp_path: Path, rebuilder: str) -> None:
    # A class whose ``__reduce__`` names a module function to rebuild it: loading runs that
    # function's code, which is no method of the class. Before, an edit of it alone kept the
    # class's fingerprint, and the hit returned what the new function made of the old
    # entry (Point(3, 20)) where a computation gives Point(3, 2).
    models = (REBUILT if rebuilder == "plain"
              else REBUILT.replace("    def rebuild(", _UNDER_LRU_CACHE))
    _an_edit_of_what_rebuilds_the_result_is_seen(
        tmp_path, models, models.replace("return Point(x, y)", "return Point(x, y * 10)"),
        "incompatible: result function models.rebuild changed")


def _an_edit_of_what_rebuilds_the_result_is_seen(
        tmp_path: Path, models: str, edited: str, explained: str) -> None:
    """``f(3)`` returns ``models.Point(3, 2)``, rebuilt by code of ``models`` when its
    entry loads: stored, hit in a new process, then, ``models`` edited (``edited``: the
    rebuilder makes ``Point(3, 20)``), computed again, said so (``explained``)."""
    write(tmp_path, {"models.py": models, "main.py": """
        from memojar import cached

        @cached
        def f(x):
            import models  # not followed: what the result holds is checked at the hit
            return models.Point(x, 2)
    """})
    assert run(tmp_path)["value"] == "Point(3, 2)"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"models.py": edited})
    second = run(tmp_path)
    assert second["misses"] == 1 and second["value"] == "Point(3, 2)"
    assert second["explain"] == explained
    assert run(tmp_path)["misses"] == 0


def test_a_result_class_whose_functools_cache_method_is_edited_is_checked(
        tmp_path: Path) -> None:
    # A method under ``functools.lru_cache`` (here a classmethod rebuilding the instances,
    # interning them) is the class's code too. Before, the class's fingerprint left it out:
    # after an edit of it alone the hit returned what the new code made of the old entry,
    # Point(3, 20), where the call computes Point(3, 2).
    models = """
        import functools

        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y

            @classmethod
            @functools.lru_cache(maxsize=None)
            def rebuild(cls, x, y):
                return cls(x, y)

            def __reduce__(self):
                return (Point.rebuild, (self.x, self.y))

            def __repr__(self):
                return f"Point({self.x}, {self.y})"
    """
    _an_edit_of_what_rebuilds_the_result_is_seen(
        tmp_path, models, models.replace("return cls(x, y)", "return cls(x, y * 10)"),
        "incompatible: result class models.Point changed")


def test_a_result_holding_a_compiled_library_function_hits_in_a_new_process(
        tmp_path: Path) -> None:
    # A pandas frame pickles with a Cython function (its blocks' rebuilder), whose type
    # lives in Cython's shared module ``_cython_3_X_Y``: no ``__file__``, so taken for the
    # user's. Its row in the entry's result classes could not be looked up in a process
    # that had not imported pandas yet (the function imports it), so every new process
    # missed and computed again.
    write(tmp_path, {"main.py": """
        from memojar import cached

        @cached
        def f(x):
            import pandas as pd
            return pd.DataFrame({"a": [x, 2]})
    """})
    assert run(tmp_path)["misses"] == 1
    second = run(tmp_path)
    assert second["explain"].startswith("hit:") and second["misses"] == 0


def test_explain_says_an_entry_that_no_longer_loads_is_a_miss(tmp_path: Path) -> None:
    # A library's class moved to another module by an upgrade (its pickle path changed, its
    # public name did not): the entry passes every check but no longer unpickles, so the
    # call computes. Before, explain said "hit" of it.
    site = tmp_path / "site-packages"  # a library's folder: its code is not tracked
    write(site, {"fakelib/__init__.py": "from fakelib.core import Thing\n",
                 "fakelib/core.py": "class Thing:\n    def __init__(self, v):\n"
                                    "        self.v = v\n"})
    write(tmp_path, {"main.py": """
        from memojar import cached

        @cached
        def f(x):
            import fakelib
            return fakelib.Thing(x)
    """})
    assert run(tmp_path, extra_path=str(site))["misses"] == 1
    (site / "fakelib" / "core.py").rename(site / "fakelib" / "impl.py")
    write(site, {"fakelib/__init__.py": "from fakelib.impl import Thing\n"})
    second = run(tmp_path, extra_path=str(site))
    assert second["misses"] == 1
    assert second["explain"].startswith("miss: payload does not load: ModuleNotFoundError")


def test_a_result_without_user_classes_carries_no_class_section(tmp_path: Path) -> None:
    f = Cache(tmp_path).cached(lambda x: {"a": [x, 1.5, "s", (None,)]})
    f(1)
    (entry,) = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".mj", ".pkl")]
    header = _entry.read_header(entry.read_bytes())
    assert header.classes == "" and header.manifest.startswith("code ")


class Box:
    def __init__(self, x):
        self.x = x


def test_a_result_with_user_classes_lists_them_in_the_header(tmp_path: Path) -> None:
    f = Cache(tmp_path).cached(lambda x: {"a": [Box(x)], "b": Box})
    f(1)
    (entry,) = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".mj", ".pkl")]
    header = _entry.read_header(entry.read_bytes())
    assert header.classes.startswith(f"class {Box.__module__}.Box ")
    assert f(1)["a"][0].x == 1 and f.cache_info().hits == 1


# --- cache_explain in one process -------------------------------------------------------

def test_explain_says_stale_since_when(tmp_path: Path) -> None:
    f = Cache(tmp_path).cached(ttl=0.05)(lambda x: x)
    f(1)
    time.sleep(0.1)
    assert f.cache_explain(1).startswith("stale: expired 20")


_LOAD_FAILS: list[bool] = []


class LoadsInTwoLines:
    def __init__(self, x):
        self.x = x

    def __setstate__(self, state):
        if _LOAD_FAILS:
            raise ValueError("the first line\nthe second line")
        self.__dict__.update(state)


def test_explain_is_one_line_of_an_entry_whose_load_error_has_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: "miss: payload does not load: ValueError: the first line\nthe second line",
    # two lines of a method promised to answer in one.
    f = Cache(tmp_path).cached(lambda x: LoadsInTwoLines(x))
    f(1)
    monkeypatch.setattr(sys.modules[__name__], "_LOAD_FAILS", [True])
    line = f.cache_explain(1)
    assert len(line.splitlines()) == 1, line
    assert line == r"miss: payload does not load: ValueError: the first line\nthe second line"


def test_explain_says_a_stale_entry_that_fails_its_checks_is_not_served(
        tmp_path: Path) -> None:
    # stale_while_revalidate serves a stale entry only if it passes every other check:
    # before, explain said "returned at once" of an expired entry whose checksum fails,
    # and the call computed.
    calls = []
    f = Cache(tmp_path).cached(ttl=0.05, stale_while_revalidate=60)(
        lambda x: calls.append(x) or x)
    f(1)
    (entry,) = [p for p in tmp_path.rglob("*.pkl") if p.is_file()]
    damaged = bytearray(entry.read_bytes())
    damaged[-3] ^= 0xFF
    entry.write_bytes(damaged)
    time.sleep(0.1)
    explained = f.cache_explain(1)
    assert f(1) == 1 and len(calls) == 2  # computed, not served
    assert "returned at once" not in explained and "checksum" in explained


def test_explain_says_a_stale_entry_that_does_not_load_is_not_served(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, "returned at once ... recomputed in the background" of an expired entry
    within ``stale_while_revalidate`` that no longer unpickles, which the call computed
    in the foreground."""
    calls = []
    f = Cache(tmp_path).cached(ttl=0.05, stale_while_revalidate=60)(
        lambda x: calls.append(x) or LoadsInTwoLines(x))
    f(1)
    time.sleep(0.1)
    monkeypatch.setattr(sys.modules[__name__], "_LOAD_FAILS", [True])
    explained = f.cache_explain(1)
    assert explained.startswith("miss: payload does not load: ValueError"), explained
    assert f(1).x == 1 and calls == [1, 1]  # computed, not served


@pytest.mark.parametrize("change", ["damaged", "removed"])
def test_explain_says_a_value_the_memory_tier_holds_is_a_hit(tmp_path: Path,
                                                             change: str) -> None:
    """Before, the entry on disk's state ("damaged", "no entry"), where the call returned
    the value the memory tier holds."""
    calls = []
    f = Cache(tmp_path).cached(memory=4)(lambda x: calls.append(x) or x * 2)
    f(1)
    (entry,) = [p for p in tmp_path.rglob("*.pkl") if p.is_file()]
    if change == "damaged":
        data = bytearray(entry.read_bytes())
        data[-3] ^= 0xFF
        entry.write_bytes(data)
    else:
        entry.unlink()
    assert f.cache_explain(1).startswith("hit: held in memory (memory=)")
    assert f(1) == 2 and calls == [1]


def test_explain_says_a_value_held_in_memory_for_an_old_keyword_default_is_no_hit(
        tmp_path: Path) -> None:
    """A keyword default changed in place, ``f.__kwdefaults__["scale"] = 7``: the call
    computes with the new default. Before, ``cache_explain`` said "hit: held in memory" of
    the value the tier held for the old one."""
    calls = []

    def kw(x, *, scale=1):
        calls.append(x)
        return x * scale

    f = Cache(tmp_path).cached(memory=4)(kw)
    assert f(3) == f(3) == 3 and calls == [3]
    assert f.cache_explain(3).startswith("hit: held in memory (memory=)")
    kw.__kwdefaults__["scale"] = 7
    explained = f.cache_explain(3)
    assert explained == "miss: no entry for these arguments", explained
    assert f(3) == 21 and calls == [3, 3]
    assert f.cache_explain(3).startswith("hit: held in memory (memory=)")


def test_explain_says_hit_of_an_entry_whose_times_no_clock_gives(tmp_path: Path) -> None:
    """An entry of this user's made by hand with a creation time of NaN, which the call
    hits (no check of a hit reads it): before, ``cache_explain`` raised ``Miss``."""
    f = Cache(tmp_path).cached(lambda x: x * 2)
    f(1)
    (entry,) = [p for p in tmp_path.rglob("*.pkl") if p.is_file()]
    data = bytearray(entry.read_bytes())
    struct.pack_into("<d", data, _entry._SUMMED_AT, float("nan"))  # its creation time
    struct.pack_into("<Q", data, _entry.CHECKSUM_AT,
                     xxhash.xxh3_64_intdigest(bytes(data[_entry._SUMMED_AT:])))
    entry.write_bytes(data)
    assert f(1) == 2 and f.cache_info().hits == 1
    assert f.cache_explain(1) == "hit"


@pytest.mark.parametrize("where", ["key", "function name", "python", "expiry", "payload"])
def test_explain_says_an_entry_with_a_flipped_byte_is_damaged(tmp_path: Path,
                                                              where: str) -> None:
    # Every byte after the checksum is covered by it, but explain judged the header's
    # fields first: a flipped byte of the key said "holds another key", of the ident "the
    # code changed" or "written by Python 2.11", of the expiry "stale: expired 1970".
    def g(x):
        return "a result" * 10

    f = Cache(tmp_path).cached(g)
    f(1)
    (entry,) = [p for p in tmp_path.rglob("*.pkl") if p.is_file()]
    data = bytearray(entry.read_bytes())
    at = {"key": data.index(f.cache_key(1).encode()) + 5,
          "function name": data.index(f.__memojar__.name.encode()) + 2,
          "python": data.index(f"\0{_entry.PYTHON}\0".encode()) + 1,
          "expiry": _entry.COMPUTE_TIME_AT - 1,
          "payload": len(data) - 5}[where]
    data[at] ^= 0x01
    entry.write_bytes(data)
    assert f.cache_explain(1) == "miss: the entry is damaged (checksum mismatch)"


@pytest.mark.parametrize("how", ["all", "this function", "MEMOJAR_DISABLE"])
def test_explain_says_a_disabled_function_computes(tmp_path: Path, monkeypatch,
                                                   how: str) -> None:
    import memojar

    calls = []

    def g(x):
        calls.append(x)
        return x

    Cache(tmp_path).cached(g)(1)  # an entry the call would hit were memojar on
    if how == "MEMOJAR_DISABLE":
        monkeypatch.setenv("MEMOJAR_DISABLE", "1")
    f = Cache(tmp_path).cached(g)
    off = (memojar.disabled() if how == "all" else memojar.disabled(f)
           if how == "this function" else contextlib.nullcontext())
    with off:
        explained = f.cache_explain(1)
        assert f(1) == 1 and len(calls) == 2  # computed, not read
    assert explained.startswith("miss: ") and "disabled" in explained.lower()


def test_explain_names_a_version_change(tmp_path: Path) -> None:
    def g(x):
        return x

    Cache(tmp_path).cached(version=1)(g)(1)
    g2 = Cache(tmp_path).cached(version=2)(g)
    assert g2.cache_explain(1) == "incompatible: the version changed (1 -> 2)"
    assert g2.cache_explain(2) == "miss: no entry for these arguments"


def test_explain_names_another_pythons_entry(tmp_path: Path) -> None:
    f = Cache(tmp_path).cached(lambda x: x)
    memo = f.__memojar__
    f(0)  # resolves the ident
    other = "3.99"
    ident = memo.ident.replace(f"\0{_entry.PYTHON}\0".encode(), f"\0{other}\0".encode())
    from memojar._keys import make_key

    key = make_key(memo.binder(1), _entry.key_seed(memo.scope, other))
    chunks = _entry.encode(1, ident=ident, key=key, created=time.time(), expires=None,
                           compute_time=0.0)
    memo.store.write(memo.name, key, chunks, None)
    assert f.cache_explain(1) == (
        f"miss: no entry for this Python ({_entry.PYTHON}); Python {other} stored one "
        "(each Python version keeps its own)")


HELPER_FACTOR = 2


def _helper(x):
    return x * HELPER_FACTOR


def test_ls_function_says_what_changed_for_each_superseded_entry(tmp_path: Path, capsys,
                                                                 monkeypatch) -> None:
    from memojar import _cli

    def f(x):
        return _helper(x)

    cache = Cache(tmp_path / "cache")
    old = cache.cached(f)
    old(1)
    monkeypatch.setitem(globals(), "HELPER_FACTOR", 3)  # a constant edited, a new process
    from memojar import _identity

    _identity._deps_of.clear()
    new = cache.cached(f)
    new.__memojar__.swept = True  # a process still running the old code stored meanwhile
    time.sleep(0.01)
    new(2)
    name = new.__memojar__.name
    assert _cli.main(["--dir", str(tmp_path / "cache"), "ls", name, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    by_key = {e["key"]: e for e in listed}
    assert by_key[new.cache_key(1)]["reason"] == (
        f"constant {__name__}.HELPER_FACTOR changed")
    assert by_key[new.cache_key(2)]["reason"] == ""
    assert new.cache_explain(1) == f"incompatible: constant {__name__}.HELPER_FACTOR changed"


class _Hostile:
    @property
    def __class__(self):  # isinstance() asks for it: the walk meets an error
        raise RuntimeError("no class for you")


HOSTILE = _Hostile()


def test_a_dependency_that_cannot_be_followed_costs_a_warning_not_the_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memojar import _identity

    def broken(*args: object) -> None:
        raise RuntimeError("a walk that fails")

    monkeypatch.setattr(_identity, "_walk_callable", broken)

    def f(x):
        return x

    g = Cache(tmp_path).cached(f)
    with pytest.warns(UserWarning, match="cannot follow what .*f depends on .*RuntimeError"):
        assert g(1) == 1
    assert g(1) == 1 and g.cache_info().hits == 1


def test_a_captured_value_that_raises_when_looked_at_counts_by_its_type(tmp_path: Path
                                                                        ) -> None:
    hostile = HOSTILE  # a context proxy a closure captured: the call raised it

    def f(x):
        return x if hostile else 0

    _computes_quietly_then_hits(Cache(tmp_path).cached(f))


def test_a_global_that_raises_when_looked_at_counts_by_its_type_without_a_warning(
        tmp_path: Path) -> None:
    def f(x):
        return x if HOSTILE else 0

    _computes_quietly_then_hits(Cache(tmp_path).cached(f))


def _computes_quietly_then_hits(g: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert g(1) == 1
    assert g(1) == 1 and g.cache_info().hits == 1


def test_many_helpers_compress_their_manifest_and_explain_names_the_change(tmp_path: Path
                                                                          ) -> None:
    chain = "".join(f"def h{i}(x):\n    return h{i + 1}(x) + {i}\n\n" for i in range(40))
    chain += "def h40(x):\n    return x\n"
    write(tmp_path, {"many.py": chain, "main.py": """
        from memojar import cached
        import many

        @cached
        def f(x):
            return many.h0(x)
    """})
    first = run(tmp_path)
    assert "\x1ez" in first["ident"]  # compressed
    write(tmp_path, {"many.py": chain.replace("return h17(x) + 16", "return h17(x) - 16")})
    second = run(tmp_path)
    assert second["misses"] == 1
    assert second["explain"] == "incompatible: helper many.h16 changed"


INSTANCE = """
    class Model:
        def predict(self, x):
            return x + 1

    model = Model()
"""


def test_a_global_instance_counts_by_its_class_code_and_state(tmp_path: Path) -> None:
    write(tmp_path, {"models.py": INSTANCE, "main.py": """
        from memojar import cached
        from models import model

        @cached
        def f(x):
            return model.predict(x)
    """})
    assert run(tmp_path)["value"] == "4"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"models.py": INSTANCE.replace("x + 1", "x + 2")})
    second = run(tmp_path)
    assert second["value"] == "5"
    assert "class models.Model changed" in second["explain"]


def test_a_big_table_is_not_a_constant(tmp_path: Path) -> None:
    from memojar._identity import _constant

    assert _constant({"a": [1, 2, (3, "x")], "b": None})
    assert not _constant([[0] * 200] * 200)  # 40,000 items
    assert not _constant([object()])


@functools.cache
def _memoized_helper(x):
    return x * 2


def test_a_helper_behind_lru_cache_is_followed() -> None:
    from memojar._identity import dependencies

    def f(x):
        return _memoized_helper(x)

    names = [row[1] for row in dependencies(f)]
    assert f"{__name__}._memoized_helper" in names


def test_the_identity_is_taken_before_the_first_computation(tmp_path: Path) -> None:
    write(tmp_path, {"main.py": """
        from memojar import cached
        SEEN = []

        @cached
        def f(x):
            SEEN.append(object())  # no longer a plain list once it ran
            return x
    """})
    first = run(tmp_path)
    assert "constant main.SEEN" in first["ident"]
    assert run(tmp_path)["misses"] == 0


def test_a_result_class_redefined_in_the_same_process_is_not_loaded(tmp_path: Path) -> None:
    module = type(sys)("memojar_cell")
    sys.modules["memojar_cell"] = module
    try:
        exec("class Point:\n    def norm(self):\n        return 1\n", module.__dict__)
        f = Cache(tmp_path).cached(lambda x: module.Point())
        assert f(1).norm() == 1 and f(1).norm() == 1 and f.cache_info().hits == 1
        exec("class Point:\n    def norm(self):\n        return 2\n", module.__dict__)
        assert f.cache_explain(1) == "incompatible: result class memojar_cell.Point changed"
        assert f(1).norm() == 2
        assert f.cache_info().misses == 2  # recomputed, not the old pickle in the new class
    finally:
        sys.modules.pop("memojar_cell", None)


# (name, source, the edit, the first Python that has the syntax)
_TYPING_EDITS = [
    ("a TypeVar's bound", """
        from typing import TypeVar
        T = TypeVar("T", bound=int)

        @cached
        def f(x):
            return T.__bound__(x * 1.5)
    """, ("bound=int", "bound=float"), (3, 10)),
    ("a NewType's supertype", """
        from typing import NewType
        UserId = NewType("UserId", int)

        @cached
        def f(x):
            return UserId.__supertype__(x * 1.5)
    """, ('"UserId", int', '"UserId", float'), (3, 10)),
    ("a TypeAliasType in a table", """
        from typing_extensions import TypeAliasType
        TABLE = {"conv": TypeAliasType("Conv", int)}

        @cached
        def f(x):
            return TABLE["conv"].__value__(x * 1.5)
    """, ("Conv\", int", "Conv\", float"), (3, 10)),
    ("a TypeVar passed, bound to a class", """
        from typing import TypeVar

        class A:
            def __init__(self, v):
                self.v = v + 1

        T = TypeVar("T", bound=A)

        @cached
        def f(t, x):
            return t.__bound__(x).v

        args = (T, 3)
    """, ("v + 1", "v + 1.5"), (3, 10)),
    ("a TypeAliasType passed, naming a built-in class with no importable name", """
        import types
        from typing import Callable
        from typing_extensions import TypeAliasType
        Hook = TypeAliasType("Hook", Callable[[types.FrameType], int])

        @cached
        def f(t, x):
            return t.__value__.__args__[-1](x * 1.5)

        args = (Hook, 3)
    """, ("], int]", "], float]"), (3, 10)),
    ("an alias nested five levels deep", """
        from typing import get_args
        from typing_extensions import TypeAliasType
        Conv = TypeAliasType("Conv", int)
        Row = TypeAliasType("Row", dict[str, list[tuple[Conv, ...]]])

        @cached
        def f(x):
            return get_args(get_args(get_args(Row.__value__)[1])[0])[0].__value__(x * 1.5)
    """, ('"Conv", int', '"Conv", float'), (3, 10)),
    ("a type statement", """
        type Conv = int

        @cached
        def f(x):
            return Conv.__value__(x * 1.5)
    """, ("type Conv = int", "type Conv = float"), (3, 12)),
    ("a type statement naming a class", """
        class A:
            def __init__(self, v):
                self.v = v + 1

        type Conv = A

        @cached
        def f(x):
            return Conv.__value__(x).v
    """, ("v + 1", "v + 1.5"), (3, 12)),
    ("a type parameter's bound", """
        @cached
        def f[T: int](x: T) -> T:
            return T.__bound__(x * 1.5)
    """, ("T: int", "T: float"), (3, 12)),
    ("a generic class's type parameter", """
        class Box[T: int]:
            def conv(self, v):
                return T.__bound__(v)

        @cached
        def f(x):
            return Box().conv(x * 1.5)
    """, ("T: int", "T: float"), (3, 12)),
    ("a generic class's type parameters read", """
        class Box[T: int]:
            pass

        @cached
        def f(x):
            return Box.__type_params__[0].__bound__(x * 1.5)
    """, ("T: int", "T: float"), (3, 12)),
    ("a type parameter's default", """
        @cached
        def f[T = int](x):
            return T.__default__(x * 1.5)
    """, ("T = int", "T = float"), (3, 13)),
]


@pytest.mark.parametrize(("source", "edit", "since"), [case[1:] for case in _TYPING_EDITS],
                         ids=[case[0] for case in _TYPING_EDITS])
def test_a_type_alias_or_type_variable_edited_recomputes(
    tmp_path: Path, source: str, edit: tuple[str, str], since: tuple[int, int]
) -> None:
    """A type alias, a type variable and a ``NewType`` pickle by their name alone, and
    their values (``__value__``, ``__bound__``, ``__default__``: PEP 695's evaluated
    lazily) are evaluated from the source when read: they count by what they stand for,
    and a class an alias names by its code. Before, by their name: ``type Conv = int``
    edited to ``float`` returned ``Conv.__value__(4.5)``'s old value, 4."""
    if sys.version_info < since:
        pytest.skip(f"the syntax is Python {since[0]}.{since[1]}'s")
    main = "from memojar import cached\n" + textwrap.dedent(source)
    write(tmp_path, {"main.py": main})
    first = run(tmp_path)
    assert first["value"] == "4" and run(tmp_path)["misses"] == 0
    write(tmp_path, {"main.py": main.replace(*edit)})
    assert run(tmp_path)["value"] == "4.5"
    write(tmp_path, {"main.py": "# a comment\n\n" + main.replace(*edit)})
    assert run(tmp_path)["misses"] == 0  # what it stands for is the same in each process


@pytest.mark.parametrize("held", ["transform", "Model"])
def test_a_singleton_passed_counts_the_code_its_attributes_hold(
    tmp_path: Path, held: str
) -> None:
    """A singleton pickled by its name, passed as an argument, holding a function or class
    of the user's code: counted by that code and what it calls, as an instance's attribute
    is. Before, its attributes' state digest counted the function's own code alone: an
    edit of the helper it calls returned the old value (read as a global, the walk
    followed it)."""
    write(tmp_path, {"main.py": """
        from memojar import cached
        from helpers import transform, Model

        class Registry:
            def __init__(self, fn):
                self.fn = fn

            def __reduce__(self):
                return "REG"

        REG = Registry(HELD)

        @cached
        def f(r, x):
            return r.fn().go(x) if isinstance(r.fn, type) else r.fn(x)

        args = (REG, 3)
    """.replace("HELD", held), "helpers.py": """
        def helper(x):
            return x + 1

        def transform(x):
            return helper(x)

        class Model:
            def go(self, x):
                return helper(x)
    """})
    assert run(tmp_path)["value"] == "4" and run(tmp_path, seed="7")["misses"] == 0
    helpers = (tmp_path / "helpers.py").read_text()
    write(tmp_path, {"helpers.py": helpers.replace("x + 1", "x + 2")})
    assert run(tmp_path)["value"] == "5"


# The module of the singleton tests after its class ``Registry``: one instance, pickled by
# its name, read as a global or passed (``USE``)
_REGISTRY_CALLED = """
        REG = Registry(2)

        @cached
        def f(r, x):
            return REG.k * x if r is None else r.k * x

        args = (None, 2) if USE == "global" else (REG, 2)
"""


@pytest.mark.parametrize("use", ["global", "argument"])
def test_a_singleton_whose_getstate_leaves_its_lock_out_counts_by_its_settings(
    tmp_path: Path, use: str
) -> None:
    """A singleton pickled by its name whose class's ``__getstate__`` leaves its lock out
    (the README's advice for a global holding one) counts by what that gives. Before, by
    its attributes, the lock among them: by its type, and ``Registry(2)`` edited to
    ``Registry(5)`` returned the old value."""
    main = """
        import threading
        from memojar import cached

        class Registry:
            def __init__(self, k):
                self.k = k
                self.lock = threading.Lock()

            def __reduce__(self):
                return "REG"

            def __getstate__(self):
                return {"k": self.k}

    """ + _REGISTRY_CALLED.replace("USE", repr(use))
    write(tmp_path, {"main.py": main})
    assert run(tmp_path)["value"] == "4" and run(tmp_path, seed="5")["misses"] == 0
    write(tmp_path, {"main.py": main.replace("Registry(2)", "Registry(5)")})
    assert run(tmp_path)["value"] == "10"


@pytest.mark.parametrize("use", ["global", "argument"])
def test_a_singleton_pickled_by_its_name_counts_by_its_attributes(
    tmp_path: Path, use: str
) -> None:
    """An instance of the user's class whose ``__reduce__`` returns its global name (a
    singleton, pickled by reference) counts by its attributes too, read as a global or
    passed as an argument, one that holds itself too; a sentinel with none keeps its key.
    Before, by its name (and its class's code) alone: ``Registry(2)`` edited to
    ``Registry(5)`` returned the old value."""
    main = """
        from memojar import cached

        class Registry:
            def __init__(self, k):
                self.k = k
                self.me = [self]
                self.files = {"a.csv": k}

            def __reduce__(self):
                return "REG"

    """ + _REGISTRY_CALLED.replace("USE", repr(use))
    write(tmp_path, {"main.py": main})
    assert run(tmp_path)["value"] == "4" and run(tmp_path)["misses"] == 0
    write(tmp_path, {"main.py": main.replace("Registry(2)", "Registry(5)")})
    assert run(tmp_path)["value"] == "10"
    # one holding a lock beside its settings: by its type then, never a failed call
    lock = "self.k = k\n                self.lock = __import__('threading').Lock()"
    locked = main.replace("Registry(2)", "Registry(5)").replace("self.k = k", lock)
    write(tmp_path, {"main.py": locked})
    assert run(tmp_path)["value"] == "10" and run(tmp_path)["misses"] == 0


def test_a_class_whose_module_is_missing_leaves_no_cycle() -> None:
    """Its ``ImportError`` was raised again from the frame that kept it: the error's
    traceback held that frame, a cycle only the collector freed (an entry naming a class of
    a module missing here, at every look)."""
    import gc

    from memojar._depends import _find_class

    gc.collect()
    gc.disable()
    try:
        with pytest.raises(ImportError):
            _find_class("no_such_module_here.Model")
        assert gc.collect() == 0
    finally:
        gc.enable()


ABSTRACT = """
    import abc

    class Shape(abc.ABC):
        pass

    class Sub(Shape):
        pass

    class Square:
        pass

    class Circle:
        pass

    Shape.register(Square)
    Sub.register(Circle)
"""


@pytest.mark.parametrize("before, after, value", [
    ("Shape.register(Square)", "", "(5, 2)"),
    ("Sub.register(Circle)", "", "(2, 5)"),
])
def test_a_virtual_subclass_registered_or_removed_recomputes(
        tmp_path: Path, before: str, after: str, value: str) -> None:
    # What an ABC of the user's ``register``s (its virtual subclasses, and those of its
    # subclasses, which ``isinstance`` consults too) is no method nor class attribute:
    # ``Shape.register(Square)`` deleted from the module returned the old value.
    write(tmp_path, {"shapes.py": ABSTRACT, "main.py": """
        from memojar import cached
        from shapes import Circle, Shape, Square

        @cached
        def f(x):
            return tuple(2 if isinstance(k(), Shape) else 5 for k in (Square, Circle))
    """})
    assert run(tmp_path)["value"] == "(2, 2)"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"shapes.py": ABSTRACT.replace(before, after)})
    second = run(tmp_path)
    assert (second["misses"], second["value"]) == (1, value)
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


# Two subclasses of a ``Plugin`` registering by ``key=`` (each registry's source below).
_TWO_PLUGINS = """
        class Double(Plugin, key="a"):
            def run(self, x):
                return x * 2

        class Triple(Plugin, key="b"):
            def run(self, x):
                return x * 3
"""
REGISTRIES = {
    "__init_subclass__": """
        class Plugin:
            registry = {}

            def __init_subclass__(cls, key, **kwargs):
                super().__init_subclass__(**kwargs)
                Plugin.registry[key] = cls
    """ + _TWO_PLUGINS + """
        def get(key):
            return Plugin.registry[key]
    """,
    "metaclass": """
        REGISTRY = {}

        class Registering(type):
            def __new__(mcls, name, bases, namespace, key=None):
                cls = super().__new__(mcls, name, bases, namespace)
                if key is not None:
                    REGISTRY[key] = cls
                return cls

        class Plugin(metaclass=Registering):
            pass
    """ + _TWO_PLUGINS + """
        def get(key):
            return REGISTRY[key]
    """,
}


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_a_registry_filled_as_classes_are_made_counts_its_keys(
        tmp_path: Path, kind: str) -> None:
    # A table a class's ``__init_subclass__`` (or its metaclass's ``__new__``) fills, as
    # each subclass is made, was taken for an accumulator of the function reaching the
    # class (counted by type, the classes it holds by their code): the keys swapped in the
    # module, ``get("a")`` returned the old class's value.
    source = REGISTRIES[kind]
    write(tmp_path, {"plugins.py": source, "main.py": """
        from memojar import cached
        from plugins import Plugin, get

        @cached
        def f(x):
            return get("a")().run(x)
    """})
    assert run(tmp_path)["value"] == "6"
    assert run(tmp_path)["misses"] == 0
    swapped = source.replace('key="a"', 'key="_"').replace('key="b"', 'key="a"')
    write(tmp_path, {"plugins.py": swapped})
    second = run(tmp_path)
    assert (second["misses"], second["value"]) == (1, "9")
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]


@pytest.mark.parametrize("lookup", [
    "sum(kind().run(x) for kind in Plugin.__subclasses__())",
    "Plugin.run_all(x)",
])
def test_a_subclass_found_by_subclasses_edited_recomputes(
        tmp_path: Path, lookup: str) -> None:
    # A plugin class found by ``Plugin.__subclasses__()`` (in the function, or in a method
    # of the class), defined in a module the function names nowhere, was not followed: an
    # edit of its method returned the old value.
    plugin = """
        from base import Plugin

        class Double(Plugin):
            def run(self, x):
                return x * 2
    """
    write(tmp_path, {"base.py": """
        class Plugin:
            @classmethod
            def run_all(cls, x):
                return sum(kind().run(x) for kind in cls.__subclasses__())
    """, "plugin.py": plugin, "main.py": f"""
        from memojar import cached
        from base import Plugin
        import plugin

        @cached
        def f(x):
            return {lookup}
    """})
    assert run(tmp_path)["value"] == "6"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"plugin.py": plugin.replace("x * 2", "x * 5")})
    second = run(tmp_path)
    assert (second["misses"], second["value"]) == (1, "15")
    assert [run(tmp_path, seed)["misses"] for seed in ("1", "42")] == [0, 0]
