"""What a function reaches beyond plain helpers and constants counts too (attack4).

Each case was a stale value before: a project run once, one file edited, then run again in a
new process returned the first run's result. ``run`` and ``write`` are ``test_depends``'s:
real module files, a fresh interpreter per run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_depends import SRC, run, write

HELPER = """
    def inner(x):
        return x * 2

    def scale(x, k=1):
        return inner(x) * k
"""
EDITED_HELPER = HELPER.replace("x * 2", "x * 3")
TRACED = """
    class Trace:
        def __init__(self, func):
            self.func = func

        def __call__(self, *args):
            return self.func(*args)

    @Trace
    def traced(x):
        return scale(x)
"""  # a decorator class holding the function it wraps
_STAMPED = """
    class Stamp(type):
        def __call__(cls, *args):
            made = super().__call__(*args)
            made.k = inner(1)
            return made

    class Made(metaclass=Stamp):
        pass
"""  # a class whose metaclass calls the helper
_SCALING = """
    import functools

    FACTOR = 2

    class Scaling:
        def __init__(self, fn):
            self.fn = fn
            functools.update_wrapper(self, fn)

        def __call__(self, *args):
            return inner(self.fn(*args)) * FACTOR
"""  # a decorator class of functools.update_wrapper, put under @cached (_SCALED)
_SCALED = """
    @cached
    @Scaling
    def f(x):
        return x + 1
"""


def _main(body: str, imports: str = "from helpers import scale") -> str:
    return f"""
    import functools
    from memojar import cached
    {imports}
    {body}
"""


Case = tuple[dict[str, str], dict[str, str], str, str, str]


def _case(body: str, imports: str = "from helpers import scale",
          helpers: str | None = HELPER, *, of: str = "helpers.py",
          edit: tuple[str, str] = ("x * 2", "x * 3"), values: tuple[str, str] = ("6", "9"),
          named: str = "helper helpers.inner changed") -> Case:
    """(project files, the edit, the value before, the value after, what explain names):
    ``main.py`` is ``body`` under ``imports``, ``helpers.py`` is ``helpers`` (None: none);
    the edit replaces ``edit[0]`` by ``edit[1]`` in the file ``of``. By default, the edit of
    the helper ``inner`` that ``scale`` calls (``x * 2`` becomes ``x * 3``)."""
    files = {"main.py": _main(body, imports)}
    if helpers is not None:
        files["helpers.py"] = helpers
    old, new = edit
    assert old in files[of], (of, old)
    return files, {of: files[of].replace(old, new)}, *values, named


CASES = {
    "a partial of a helper stored in a global": _case("""
    double = functools.partial(scale, k=1)

    @cached
    def f(x):
        return double(x)
    """),
    "the argument of a partial stored in a global": _case("""
    double = functools.partial(scale, k=1)

    @cached
    def f(x):
        return double(x)
    """, of="main.py", edit=("k=1", "k=2"), values=("6", "12"),
        named="constant main.double changed"),
    "a helper beside a global nested deeper than the recursion limit": _case("""
    CHAIN = ()
    for _ in range(3000):
        CHAIN = (1, CHAIN)

    @cached
    def f(x):
        return scale(x) if CHAIN else 0
    """),
    "a helper beside a context proxy (flask.current_app) used outside its context": _case("""
    class LocalProxy:  # werkzeug's: every attribute, __class__ too, needs a context
        def __getattribute__(self, name):
            raise RuntimeError("Working outside of application context.")

        def __call__(self):
            return None

    current_app = LocalProxy()

    @cached
    def f(x):
        return scale(x) if x > 0 else current_app()
    """),
    "a table of helpers": _case("""
    OPS = {"scale": scale}

    @cached
    def f(x):
        return OPS["scale"](x)
    """),
    "a bound method stored in a global": _case("""
    go = Scaler().go

    @cached
    def f(x):
        return go(x)
    """, "from helpers import Scaler",
        "class Scaler:\n    def go(self, x):\n        return x * 2\n",
        named="class helpers.Scaler changed"),
    "a callable instance stored in a global": _case("""
    scaler = Scaler()

    @cached
    def f(x):
        return scaler(x)
    """, "from helpers import Scaler",
        "class Scaler:\n    def __call__(self, x):\n        return x * 2\n",
        named="class helpers.Scaler changed"),
    "a helper of a function a decorator class holds": _case("""
    @cached
    def f(x):
        return traced(x)
    """, "from helpers import traced", HELPER + TRACED),
    # Its own code too, not only the function it wraps: before, an instance with
    # ``__wrapped__`` counted as that function alone (as ``lru_cache``'s wrapper does)
    "the __call__ of a decorator class of functools.update_wrapper": _case("""
    @cached
    def f(x):
        return doubled(x)
    """, "from helpers import doubled", HELPER + """
    import functools

    class Doubling:
        def __init__(self, fn):
            self.fn = fn
            functools.update_wrapper(self, fn)

        def __call__(self, *args):
            return self.fn(*args) * 2

    @Doubling
    def doubled(x):
        return x + 1
    """, edit=("self.fn(*args) * 2", "self.fn(*args) * 3"), values=("8", "12"),
        named="class helpers.Doubling changed"),
    # The same class under ``@cached``, the cached function itself: before, ``split`` left it
    # whole and the walk followed the function it wraps alone, not what its class's code
    # reads and calls (its own code was in the fingerprint: an edit of it recomputed)
    "a global the __call__ of a decorator class under @cached reads": _case(
        _SCALED, "from helpers import Scaling", HELPER + _SCALING,
        edit=("FACTOR = 2", "FACTOR = 3"), values=("16", "24"),
        named="constant helpers.FACTOR changed"),
    "a helper the __call__ of a decorator class under @cached calls": _case(
        _SCALED, "from helpers import Scaling", HELPER + _SCALING, values=("16", "24")),
    "the __call__ of a decorator class under @cached": _case(
        _SCALED, "from helpers import Scaling", HELPER + _SCALING,
        edit=("* FACTOR", "* FACTOR + 1"), values=("16", "17"),
        named="class helpers.Scaling changed"),
    "a lambda default calling a helper": _case("""
    @cached
    def f(x, g=lambda v: scale(v)):
        return g(x)
    """),
    # Functions held deeper than a global's first level: their own code was in its state,
    # what they call was not followed (before: an edited inner returned the old value).
    "a helper of a function in a list of tables in a global": _case("""
    PIPE = [{"steps": (scale,)}]

    @cached
    def f(x):
        return PIPE[0]["steps"][0](x)
    """),
    "a helper of a lambda in a class attribute's table of lists": _case("""
    class Registry:
        OPS = {"double": [lambda x: scale(x)]}

    @cached
    def f(x):
        return Registry.OPS["double"][0](x)
    """),
    "a helper of a function a slotted decorator class holds": _case("""
    class traced:
        __slots__ = ("fn",)

        def __init__(self, fn):
            self.fn = fn

        def __call__(self, *args):
            return self.fn(*args)

    @traced
    def clean(x):
        return scale(x)

    @cached
    def f(x):
        return clean(x)
    """),
    "a helper of a function given to a partial in a global": _case("""
    def twice(g, x):
        return g(x)

    DO = functools.partial(twice, scale)

    @cached
    def f(x):
        return DO(x)
    """),
    "a helper of a function in a tuple a closure captures": _case("""
    def make(steps):
        @cached
        def f(x):
            for step in steps:
                x = step(x)
            return x
        return f

    fn = make((scale,))
    """),
    "a helper of a function default": _case("""
    @cached
    def f(x, g=scale):
        return g(x)
    """),
    "a partial captured by a closure": _case("""
    def make():
        p = functools.partial(scale, k=1)

        @cached
        def f(x):
            return p(x)
        return f

    fn = make()
    """),
    "the second of two lambdas in globals": _case("""
    A = lambda x: x * 2  # noqa: E731
    B = lambda x: x + 1  # noqa: E731

    @cached
    def f(x):
        return A(x) + B(x)
    """, "", None, of="main.py", edit=("x + 1", "x + 2"), values=("10", "11"),
        named="helper main.<lambda>"),
    "a class attribute read through the class": _case("""
    @cached
    def f(x):
        return x * Config.FACTOR
    """, "from helpers import Config", "class Config:\n    FACTOR = 2\n",
        edit=("FACTOR = 2", "FACTOR = 3"), named="constant helpers.Config.FACTOR changed"),
    "a class attribute read through self in a method": _case("""
    class Model:
        FACTOR = 2

        @cached
        def f(self, x):
            return x * self.FACTOR

    fn, args = Model.f, (Model(), 3)
    """, "", None, of="main.py", edit=("FACTOR = 2", "FACTOR = 3"),
        named="constant main.Model.FACTOR changed"),
    "an Enum member's value": _case("""
    @cached
    def f(x):
        return x * Mode.FAST.value
    """, "from helpers import Mode", "import enum\nclass Mode(enum.Enum):\n    FAST = 2\n",
        edit=("FAST = 2", "FAST = 3"), named="class helpers.Mode changed"),
    "a nested class's method": _case("""
    @cached
    def f(x):
        return Outer.Inner().go(x)
    """, "from helpers import Outer",
        "class Outer:\n    class Inner:\n        def go(self, x):\n            return x * 2\n",
        named="helpers.Outer.Inner changed"),
    "a cached_property's code": _case("""
    @cached
    def f(x):
        return x * Box().k
    """, "from helpers import Box", "import functools\nclass Box:\n"
        "    @functools.cached_property\n    def k(self):\n        return 2\n",
        edit=("return 2", "return 3"), named="class helpers.Box changed"),
    "a global instance's state (a dataclass)": _case("""
    CONFIG = Config(2)

    @cached
    def f(x):
        return x * CONFIG.k
    """, "from helpers import Config",
        "import dataclasses\n@dataclasses.dataclass\nclass Config:\n    k: int\n",
        of="main.py", edit=("Config(2)", "Config(3)"), named="constant main.CONFIG changed"),
    "a global NamedTuple": _case("""
    PARAMS = Params(2)

    @cached
    def f(x):
        return x * PARAMS.k
    """, "from helpers import Params",
        "import typing\nclass Params(typing.NamedTuple):\n    k: int\n",
        of="main.py", edit=("Params(2)", "Params(3)"), named="constant main.PARAMS changed"),
    "a global of a library type (a date)": _case("""
    START = datetime.date(2020, 1, 1)

    @cached
    def f(x):
        return START.year + x
    """, "import datetime", None, of="main.py", edit=("2020", "2021"),
        values=("2023", "2024"), named="constant main.START changed"),
    "a global compiled pattern": _case("""
    PATTERN = re.compile("a+")

    @cached
    def f(x):
        return len(PATTERN.findall("aa b aaa " * x))
    """, "import re", None, of="main.py", edit=('"a+"', '"b+"'), values=("6", "3"),
        named="constant main.PATTERN changed"),
    # attack3: a helper held where the walk of a global's contents did not look (past its
    # first 10,000 objects or 20 levels, in a container that is not a plain dict, list,
    # tuple or set) counted by its own code only: an edited helper of it was stale
    "a helper past the first 10,000 items of a global table": _case("""
    TABLE = {i: i for i in range(20_000)}
    TABLE["scale"] = scale

    @cached
    def f(x):
        return TABLE["scale"](x)
    """),
    "a helper nested deeper than 20 levels in a global": _case("""
    NESTED = [scale]
    for _ in range(30):
        NESTED = [NESTED]

    @cached
    def f(x):
        found = NESTED
        while isinstance(found, list):
            found = found[0]
        return found(x)
    """),
    "a function held in a global WeakValueDictionary": _case("""
    REGISTRY = weakref.WeakValueDictionary(scale=scale)

    @cached
    def f(x):
        return REGISTRY["scale"](x)
    """, "import weakref\n    from helpers import scale"),
    "a helper in a global deque, OrderedDict and dict subclass": _case("""
    class Registry(dict):
        pass

    QUEUE = collections.deque([scale])
    ORDERED = collections.OrderedDict(scale=scale)
    REGISTRY = Registry(scale=scale)

    @cached
    def f(x):
        return QUEUE[0](x) + ORDERED["scale"](x) + REGISTRY["scale"](x)
    """, "import collections\n    from helpers import scale", values=("18", "27")),
    "a helper in a read-only view of a global table": _case("""
    OPS = types.MappingProxyType({"scale": scale})

    @cached
    def f(x):
        return OPS["scale"](x)
    """, "import types\n    from helpers import scale"),
    "a helper held by an instance a closure captures": _case("""
    class Box:
        def __init__(self, func):
            self.func = func

    def make():
        box = Box(scale)

        def f(x):
            return box.func(x)
        return f

    f = cached(make())
    """),
    "a helper the class of an instance a closure captures calls": _case("""
    def make():
        scaler = Scaler()

        def f(x):
            return scaler.go(x)
        return f

    f = cached(make())
    """, "from helpers import Scaler",
        HELPER + "\n    class Scaler:\n        def go(self, x):\n            return inner(x)\n"),
    "a helper the metaclass of a class calls": _case("""
    @cached
    def f(x):
        return Made().k * x
    """, "from helpers import Made", HELPER + _STAMPED),
    "a helper past the first 10,000 items of a table or in a deque a closure captures": _case("""
    def make():
        table = {i: i for i in range(20_000)}
        table["scale"] = scale
        queue = collections.deque([scale])

        def f(x):
            return table["scale"](x) + queue[0](x)
        return f

    f = cached(make())
    """, "import collections\n    from helpers import scale", values=("12", "18")),
    "a helper of a module held in a table, a closure, an instance or a class": _case("""
    MODULES = {"helpers": helpers}

    class Holder:
        module = helpers

        def __init__(self):
            self.own = helpers

    HOLDER = Holder()

    def make():
        module = helpers

        def f(x):
            return (MODULES["helpers"].scale(x) + module.scale(x) + HOLDER.own.scale(x)
                    + Holder.module.scale(x))
        return f

    f = cached(make())
    """, "import helpers", values=("24", "36")),
    # Before, a module a method reaches through a class attribute was looked up by the
    # names the cached function loads, not the method's: the edit returned the old value.
    "a helper of a module a method reaches through its class's attribute": _case("""
    class Model:
        lib = helpers

        def run(self, x):
            return self.lib.scale(x)

        @classmethod
        def run_class(cls, x):
            return cls.lib.scale(x)

    MODEL = Model()

    @cached
    def f(x):
        return Model().run(x) + MODEL.run(x) + Model.run_class(x)
    """, "import helpers", values=("18", "27")),
    # Before, a class's module was looked up by the names of the first function that
    # reached the class alone: here ``A_first`` (walked first, in the order of the names),
    # which loads no ``scale``. The edit returned the old value.
    "a helper of a module held by a class another function reached first": _case("""
    class Model:
        lib = helpers

    def A_first():
        return Model

    @cached
    def f(x):
        return A_first().lib.scale(x) + Model.lib.scale(x)
    """, "import helpers", values=("12", "18")),
    "a helper of a module held by the class of an instance another function reached first":
    _case("""
    class Model:
        lib = helpers

    MODEL = Model()

    def A_first():
        return MODEL

    @cached
    def f(x):
        return A_first().lib.scale(x) + MODEL.lib.scale(x)
    """, "import helpers", values=("12", "18")),
    "a helper of a module in a table another function reached first": _case("""
    MODULES = {"lib": helpers}

    def A_first():
        return MODULES

    @cached
    def f(x):
        return A_first()["lib"].scale(x) + MODULES["lib"].scale(x)
    """, "import helpers", values=("12", "18")),
    # Before, a module inside a class's data attribute was looked up by the names of the
    # function that reached the class, not its methods': the edit returned the old value.
    "a helper of a module in a class attribute's table a method reads": _case("""
    class Model:
        LIBS = {"lib": helpers}

        def run(self, x):
            return self.LIBS["lib"].scale(x)

    @cached
    def f(x):
        return Model().run(x)
    """, "import helpers"),
    # Before, a class's ``__match_args__`` was not in its fingerprint: the edit of what a
    # ``case Point(x, y)`` binds returned the old value.
    "a class's __match_args__, which a match statement binds by": _case("""
    @cached
    def f(x):
        match Point(x):
            case Point(first, second):
                return first * 2 + second
    """, "from helpers import Point", """
    class Point:
        __match_args__ = ("a", "b")

        def __init__(self, x):
            self.a, self.b = x, 0
    """, edit=('("a", "b")', '("b", "a")'), values=("6", "3"),
        named="class helpers.Point changed"),
    "a helper in a function's attribute": _case("""
    def run(x):
        return x

    run.steps = {"scale": scale}

    @cached
    def f(x):
        return run.steps["scale"](x)
    """),
    # A table's library callables by what they are and hold, as a global's: before, by
    # their type (a method descriptor, a built-in's bound method, itemgetter), and an edit
    # of one returned the old value.
    "a method descriptor held in a table": _case("""
    OPS = [scale, int.__mul__]

    @cached
    def f(x):
        return OPS[1](x, 2)
    """, of="main.py", edit=("__mul__", "__add__"), values=("6", "5"),
        named="constant main.OPS changed"),
    "an itemgetter held in a table": _case("""
    import operator

    PICK = {"first": operator.itemgetter(0), "scale": scale}

    @cached
    def f(x):
        return PICK["first"]((x * 2, x * 3))
    """, of="main.py", edit=("itemgetter(0)", "itemgetter(1)"), values=("6", "9"),
        named="constant main.PICK changed"),
    "a built-in's bound method held in a table": _case("""
    FORMATS = ("6".join, scale)

    @cached
    def f(x):
        return int(FORMATS[0](["", ""]))
    """, of="main.py", edit=('"6".join', '"9".join'), values=("6", "9"),
        named="constant main.FORMATS changed"),
    "a helper in a dataclass field's metadata": _case("""
    @cached
    def f(x):
        return dataclasses.fields(Row)[0].metadata["unit"](x)
    """, "import dataclasses\n    from helpers import Row", HELPER + """
    import dataclasses

    @dataclasses.dataclass
    class Row:
        value: int = dataclasses.field(default=0, metadata={"unit": scale})
    """),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_edit_of_what_the_function_reaches_recomputes(tmp_path: Path, case: str) -> None:
    files, edit, before, after, named = CASES[case]
    write(tmp_path, files)
    first = run(tmp_path)
    assert (first["value"], first["misses"]) == (before, 1)
    assert run(tmp_path)["misses"] == 0  # unchanged: a hit in a new process
    write(tmp_path, edit)
    second = run(tmp_path)
    assert (second["value"], second["misses"]) == (after, 1)
    if case in ARGUMENT_KEYED:  # the edit changes the call's key: no entry of it, and
        # the stored ones (of the code before) say what changed
        assert second["explain"].startswith(
            "miss: no entry for these arguments; the stored ones are of other code: ")
    else:
        assert second["explain"].startswith("incompatible: ")
    assert named in second["explain"]


# An argument (a default, ``self``) holding a function or class of the user's code keys with
# what that depends on (``_identity.argument_identity``): editing it is another key.
ARGUMENT_KEYED = {"a lambda default calling a helper", "a helper of a function default",
                  "a class attribute read through self in a method"}


def test_a_global_numpy_array_counts_by_value(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    main = _main("""
    KERNEL = np.array([1, 2])

    @cached
    def f(x):
        return int((KERNEL * x).sum())
    """, "import numpy as np")
    write(tmp_path, {"main.py": main})
    assert run(tmp_path)["value"] == "9"
    assert run(tmp_path)["misses"] == 0
    write(tmp_path, {"main.py": main.replace("[1, 2]", "[1, 3]")})
    second = run(tmp_path)
    assert (second["value"], second["misses"]) == ("12", 1)
    assert second["explain"] == "incompatible: constant main.KERNEL changed"


def test_globals_that_cannot_be_pickled_count_by_type_and_stay_stable(tmp_path: Path) -> None:
    write(tmp_path, {"main.py": _main("""
    LOCK = threading.Lock()
    LOG = open(__file__)

    @cached
    def f(x):
        with LOCK:
            return x + len(LOG.name) * 0
    """, "import threading")})
    assert run(tmp_path)["misses"] == 1
    assert run(tmp_path, seed="1")["misses"] == 0


COUNTED = """
    class Point:
        FACTOR = 2
        made = 0

        def __init__(self, x):
            Point.made += 1  # a class attribute the class bumps at run time
            self.x = x * self.FACTOR
"""


def test_a_result_class_bumping_its_own_attribute_still_hits(tmp_path: Path) -> None:
    write(tmp_path, {"models.py": COUNTED, "main.py": _main("""
    @cached
    def f(x):
        return [models.Point(x), models.Point(x + 1)]
    """, "import models")})
    assert run(tmp_path)["misses"] == 1
    assert run(tmp_path)["misses"] == 0  # the class's fingerprint is its code, not `made`
    write(tmp_path, {"models.py": COUNTED.replace("FACTOR = 2", "FACTOR = 3")})
    second = run(tmp_path)
    assert second["misses"] == 1 and "constant models.Point.FACTOR changed" in second["explain"]



class _Holder:
    def __init__(self, items: list[str]) -> None:
        self.items = items


def test_a_global_too_large_to_fingerprint_counts_by_its_type_in_bounded_memory() -> None:
    """Every process fingerprints what a function reads at its first call: a global whose
    pickled state passes ``STATE_LIMIT`` (a model of gigabytes) is hashed as it is pickled,
    stopped at the limit, never held whole, and counts by its type."""
    import pickle
    import tracemalloc

    from memojar import _identity, _keys

    big = _Holder([f"{i:050d}" for i in range(1_000_000)])
    assert len(pickle.dumps(big, 5)) > 3 * _keys.STATE_LIMIT
    tracemalloc.start()
    try:
        shape = _identity._state_shape(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shape == ("type", __name__, "_Holder")
    assert peak < _keys.STATE_LIMIT  # not the 53 MB pickle


_LARGE_GLOBAL: list[str] = []


def _reads_the_large_global(i: int) -> int:
    return len(_LARGE_GLOBAL) + i


def test_a_function_reading_a_global_too_large_to_follow_says_so_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted by its type, a change of it is not seen: a notebook's ``df = df[df.v > 0]``
    left ``total('v')`` returning the sum of the whole frame. Before, not a word of it."""
    import warnings

    from memojar import Cache, MemojarWarning

    monkeypatch.setattr(sys.modules[__name__], "_LARGE_GLOBAL",
                        [f"{i:050d}" for i in range(200_000)])
    f = Cache(tmp_path).cached(_reads_the_large_global)
    said = (r"_reads_the_large_global depends on the global .*\._LARGE_GLOBAL \(a list\), too "
            r"large to follow .* a change of it is not seen, an earlier value returned; pass "
            r"it as an argument")
    with pytest.warns(MemojarWarning, match=said):
        assert f(1) == 200_001
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(2) == 200_002  # once a function


def test_a_global_under_the_limit_counts_by_its_state() -> None:
    from memojar import _identity

    one, same, other = _Holder(["a"] * 10), _Holder(["a"] * 10), _Holder(["b"] * 10)
    assert _identity._state_shape(one) == _identity._state_shape(same)
    assert _identity._state_shape(one)[0] == "state"
    assert _identity._state_shape(one) != _identity._state_shape(other)


def test_a_global_of_many_small_nested_items_counts_by_its_type_in_bounded_memory() -> None:
    """The limit holds for items in nested containers too (a table of tables in an object's
    attribute): they are normalised (sorted, copied) before any byte is pickled, so the
    pickle's limit came too late to bound the first call's time and memory."""
    import tracemalloc

    from memojar import _identity, _keys

    big = _Holder({i: {j: j for j in range(100)} for i in range(5_000)})  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        shape = _identity._state_shape(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shape == ("type", __name__, "_Holder")
    assert peak < _keys.STATE_LIMIT // 4


class _Stop(BaseException):
    """Not an Exception: what a library's own control flow raises (gevent, pytest)."""


class _Refusing:
    def __getstate__(self) -> object:
        raise _Stop("no state")


_REFUSING = _Refusing()


def test_a_global_whose_pickling_raises_a_base_exception_counts_by_its_type(
        tmp_path: Path) -> None:
    import memojar

    @memojar.Cache(tmp_path).cached
    def reads_it(x: int) -> int:
        return x + 1 if _REFUSING is not None else 0

    assert reads_it(1) == 2
    assert reads_it(1) == 2 and reads_it.cache_info().hits == 1


def test_a_table_of_helpers_keyed_by_objects_still_hits_in_a_new_process(
        tmp_path: Path) -> None:
    # Its keys' reprs name their addresses (``<main.Kind object at 0x7f...>``, a function)
    # or an order of the hash seed (a frozenset): none may enter the fingerprint.
    write(tmp_path, {"main.py": _main("""
    class Kind:
        pass

    def other(x):
        return x

    OPS = {Kind(): scale, other: scale, frozenset({"a", "b", "c", "d"}): scale}

    @cached
    def f(x):
        return list(OPS.values())[0](x)
    """), "helpers.py": HELPER})
    assert run(tmp_path)["misses"] == 1
    assert run(tmp_path, seed="1")["misses"] == 0


def test_a_library_modules_own_method_in_a_table_or_a_closure_still_hits_in_a_new_process(
        tmp_path: Path) -> None:
    # ``random.choice`` is a method of random's hidden instance, seeded anew in each
    # process: it counts by its name, as a global bound to it alone does. Before, in a
    # table or captured by a closure it counted with the instance's state, and every
    # process missed.
    write(tmp_path, {"main.py": _main("""
    import random

    OPS = {"pick": random.choice, "scale": scale}

    def make(pick):
        @cached
        def g(x):
            return pick([x]) * 2
        return g

    fn = make(random.choice)

    @cached
    def f(x):
        return OPS["scale"](x)
    """), "helpers.py": HELPER})
    (tmp_path / "hit.py").write_text(textwrap.dedent("""
        import json, main
        main.f(3), main.fn(3)
        print(json.dumps({"misses": main.f.cache_info().misses + main.fn.cache_info().misses}))
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((SRC, str(tmp_path))),
           "MEMOJAR_DIR": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    misses = [json.loads(subprocess.run(
        [sys.executable, "hit.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=True).stdout)["misses"] for _ in range(2)]
    assert misses == [2, 0]


def test_a_global_array_not_in_c_order_is_not_copied_whole_at_the_first_call() -> None:
    """A transposed or strided array (a view of a model's weights) was copied into C order
    before the arrays' limit could refuse it: its size in memory at every process's first
    call. Over ``STATE_LIMIT`` it counts by its type; a contiguous one is hashed in place."""
    import tracemalloc

    np = pytest.importorskip("numpy")
    from memojar import _identity, _keys

    weights = np.ones((4096, 2048))  # 64 MB
    tracemalloc.start()
    try:
        shapes = [_identity._state_shape(weights.T), _identity._state_shape(weights[:, ::2])]
        peak = tracemalloc.get_traced_memory()[1]
        in_place = _identity._state_shape(weights)
    finally:
        tracemalloc.stop()
    assert shapes == [("type", "numpy", "ndarray")] * 2
    assert peak < _keys.STATE_LIMIT
    assert in_place[0] == "state"


def test_a_helper_a_pydantic_default_factory_calls_recomputes(tmp_path: Path) -> None:
    # A field's ``default_factory`` is in no method of a pydantic model, only in the fields
    # pydantic records, where it counted by its name: an edit of the helper it calls
    # returned the old default's value (attack3).
    pytest.importorskip("pydantic")
    model = """
    import pydantic
    from helpers import scale

    def start():
        return scale(1)

    class Config(pydantic.BaseModel):
        k: int = pydantic.Field(default_factory=start)
"""
    write(tmp_path, {"models.py": model, "helpers.py": HELPER, "main.py": _main("""
    @cached
    def f(x):
        return Config().k * x
    """, "from models import Config")})
    assert (run(tmp_path)["value"], run(tmp_path)["misses"]) == ("6", 0)
    write(tmp_path, {"helpers.py": EDITED_HELPER})
    second = run(tmp_path)
    assert (second["value"], second["misses"]) == ("9", 1)
    assert "helper helpers.inner changed" in second["explain"]
