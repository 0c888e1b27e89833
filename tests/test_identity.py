"""Function identity: ``module.qualname`` and a code fingerprint that only real edits change."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python
from memojar._identity import code_fingerprint, function_name

BASE = '''
"""A module of functions to fingerprint."""

RATE = 2


def helper(x):
    return x


def f(x):
    """Docstring of f."""
    # a comment
    if x is None:
        return None
    if x in {"a", "b", "c"}:
        return helper(x) + 1
    def inner(y):
        """Docstring of inner."""
        return y * 2
    scale = lambda z: z * RATE  # noqa: E731
    return inner(len(x)) + scale(2.5)
'''

_counter = itertools.count()


def load(tmp_path: Path, source: str, name: str = "fpmod"):
    """Import ``source`` as module ``name`` from a fresh file; return its ``f``."""
    folder = tmp_path / f"v{next(_counter)}"
    folder.mkdir()
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.f


def fingerprint(tmp_path: Path, source: str) -> str:
    return code_fingerprint(load(tmp_path, source))


def edited(old: str, new: str, count: int = 1) -> str:
    assert BASE.count(old) >= count, old
    return BASE.replace(old, new, count)


def test_function_name_is_module_and_qualname(tmp_path: Path) -> None:
    f = load(tmp_path, BASE)
    assert function_name(f) == "fpmod.f"

    class Outer:
        def method(self):
            pass

    assert function_name(Outer.method) == (
        f"{__name__}.test_function_name_is_module_and_qualname.<locals>.Outer.method"
    )


def test_fingerprint_is_a_stable_hex_digest(tmp_path: Path) -> None:
    one, two = fingerprint(tmp_path, BASE), fingerprint(tmp_path, BASE)
    assert one == two
    assert len(one) == 16
    int(one, 16)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("helper(x) + 1", "helper(x) - 1", id="operator"),
        pytest.param("return inner(len(x))", "return inner(len(x) + len(x))", id="code"),
        pytest.param("+ scale(2.5)", "+ scale(3.5)", id="float-constant"),
        pytest.param('{"a", "b", "c"}', '{"a", "b", "d"}', id="frozenset-constant"),
        pytest.param("return helper(x)", "return str(x)", id="global-name"),
        pytest.param("y * 2", "y * 3", id="nested-function-constant"),
        pytest.param("return y * 2", "return y // 2", id="nested-function-code"),
        pytest.param("z * RATE", "z / RATE", id="lambda-code"),
        pytest.param("def f(x):", "def f(x, y=None):", id="signature"),
        pytest.param("scale = lambda", "scaled = lambda", id="local-name"),
    ],
)
def test_fingerprint_changes_when_the_code_does(tmp_path: Path, old: str, new: str) -> None:
    assert fingerprint(tmp_path, edited(old, new)) != fingerprint(tmp_path, BASE)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("\ndef f(x):", "\n\n\n\n# moved down\n\n\ndef f(x):", id="moved-down"),
        pytest.param("# a comment", "# another comment, longer\n    # and one more", id="comments"),
        pytest.param('"""Docstring of f."""', '"""Another docstring, longer."""', id="docstring"),
        pytest.param('"""Docstring of f."""\n', "", id="docstring-removed"),
        pytest.param('"""Docstring of inner."""', '"""Inner, documented anew."""',
                     id="nested-docstring"),
        pytest.param("RATE = 2\n", "RATE = 2\nOTHER = 3\n", id="rest-of-module"),
        pytest.param("def helper(x):\n    return x", "def helper(x):\n    return -x",
                     id="another-function"),
    ],
)
def test_fingerprint_ignores_cosmetic_edits(tmp_path: Path, old: str, new: str) -> None:
    assert fingerprint(tmp_path, edited(old, new)) == fingerprint(tmp_path, BASE)


def test_adding_a_docstring_to_a_function_that_had_none_keeps_the_fingerprint(
    tmp_path: Path,
) -> None:
    """Before 3.14 the docstring (or None) is co_consts[0]: other constants move with it."""
    plain = "def f(path):\n    with open(path) as fh:\n        return fh.read() or None\n"
    documented = plain.replace("\n", '\n    """Reads a file."""\n', 1)
    assert fingerprint(tmp_path, documented) == fingerprint(tmp_path, plain)


def test_fingerprint_of_a_callable_object_is_its_name() -> None:
    assert code_fingerprint(len) == code_fingerprint(len)
    assert code_fingerprint(len) != code_fingerprint(abs)


_FINGERPRINT_SCRIPT = """
import json, sys
sys.path.insert(0, {folder!r})
from memojar._identity import code_fingerprint
import seedmod
print(json.dumps([code_fingerprint(seedmod.f), code_fingerprint(seedmod.g)]))
"""

_SEED_MODULE = '''
def f(x):
    if x in {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}:
        return "greek"
    return x not in frozenset({"one", "two", "three", "four"})


def g(x):
    def inner(y):
        return y in {"a", "b", "c", "d", "e", "f", "g"}
    return inner(x)
'''


def test_fingerprint_is_the_same_in_every_process_whatever_the_hash_seed(
    tmp_path: Path,
) -> None:
    (tmp_path / "seedmod.py").write_text(_SEED_MODULE)
    script = _FINGERPRINT_SCRIPT.format(folder=str(tmp_path))
    results = {
        tuple(json.loads(run_python(script, env={"PYTHONHASHSEED": seed})))
        for seed in ("0", "1", "2", "987654")
    }
    assert len(results) == 1


def test_the_frozenset_constant_really_varies_with_the_hash_seed(tmp_path: Path) -> None:
    """Guard for the test above: the raw constant's order does depend on the seed."""
    code = "def f(x):\n    return x in {'alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'}\n"
    script = f"exec({code!r}); print(repr(f.__code__.co_consts))"
    orders = {run_python(script, env={"PYTHONHASHSEED": seed}) for seed in ("0", "1", "2", "3")}
    assert len(orders) > 1


def test_mp_main_is_main_in_names_and_fingerprints() -> None:
    source = "def f(x):\n    return x + 1\n"
    names, prints = [], []
    for module in ("__main__", "__mp_main__"):
        namespace: dict = {"__name__": module}
        exec(compile(source, "script.py", "exec"), namespace)
        names.append(function_name(namespace["f"]))
        prints.append(code_fingerprint(namespace["f"]))
    assert names == ["__main__.f", "__main__.f"]
    assert prints[0] == prints[1]


def test_names_of_objects_without_a_name_are_their_class() -> None:
    import operator

    assert function_name(operator.itemgetter(1)) == "operator.itemgetter"


# --- code and defaults reassigned at run time ---------------------------------------------
# ``f.__code__ = g.__code__`` (joblib's test_memory_in_memory_function_code_change) and
# ``f.__defaults__ = ...``: the function runs other code, or binds other defaults, from
# then on. Its entries of before are another function's results: never returned for it.

def _plus(x, y=1):
    return ("plus", x + y)


def _times(x, y=1):
    return ("times", x * y)


def _fresh(name: str):
    """A new function of ``_plus``'s code under ``name`` (each test reassigns its own)."""
    import types

    fn = types.FunctionType(_plus.__code__, globals(), name, _plus.__defaults__)
    fn.__qualname__ = name
    return fn


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
@pytest.mark.parametrize("via", ["wrapped", "original"])
def test_code_reassigned_after_the_first_call_runs_the_new_code(
    tmp_path: Path, memory: int | None, via: str
) -> None:
    from memojar import cached

    original = _fresh(f"code_{via}_{memory}")
    f = cached(cache_dir=tmp_path / "c", memory=memory)(original)
    assert f(2, 3) == ("plus", 5)
    assert f(2, 3) == ("plus", 5)  # a hit (held in memory with memory=)
    target = f.__wrapped__ if via == "wrapped" else original
    target.__code__ = _times.__code__
    assert f(2, 3) == ("times", 6)
    assert f(2, 3) == ("times", 6)
    assert f.cache_info()[:2] == (2, 2)  # the new code's second call hits its own entry
    assert f.cache_contains(2, 3) and "hit" in f.cache_explain(2, 3)
    target.__code__ = _plus.__code__  # and back: the first code's value again
    assert f(2, 3) == ("plus", 5)


def test_code_reassigned_before_decorating_is_the_code_cached(tmp_path: Path) -> None:
    from memojar import cached

    original = _fresh("code_before")
    original.__code__ = _times.__code__
    f = cached(cache_dir=tmp_path / "c")(original)
    assert f(2, 3) == ("times", 6)
    assert f(2, 3) == ("times", 6)
    assert f.cache_info()[:2] == (1, 1)


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
def test_defaults_reassigned_bind_the_new_default(tmp_path: Path, memory: int | None) -> None:
    from memojar import cached

    f = cached(cache_dir=tmp_path / "c", memory=memory)(_fresh(f"defaults_{memory}"))
    assert f(2) == ("plus", 3)
    f.__wrapped__.__defaults__ = (5,)
    assert f(2) == ("plus", 7)
    assert f(2, 1) == ("plus", 3)  # the call that f(2) was: its entry of before
    assert f.cache_key(2) == f.cache_key(2, 5) != f.cache_key(2, 1)


def test_defaults_reassigned_before_the_first_call_are_the_ones_keyed(tmp_path: Path) -> None:
    from memojar import cached

    f = cached(cache_dir=tmp_path / "c")(_fresh("defaults_early"))
    f.__wrapped__.__defaults__ = (5,)
    assert f(2) == ("plus", 7)
    assert f(2, 1) == ("plus", 3)  # not f(2)'s entry, computed with y=5


def test_keyword_defaults_reassigned_bind_the_new_default(tmp_path: Path) -> None:
    from memojar import cached

    def kw(x, *, y=1):
        return x + y

    f = cached(cache_dir=tmp_path / "c")(kw)
    assert f(2) == 3
    kw.__kwdefaults__ = {"y": 10}
    assert f(2) == 12
    assert f(2, y=1) == 3


@pytest.mark.parametrize("memory", [None, 8])
def test_keyword_defaults_changed_in_place_bind_the_new_default(tmp_path: Path,
                                                                 memory: int | None) -> None:
    """``__kwdefaults__`` is a dict the function reads at each call: a default changed in
    it in place is the function's new default. Before, the binder held the defaults of
    decoration time and f(2) kept its key: the old default's value, from disk and memory."""
    from memojar import cached

    def kw(x, *, scale=1):
        return x * scale

    f = cached(cache_dir=tmp_path / "c", memory=memory)(kw)
    assert f(2) == f(2) == 2
    kw.__kwdefaults__["scale"] = 100
    assert f(2) == f(2) == 200 == kw(2)  # before: 2
    assert f.cache_key(2) == f.cache_key(2, scale=100) != f.cache_key(2, scale=1)
    assert f(2, scale=1) == 2  # the entry of before
    kw.__kwdefaults__["scale"] = 1
    assert f(2) == 2


def test_keyword_defaults_changed_in_place_under_a_wrapper_bind_the_new_default(
    tmp_path: Path
) -> None:
    from memojar import cached

    def kw(x, *, scale=1):
        return x * scale

    f = cached(cache_dir=tmp_path / "c", memory=8)(_passing(kw))
    assert f(2) == 2
    kw.__kwdefaults__["scale"] = 100
    assert f(2) == f(2) == 200  # before: 2


def test_keyword_defaults_changed_in_place_after_the_code_was_reassigned_bind_the_new_default(
    tmp_path: Path
) -> None:
    """Code reassigned to one of fewer keyword names leaves the dict holding a name no
    parameter has (``mode``), which calls ignore. Before, the binder then took a copy of
    the dict, and ``scale = 100`` set in it in place kept the key and value of
    ``scale=1``: f(2) returned 2, from the disk."""
    from memojar import cached

    def kw(x, *, scale=1, mode="a"):
        return (x * scale, mode)

    def other(x, *, scale=1):
        return x * scale

    f = cached(cache_dir=tmp_path / "c")(kw)
    assert f(2) == (2, "a")
    kw.__code__ = other.__code__
    assert f(2) == 2
    kw.__kwdefaults__["scale"] = 100
    assert f(2) == f(2) == 200  # before: 2


@pytest.mark.parametrize("value", [1.0, True])
def test_a_keyword_default_changed_in_place_to_an_equal_value_is_seen_in_memory(
    tmp_path: Path, value: object
) -> None:
    """``scale = 1.0`` for ``scale = 1`` is an equal value of another type: another key,
    and the function may return another value. Before, the memory tier compared the dict
    with a copy by ``==``, saw no change, and f(2) returned '2' (of ``scale=1``)."""
    from memojar import cached

    def kw(x, *, scale=1):
        return f"{x * scale!r} {type(scale).__name__}"

    f = cached(cache_dir=tmp_path / "c", memory=8)(kw)
    assert f(2) == "2 int"
    kw.__kwdefaults__["scale"] = value
    assert f(2) == f(2) == kw(2) != "2 int"  # before: '2 int'


@pytest.mark.parametrize("memory", [None, 8])
def test_a_keyword_default_changed_in_place_between_a_calls_key_and_its_run_is_not_stored(
    tmp_path: Path, memory: int | None
) -> None:
    """A call keyed with ``scale=1`` that runs with ``scale=100`` (another thread changed
    the dict in place between the two: here the argument's pickling, as the key is made)
    returns the value it computed, and stores nothing under the key of ``scale=1``.
    Before, a miss compared the dict by identity alone, and stored 200 there: f(a, scale=1)
    returned 200, from the disk."""
    from memojar import cached

    def kw(x, *, scale=1):
        return x.n * scale

    changes = [100]

    class Arg:
        def __init__(self, n: int) -> None:
            self.n = n

        def __reduce__(self) -> tuple[Any, ...]:
            if changes:
                kw.__kwdefaults__["scale"] = changes.pop()
            return (Arg, (self.n,))

    f = cached(cache_dir=tmp_path / "c", memory=memory)(kw)
    assert f(Arg(2)) == 200
    assert f(Arg(2), scale=1) == 2  # before: 200
    g = cached(cache_dir=tmp_path / "c")(kw)  # as another process reads the disk
    kw.__kwdefaults__["scale"] = 1
    assert g(Arg(2)) == 2


def _factored(fn):  # a decorator of functools.wraps with a keyword default of its own
    import functools

    @functools.wraps(fn)
    def scaled(*args, factor=1, **kwargs):
        return fn(*args, **kwargs) * factor

    return scaled


@pytest.mark.parametrize("memory", [None, 8])
@pytest.mark.parametrize("layer", ["outer", "between"])
def test_a_decorators_own_keyword_default_changed_in_place_is_seen(
    tmp_path: Path, memory: int | None, layer: str
) -> None:
    """``scaled.__kwdefaults__["factor"] = 10``: the wrapper's calls run with the new
    default, under @cached directly or under another decorator of ``functools.wraps``.
    Before, its dict was compared by identity alone: f(2) kept its key and identity, and
    returned 2, from the disk and from memory."""
    from memojar import cached

    def base(x):
        return x

    scaled = _factored(base)
    f = cached(cache_dir=tmp_path / "c", memory=memory)(
        scaled if layer == "outer" else _passing(scaled))
    assert f(2) == 2
    scaled.__kwdefaults__["factor"] = 10
    assert f(2) == f(2) == 20  # before: 2
    scaled.__kwdefaults__["factor"] = 1.0
    assert repr(f(2)) == "2.0"


@pytest.mark.parametrize("kind", ["positional", "keyword"])
def test_a_default_reassigned_to_a_list_is_keyed_by_its_content_also_in_memory(
    tmp_path: Path, kind: str
) -> None:
    """The memory tier holds a call of plain arguments by the arguments alone only while the
    defaults cannot change in place (decided when decorating). Before, a default reassigned
    to a list (``f.__wrapped__.__defaults__ = ([],)``) kept that decision: once the list
    was appended to, f(1) returned, from memory, its value for the list's old content."""
    from memojar import cached

    if kind == "positional":
        def g(x, acc=None):
            return (x, None if acc is None else list(acc))
    else:
        def g(x, *, acc=None):  # type: ignore[misc]
            return (x, None if acc is None else list(acc))

    f = cached(cache_dir=tmp_path / "c", memory=8)(g)
    assert f(1) == f(1) == (1, None)
    acc: list[int] = []
    if kind == "positional":
        g.__defaults__ = (acc,)
    else:
        g.__kwdefaults__ = {"acc": acc}
    assert f(1) == f(1) == (1, [])
    acc.append(5)
    assert f(1) == (1, [5]) == g(1)  # before: (1, []), held in memory
    assert f(1) == (1, [5])
    if kind == "positional":
        g.__defaults__ = (None,)
    else:
        g.__kwdefaults__ = {"acc": None}
    assert f(1) == f(1) == (1, None)
    assert list(f.__memojar__.recent) == [(1,)]  # type: ignore[attr-defined]
    assert f.__memojar__.simple == {int, str, bytes, type(None)}  # type: ignore[attr-defined]


def _passing(fn):  # a decorator of functools.wraps under @cached
    import functools

    @functools.wraps(fn)
    def through(*args, **kwargs):
        return fn(*args, **kwargs)

    return through


_CONFIG = {"seed": 42}


def _seeded(fn):  # a decorator of functools.wraps that fills seed= the call left out
    import functools

    @functools.wraps(fn)
    def filling(*args, **kwargs):
        kwargs.setdefault("seed", _CONFIG["seed"])
        return fn(*args, **kwargs)

    return filling


def _sample(n, seed=0):
    return (n, seed)


def _seeded_by_wrapt(fn):  # _seeded, as a wrapt decorator
    wrapt = pytest.importorskip("wrapt")

    @wrapt.decorator
    def filling(wrapped, instance, args, kwargs):
        kwargs.setdefault("seed", _CONFIG["seed"])
        return wrapped(*args, **kwargs)

    return filling(fn)


def _seeded_with_its_signature(fn):  # _seeded, saying the wrapped function's signature
    import inspect

    wrapper = _seeded(fn)
    wrapper.__signature__ = inspect.signature(fn)
    return wrapper


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
@pytest.mark.parametrize("decorator", [_seeded, _seeded_by_wrapt, _seeded_with_its_signature],
                         ids=["wraps", "wrapt", "__signature__"])
def test_a_wrapper_that_fills_a_parameter_the_call_left_out_keys_the_two_calls_apart(
    tmp_path: Path, memory: int | None, decorator: Any
) -> None:
    """The call is bound by the wrapped function's signature (``inspect.signature``
    follows ``__wrapped__``, or reads a ``__signature__`` set on the wrapper, and sees
    through wrapt's proxy), whose defaults the wrapper need not run it with. Before,
    ``f(5)`` and ``f(5, seed=0)`` were bound alike, with the wrapped function's ``seed=0``:
    the second call returned the first one's value, (5, 42)."""
    from memojar import cached

    f = cached(cache_dir=tmp_path / "c", memory=memory)(decorator(_sample))
    assert f(5) == f(5) == (5, 42)
    assert f(5, seed=0) == f(5, seed=0) == (5, 0)  # before: (5, 42)
    with pytest.raises(TypeError, match="multiple values"):  # as uncached (seed given
        f(5, 0)  # twice): not the value of f(5, seed=0)
    assert f(n=5) == (5, 42)


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
def test_a_wrapper_that_passes_its_own_value_for_a_default_keys_the_two_calls_apart(
    tmp_path: Path, memory: int | None
) -> None:
    """``def wrapper(x, scale=None)`` calling ``fn(x, 2 if scale is None else scale)`` on
    ``def fn(x, scale=1)``. Before, f(3, scale=1) returned f(3)'s 6."""
    import functools

    def times(x, scale=1):
        return x * scale

    @functools.wraps(times)
    def doubling(x, scale=None):
        return times(x, 2 if scale is None else scale)

    from memojar import cached

    f = cached(cache_dir=tmp_path / "c", memory=memory)(doubling)
    assert f(3) == 6
    assert f(3, scale=1) == f(3, 1) == 3  # before: 6


def test_a_wrapper_whose_default_equals_the_wrapped_ones_of_another_type_keys_it_apart(
    tmp_path: Path
) -> None:
    """``def wrapper(x, scale=1.0)`` around ``mul(x, scale=1)``: the signatures compare
    equal (``1.0 == 1``), and the calls differ. Before, f(5, 1) returned f(5)'s 5.0."""
    import functools

    from memojar import cached

    def mul(x, scale=1):
        return x * scale

    @functools.wraps(mul)
    def floating(x, scale=1.0):
        return mul(x, scale)

    f = cached(cache_dir=tmp_path / "c")(floating)
    assert repr(f(5)) == "5.0"
    assert repr(f(5, 1)) == "5"  # before: 5.0


def _multiplying(fn):  # a positional parameter of its own, factor, then the wrapped one's
    import functools

    @functools.wraps(fn)
    def times(factor, *args, **kwargs):
        return factor * fn(*args, **kwargs)

    return times


def _scaling(fn):  # a keyword-only parameter named like one of the wrapped function's
    import functools

    @functools.wraps(fn)
    def scaling(*args, y=1, **kwargs):
        return fn(*args, **kwargs) * y

    return scaling


def _passing_on(fn):
    import functools

    @functools.wraps(fn)
    def through(*args, **kwargs):
        return fn(*args, **kwargs)

    return through


def _tens(x=0, y=1):
    return x * 10 + y


def _by_type(fn):  # singledispatch: an int implementation with parameters named otherwise
    import functools

    generic = functools.singledispatch(fn)

    @generic.register
    def _(x: int, z=1, y=1):
        return ("int", x, z, y)

    return generic


_WRAPPERS = {
    "own positional": lambda: (_multiplying(_tens), [((2, 3), {}), ((2,), {"y": 3})]),
    "own keyword named like a positional": lambda: (_scaling(_tens),
                                                    [((2, 3), {}), ((2,), {"y": 3})]),
    "under another": lambda: (_passing_on(_multiplying(_tens)), [((2, 3), {}), ((2,), {"y": 3})]),
    "under lru_cache": lambda: (functools.lru_cache(_multiplying(_tens)),
                                [((2, 3), {}), ((2,), {"y": 3})]),
    "singledispatch, named otherwise": lambda: (_by_type(_tens),
                                                [((1, 2), {}), ((1,), {"y": 2})]),
}


@pytest.mark.parametrize("kind", list(_WRAPPERS))
def test_calls_bound_alike_by_the_wrapped_signature_are_the_wrappers_own_calls(
    tmp_path: Path, kind: str
) -> None:
    """A call is bound by the wrapped function's signature (``inspect.signature``), which
    is not the one that runs: ``f(2, 3)`` and ``f(2, y=3)`` bind alike by ``_tens``'s, and
    the wrapper (``def times(factor, *args, **kwargs)``, ``scaling(*args, y=1,
    **kwargs)``, an implementation's ``(x: int, z=1, y=1)``) runs them otherwise. How the
    call gave each parameter is keyed too. Before, the second call returned the first
    one's value (62 for 6)."""
    from memojar import cached

    wrapper, calls = _WRAPPERS[kind]()
    f = cached(cache_dir=tmp_path / "c")(wrapper)
    for args, kwargs in calls * 2:
        assert f(*args, **kwargs) == wrapper(*args, **kwargs)
    assert f.cache_info()[:2] == (len(calls), len(calls))


def test_ignore_and_files_under_a_wrapper_with_positional_parameters_of_its_own(
    tmp_path: Path
) -> None:
    """A method's decorator naming the instance otherwise (``wrapper(obj, *args,
    **kwargs)``): ``ignore=`` and ``files=`` name the method's parameters, as before."""
    import functools

    from memojar import cached

    def logged(fn):
        @functools.wraps(fn)
        def wrapper(obj, *args, **kwargs):
            return fn(obj, *args, **kwargs)
        return wrapper

    data = tmp_path / "data.txt"
    data.write_text("a")

    class Model:
        @cached(cache_dir=tmp_path / "c", ignore=("verbose",), files=("path",))
        @logged
        def read(self, path, verbose=False):
            return Path(path).read_text()

        def __getstate__(self):
            return {}

    assert Model().read(str(data)) == Model().read(str(data), verbose=True) == "a"
    assert Model.read.cache_info()[:2] == (1, 1)
    data.write_text("b")
    assert Model().read(str(data)) == "b"


def _moving(kind: str):
    """A decorator whose wrapper passes an argument on as another parameter, or passes the
    call on unchanged to a function that does."""
    import functools

    session = {"rate": 10}

    def run_in_session(fn, *args, **kwargs):
        return fn(session, *args, **kwargs)

    def moving(fn):
        bound = functools.partial(fn, session)
        if kind == "adds one first":
            def wrapper(*args, **kwargs):
                return fn(session, *args, **kwargs)
        elif kind == "takes one of its own":
            def wrapper(factor, *args, **kwargs):
                return fn(*[a * factor for a in args], **kwargs)
        elif kind == "drops the first":
            def wrapper(*args, **kwargs):
                return fn(*args[1:], **kwargs)
        elif kind == "swaps its own":
            def wrapper(a, b, *args, **kwargs):
                a, b = b, a
                return fn(a, b, *args, **kwargs)
        elif kind == "calls a partial":
            def wrapper(*args, **kwargs):
                return bound(*args, **kwargs)
        elif kind == "hands it to a runner":
            def wrapper(*args, **kwargs):
                return run_in_session(fn, *args, **kwargs)
        elif kind == "spells one branch out":
            def wrapper(*args, **kwargs):
                if kwargs:
                    return fn(*args, **kwargs)
                return fn(session, args[0], args[1])
        elif kind == "branches to a partial":
            def wrapper(*args, **kwargs):
                if args and isinstance(args[0], str):
                    return fn(*args, **kwargs)
                return bound(*args, **kwargs)
        elif kind == "jumps into the call":
            def wrapper(*args, **kwargs):
                return (bound if bound is not None else fn)(*args, **kwargs)
        elif kind == "copies its own into a keyword":
            def wrapper(a, *args, **kwargs):
                kwargs["y"] = a
                return fn(a, *args, **kwargs)
        elif kind == "takes a keyword first":
            def wrapper(y=None, *args, **kwargs):
                return fn(y, *args, **kwargs)
        elif kind == "moves a keyword of its own":
            def wrapper(*args, session=None, **kwargs):
                return fn(*args, y=session, **kwargs)
        elif kind == "pops a keyword":
            def wrapper(*args, **kwargs):
                return fn(kwargs.pop("session", None), *args, **kwargs)
        elif kind == "dispatches to another layout":
            dispatching = functools.singledispatch(fn)

            @dispatching.register
            def _(session: int, y, x=0):
                return (session, x, y)
            return dispatching
        else:  # "under one passing the call on"
            return _passing_on(_moving("adds one first")(fn))
        return functools.wraps(fn)(wrapper)
    return moving


_MOVED = {  # kind: the parameter ignored, two calls keyed alike if it were left out
    "adds one first": ("session", [((5, 1), {}), ((6, 1), {})]),
    "takes one of its own": ("session", [((2, 3, 4), {}), ((3, 3, 4), {})]),
    "drops the first": ("y", [((5, 1, 2), {}), ((5, 1, 3), {})]),
    "swaps its own": ("session", [((5, 1), {}), ((6, 1), {})]),
    "calls a partial": ("session", [((5, 1), {}), ((6, 1), {})]),
    "hands it to a runner": ("session", [((5, 1), {}), ((6, 1), {})]),
    "spells one branch out": ("session", [((5, 1), {}), ((6, 1), {})]),
    "branches to a partial": ("session", [((5, 1), {}), ((6, 1), {})]),
    "jumps into the call": ("session", [((5, 1), {}), ((6, 1), {})]),
    "copies its own into a keyword": ("session", [((5, 1), {}), ((6, 1), {})]),
    "takes a keyword first": ("y", [((), {"x": 1, "y": 5}), ((), {"x": 1, "y": 6})]),
    "moves a keyword of its own": ("session", [((1,), {"session": 5}),
                                               ((1,), {"session": 6})]),
    "pops a keyword": ("session", [((1,), {"session": 5}), ((1,), {"session": 6})]),
    "dispatches to another layout": ("y", [((5, 1, 2), {}), ((5, 1, 3), {})]),
    "under one passing the call on": ("session", [((5, 1), {}), ((6, 1), {})]),
}


@pytest.mark.parametrize("kind", list(_MOVED))
def test_ignore_under_a_decorator_passing_an_argument_on_as_another_keys_it(
    tmp_path: Path, kind: str
) -> None:
    """``ignore=("session",)`` under ``fn(SESSION, *args, **kwargs)``: ``f(5, 1)`` binds 5
    to ``session`` by the wrapped signature, but runs with it as ``x``. Unless every
    decorator between ``@cached`` and the function is read as passing the call on
    unchanged, ignored parameters count in the key, with a warning when decorated. Before,
    they were left out, and ``f(6, 1)`` returned ``f(5, 1)``'s value; and after the first
    readings of the bytecode, so it did under a partial, a runner, a branch spelling the
    arguments out or calling a partial, own parameters reassigned or copied into a keyword,
    a jump into the call (``(partial_ or fn)(*args)``), a keyword taken by the wrapper or
    popped from its ``**kwargs`` and passed on as another parameter, a wrapper passing the
    call on to one that moves an argument, or a ``singledispatch`` implementation of
    another layout."""
    from memojar import MemojarWarning, cached

    def load(session=None, x=0, y=0):
        return (session if isinstance(session, int) else "session", x, y)

    ignored, calls = _MOVED[kind]
    moved = _moving(kind)(load)
    with pytest.warns(MemojarWarning, match=rf"ignore=\('{ignored}',\) of .*load: memojar "
                      r"cannot read the decorator .* put that decorator above @cached"):
        f = cached(cache_dir=tmp_path / "c", ignore=(ignored,))(moved)
    expected = [moved(*args, **kwargs) for args, kwargs in calls]
    assert expected[0] != expected[1]
    assert [f(*args, **kwargs) for args, kwargs in calls] == expected  # before: 2nd = 1st
    assert f.cache_info().misses == 2


def _chained(kind: str):
    """A decorated function, its ignored parameter, and two calls whose results differ
    only through it: where the chain reads as passing the call on unchanged but does not
    (a fifth attack's)."""
    import functools

    def same(fn):
        @functools.wraps(fn)
        def wrapper(session, *args, **kwargs):
            return fn(session, *args, **kwargs)
        return wrapper

    def reversing(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args[::-1], **kwargs)
        return wrapper

    if kind == "own parameter keyword-only there":
        def keyword(a=0, *, session=None):
            return (a, session)
        return same(keyword), "session", [((), {"session": 5}), ((), {"session": 6})]
    if kind == "lru_cache calling another":
        def pair(a, b=0, session=None):
            return (a, b, session)

        def moved(*args, **kwargs):
            return pair(*args[::-1], **kwargs)
        cached_pair = functools.wraps(pair)(functools.lru_cache(maxsize=None)(moved))
        return cached_pair, "session", [((1, 2, 5), {}), ((1, 2, 6), {})]
    if kind == "__signature__ None":
        def inner(session, a, b):
            return (session, a, b)

        @functools.wraps(inner)
        def wrapper(a, b, session=None, *args, **kwargs):
            return inner(a, b, session, *args, **kwargs)
        wrapper.__signature__ = None  # type: ignore[attr-defined]
        return wrapper, "session", [((1, 2, 5), {}), ((1, 2, 6), {})]

    def rotating(fn):  # a method's last argument passed on first after its instance
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(args[0], args[-1], *args[1:-1], **kwargs)
        return wrapper

    def method(self, a, b=0, session=None):
        return (a, b, session)

    if kind == "a partialmethod's function":
        class Holder:
            moved = functools.partialmethod(rotating(method))
        return Holder.moved, "session", [((None, 1, 2, 5), {}), ((None, 1, 2, 6), {})]
    if kind == "an instance calling by lru_cache":
        class Calling:
            __call__ = functools.lru_cache(maxsize=None)(rotating(method))
        return Calling(), "session", [((1, 2, 5), {}), ((1, 2, 6), {})]

    @reversing
    def reversed_pair(a, b=0, session=None):  # "a partial at the end"
        return (a, b, session)
    partial = _passing_on(functools.partial(reversed_pair))
    return partial, "session", [((1, 2, 5), {}), ((1, 2, 6), {})]


@pytest.mark.parametrize("kind", ["own parameter keyword-only there",
                                  "lru_cache calling another", "__signature__ None",
                                  "a partial at the end", "a partialmethod's function",
                                  "an instance calling by lru_cache"])
def test_ignore_under_a_chain_read_wrongly_before_keys_it(tmp_path: Path, kind: str) -> None:
    """Chains a fifth attack found read as passing the call on unchanged: a wrapper's own
    positional parameter named as a keyword-only one of the function (``session=5`` is
    the wrapper's, passed on first, where ``a`` is); ``lru_cache`` calling another
    function than the ``__wrapped__`` a ``functools.wraps`` over it names; a
    ``__signature__`` of None (``inspect`` then reads that wrapper's own code); a partial
    at the chain's end (``inspect`` goes on into its function's chain); and, from a sixth,
    a ``functools.partialmethod``'s function, or an instance whose ``__call__`` is an
    ``lru_cache`` (bound by the signature of the function down its chain, never checked).
    Now each keys the ignored parameter, with a warning when decorated."""
    from memojar import MemojarWarning, cached

    chained, ignored, calls = _chained(kind)
    with pytest.warns(MemojarWarning, match="cannot read the decorator"):
        f = cached(cache_dir=tmp_path / "c", ignore=(ignored,))(chained)
    expected = [chained(*args, **kwargs) for args, kwargs in calls]
    assert expected[0] != expected[1]
    assert [f(*args, **kwargs) for args, kwargs in calls] == expected


def _through(kind: str):
    """A decorator whose wrapper passes the call on unchanged."""
    import functools

    def through(fn):
        if kind == "wrapt":
            wrapt = pytest.importorskip("wrapt")

            @wrapt.decorator
            def wrapped_call(wrapped, instance, args, kwargs):
                return wrapped(*args, **kwargs)
            return wrapped_call(fn)
        if kind == "(*args, **kwargs)":
            def wrapper(*args, **kwargs):
                return fn(*args, **kwargs)
        elif kind == "logs its name and retries":
            def wrapper(*args, **kwargs):
                print("calling", fn.__qualname__)
                for _ in range(3):
                    try:
                        return fn(*args, **kwargs)
                    except ConnectionError:
                        pass
                raise ConnectionError
        else:
            def wrapper(x, *args, **kwargs):
                return fn(x, *args, **kwargs)
        return functools.wraps(fn)(wrapper)
    return through


@pytest.mark.parametrize("kind", ["(*args, **kwargs)", "logs its name and retries",
                                  "(x, *args, **kwargs)", "wrapt"])
def test_ignore_under_decorators_passing_the_call_on_unchanged_leaves_it_out(
    tmp_path: Path, kind: str
) -> None:
    """Wrappers whose code uses ``*args`` and ``**kwargs`` only to call ``fn(*args,
    **kwargs)``, or ``fn(x, *args, **kwargs)`` with their own positional parameters in
    order (wrapt's calling ``wrapped``), read from their bytecode down the chain: an
    ignored parameter is left out however given, without a warning."""
    import warnings

    from memojar import cached

    @cached(cache_dir=tmp_path / "c", ignore=("verbose",))
    @_through(kind)
    def f(x, verbose=False):
        return x * 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(3, True) == f(3, False) == f(3, verbose=None) == f(3) == 6
    assert f.cache_info().misses == 1


@pytest.mark.parametrize("kind", ["logs its arguments", "a class of update_wrapper",
                                  "lru_cache"])
def test_ignore_under_a_decorator_not_read_keys_it_though_it_passes_the_call_on(
    tmp_path: Path, kind: str
) -> None:
    """A wrapper that hands its ``*args`` to anything but the call (a logger), or is not a
    function (a class's ``__call__``, ``lru_cache``, whose ``__wrapped__`` may name another
    function than it calls), is not read as passing the call on unchanged, even where it
    does: ignored parameters count in the key (an extra computation), with a warning when
    decorated."""
    import functools

    from memojar import MemojarWarning, cached

    def unread(fn):
        if kind == "lru_cache":
            return functools.lru_cache(fn)
        if kind == "logs its arguments":
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                print("calling with", args)
                return fn(*args, **kwargs)
            return wrapper

        class Logged:
            def __init__(self, fn):
                self.fn = fn
                functools.update_wrapper(self, fn)

            def __call__(self, *args, **kwargs):
                return self.fn(*args, **kwargs)
        return Logged(fn)

    def double(x, verbose=False):
        return x * 2

    with pytest.warns(MemojarWarning, match="cannot read the decorator"):
        f = cached(cache_dir=tmp_path / "c", ignore=("verbose",))(unread(double))
    assert f(3, True) == f(3, False) == f(3, False) == 6
    assert f.cache_info().misses == 2


def test_a_wrapper_given_more_defaults_than_it_has_parameters_is_cached(
    tmp_path: Path
) -> None:
    """tenacity copies the wrapped function's ``__defaults__`` onto its ``(*args, **kw)``
    wrapper, whose code never uses them. Before, decorating raised ValueError ("zip()
    argument 2 is longer than argument 1")."""
    import functools

    from memojar import cached

    def g(x, y=0):
        return x + y

    def wrapper(*args, **kw):
        return g(*args, **kw)

    functools.wraps(g, (*functools.WRAPPER_ASSIGNMENTS, "__defaults__"))(wrapper)
    f = cached(cache_dir=tmp_path / "c")(wrapper)
    assert f(1) == f(1) == 1
    assert f.cache_info().misses == 1


def test_an_unpicklable_argument_ignored_under_a_decorator_not_read_says_what_to_do(
    tmp_path: Path
) -> None:
    """An ignored parameter that counts in the key under a decorator not read as passing
    the call on unchanged: where it cannot be pickled (a connection), the error says why
    it counts and what to do, not "leave it out with ignore=", which the call has."""
    import threading

    from memojar import MemojarWarning, cached

    def query(db, sql):
        return sql.upper()

    with pytest.warns(MemojarWarning):
        f = cached(cache_dir=tmp_path / "c", ignore=("db",))(
            _moving("drops the first")(query))
    with pytest.raises(TypeError, match=r"argument 'db' of .*query cannot be pickled.*"
                                        r"ignore=\('db',\) cannot leave it out.*put that "
                                        r"decorator above @cached"):
        f(threading.Lock(), "select")


def test_files_under_a_decorator_not_read_warns_at_decoration(tmp_path: Path) -> None:
    """``files=("path",)`` under ``fn(SESSION, *args, **kwargs)``: the argument in
    ``path``'s place is another parameter, and the file the function reads is not hashed.
    Said when decorated, with what to do."""
    from memojar import MemojarWarning, cached

    def read(session, path):
        return Path(path).read_text()

    with pytest.warns(MemojarWarning, match=r"files=\('path',\) of .*read: .*the file "
                      r"hashed may be another argument's; put that decorator above"):
        cached(cache_dir=tmp_path / "c", files=("path",))(_moving("adds one first")(read))


def test_key_under_a_decorator_not_read_warns_at_decoration(tmp_path: Path) -> None:
    """``key=`` under ``fn(SESSION, *args, **kwargs)`` is called with the arguments where
    the wrapped signature puts them (``session=5`` for ``f(5, 1)``): one returning less
    than all of them may leave out what the result depends on. Said when decorated; not
    under a wrapper that passes the call on unchanged."""
    import warnings

    from memojar import MemojarWarning, cached

    def load(session, x, y=0):
        return (x, y)

    with pytest.warns(MemojarWarning, match=r"key= of .*load: .*may leave out what the "
                      r"result depends on"):
        cached(cache_dir=tmp_path / "c", key=lambda session, x, y: (x, y))(
            _moving("adds one first")(load))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached(cache_dir=tmp_path / "c", key=lambda session, x, y: (x, y))(
            _passing_on(load))


@pytest.mark.parametrize("injected", ["keyword", "positional"])
def test_a_wrapper_that_completes_the_call_itself_is_called(
    tmp_path: Path, injected: str
) -> None:
    """A wrapper that passes an argument of its own (``fn(*args, db=DB, **kwargs)``,
    ``fn(SESSION, *args, **kwargs)``): a call the wrapped function's signature rejects is
    keyed as given. Before, it raised that signature's TypeError ("missing 1 required
    argument"), where the call runs uncached."""
    import functools

    from memojar import cached

    rates = {"rate": 3}

    def price(db, qty):
        return db["rate"] * qty

    def through(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if injected == "keyword":
                return fn(*args, db=rates, **kwargs)
            return fn(rates, *args, **kwargs)
        return wrapper

    f = cached(cache_dir=tmp_path / "c")(through(price))
    call = {"qty": 5} if injected == "keyword" else {}
    args = () if injected == "keyword" else (5,)
    assert f(*args, **call) == f(*args, **call) == 15  # before: TypeError
    assert f.cache_info().misses == 1
    assert f(*args[:0], qty=7) == 21


def test_a_singledispatch_implementations_own_default_is_kept(tmp_path: Path) -> None:
    """``functools.singledispatch`` binds by the generic function's signature, but each
    implementation runs with its own defaults. Before, describe(3, verbose=False) returned
    describe(3)'s value, computed with the int implementation's verbose=True."""
    import functools

    @functools.singledispatch
    def describe(x, verbose=False):
        return ("any", verbose)

    @describe.register
    def _(x: int, verbose=True):
        return ("int", verbose)

    from memojar import cached

    f = cached(cache_dir=tmp_path / "c")(describe)
    assert f(3) == ("int", True)
    assert f(3, verbose=False) == ("int", False)  # before: ("int", True)


def test_key_of_a_wrapped_function_keys_the_call_apart_from_its_defaults(
    tmp_path: Path
) -> None:
    """``key=`` is called with the wrapped function's defaults applied; which arguments
    the call passed is keyed beside it, as without key=."""
    from memojar import MemojarWarning, cached

    with pytest.warns(MemojarWarning, match="key= of"):  # (kwargs.setdefault: not read)
        f = cached(cache_dir=tmp_path / "c", key=lambda n, seed: (n, seed))(
            _seeded(_sample))
    assert f(5) == (5, 42)
    assert f(5, seed=0) == (5, 0)  # before: (5, 42)


def test_ignore_and_files_of_a_wrapped_function_still_find_their_parameters(
    tmp_path: Path
) -> None:
    """The values are where they were (each default still in its place): ``files=``
    hashes the path's content, and an ignored parameter's passing is not keyed."""
    import functools

    def read(path, verbose=False, scale=1):
        return (Path(path).read_text(), scale)

    @functools.wraps(read)
    def through(*args, **kwargs):
        return read(*args, **kwargs)

    from memojar import cached

    data = tmp_path / "data.txt"
    data.write_text("a")
    f = cached(cache_dir=tmp_path / "c", files=("path",), ignore=("verbose",))(through)
    assert f(str(data)) == ("a", 1)
    assert f.cache_key(str(data)) == f.cache_key(str(data), verbose=True)
    data.write_text("b")
    assert f(str(data)) == ("b", 1)


def _tagging(fn):  # as _passing, tagging the value: its code fits _passing's closure
    import functools

    @functools.wraps(fn)
    def through(*args, **kwargs):
        return ("middle", fn(*args, **kwargs))

    return through


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
def test_defaults_reassigned_under_another_decorator_bind_the_new_default(
    tmp_path: Path, memory: int | None
) -> None:
    """The binder takes the signature, and defaults, of the function the other decorator
    wraps (``inspect.signature`` follows ``__wrapped__``). Before, only the wrapper's own
    defaults were watched: f(2) kept being keyed as f(2, 1), and returned its value."""
    from memojar import cached

    inner = _fresh(f"wrapped_defaults_{memory}")
    f = cached(cache_dir=tmp_path / "c", memory=memory)(_passing(inner))
    assert f(2) == f(2) == ("plus", 3)
    inner.__defaults__ = (5,)
    assert f(2) == f(2) == ("plus", 7)  # before: ("plus", 3)
    assert f(2, 1) == ("plus", 3)
    # the wrapper could pass another value where the call passed none: two calls
    assert f.cache_key(2) != f.cache_key(2, 5)


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
def test_a_decorators_own_defaults_reassigned_are_seen_by_the_calls_it_passes_on(
    tmp_path: Path, memory: int | None
) -> None:
    """A wrapper of ``functools.wraps`` with parameters of its own (``scale=1``): ``f(2)``
    binds by the wrapped function's signature, and runs with the wrapper's default.
    Before, only the wrapped function's defaults were watched: after
    ``f.__wrapped__.__defaults__ = (10,)`` f(2) kept returning the value of ``scale=1``."""
    import functools

    from memojar import cached

    def double(x):
        return x * 2

    @functools.wraps(double)
    def scaling(x, scale=1):
        return double(x) * scale

    f = cached(cache_dir=tmp_path / "c", memory=memory)(scaling)
    assert f(2) == f(2) == 4
    scaling.__defaults__ = (10,)
    assert f(2) == f(2) == 40  # before: 4
    assert f(2, 1) == 4


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
@pytest.mark.parametrize("layers", [1, 2])
def test_code_of_a_function_under_another_decorator_reassigned_is_seen(
    tmp_path: Path, memory: int | None, layers: int
) -> None:
    """The code of the function a ``functools.wraps`` decorator wraps (and of a decorator
    between it and ``@cached``) runs in every call. Before, only the outer wrapper's code
    was watched: after ``inner.__code__ = other.__code__`` f(2) kept returning the value of
    the old code, from the disk and from memory."""
    from memojar import cached

    inner = _fresh(f"wrapped_code_{memory}_{layers}")
    middle = _passing(inner)
    outer = _passing(middle) if layers == 2 else middle
    f = cached(cache_dir=tmp_path / "c", memory=memory)(outer)
    assert f(2, 3) == f(2, 3) == ("plus", 5)
    inner.__code__ = _times.__code__
    assert f(2, 3) == f(2, 3) == ("times", 6)  # before: ("plus", 5)
    if layers == 2:  # the decorator between: its code runs too
        middle.__code__ = _tagging(inner).__code__
        assert f(2, 3) == f(2, 3) == ("middle", ("times", 6))


class _Through:
    """A decorator of a class (``functools.update_wrapper``), as wrapt's and others are."""

    def __init__(self, fn):
        import functools

        functools.update_wrapper(self, fn)
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
def test_code_and_defaults_of_a_function_under_a_wrapper_object_reassigned_are_seen(
    tmp_path: Path, memory: int | None
) -> None:
    """A decorator that is an object, not a function (wrapt's ``FunctionWrapper``, a class
    of ``functools.update_wrapper``): the function it wraps runs, and binds the call.
    Before, nothing was watched: after ``inner.__code__ = other.__code__`` f(2, 3) kept
    returning the old code's value, and after ``inner.__defaults__ = (5,)`` f(2) was
    keyed, and answered, as f(2, 1)."""
    from memojar import cached

    inner = _fresh(f"wrapped_by_object_{memory}")
    f = cached(cache_dir=tmp_path / "c", memory=memory)(_Through(inner))
    assert f(2, 3) == f(2, 3) == ("plus", 5)
    assert f(2) == ("plus", 3)
    inner.__code__ = _times.__code__
    assert f(2, 3) == f(2, 3) == ("times", 6)  # before: ("plus", 5)
    inner.__defaults__ = (5,)
    assert f(2) == f(2) == ("times", 10)  # before: ("times", 2)
    assert f.cache_key(2) != f.cache_key(2, 5)  # (as above)


def _tagging_a(fn):
    """A decorator of ``functools.wraps`` whose calls return ``("a", *what fn returns)``."""
    import functools

    @functools.wraps(fn)
    def tagged(*args, **kwargs):
        return ("a", *fn(*args, **kwargs))

    return tagged


def _tagging_b(fn):
    """``_tagging_a`` of another code: ``("b", *what fn returns)``."""
    import functools

    @functools.wraps(fn)
    def tagged(*args, **kwargs):
        return ("b", *fn(*args, **kwargs))

    return tagged


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
@pytest.mark.parametrize("proxy", ["class", "wrapt"])
def test_code_of_a_decorator_under_a_wrapper_object_reassigned_is_seen(
    tmp_path: Path, memory: int | None, proxy: str
) -> None:
    """A decorator that is an object around a function of ``functools.wraps`` (wrapt's
    proxy around ``@my_decorator``): the code of that function runs too. Before, only the
    innermost function was watched: after ``middle.__code__ = other.__code__`` f(2, 3)
    kept returning the old decorator's value, from the disk and from memory, and so did
    another ``cached`` of the same object (the identity of the old code)."""
    from memojar import cached

    inner = _fresh(f"under_a_decorator_{memory}_{proxy}")
    middle = _tagging_a(inner)
    if proxy == "wrapt":
        wrapt = pytest.importorskip("wrapt")
        obj = wrapt.FunctionWrapper(middle, lambda wrapped, instance, args, kwargs:
                                    wrapped(*args, **kwargs))
    else:
        obj = _Through(middle)
    f = cached(cache_dir=tmp_path / "c", memory=memory)(obj)
    assert f(2, 3) == f(2, 3) == ("a", "plus", 5)
    middle.__code__ = _tagging_b(_plus).__code__
    assert f(2, 3) == f(2, 3) == ("b", "plus", 5)  # before: ("a", "plus", 5)
    g = cached(cache_dir=tmp_path / "c", memory=memory)(obj)
    assert g(2, 3) == ("b", "plus", 5)


def test_a_function_cached_again_after_its_code_was_reassigned_runs_the_new_code(
    tmp_path: Path,
) -> None:
    """A second ``cached`` of a function, made after its ``__code__`` was reassigned
    (the first's calls had walked what it depends on, for the old code): its first call
    returns the new code's value. Before, it read the old code's entry with an identity
    made of the walk of the old code, and returned its value."""
    from memojar import cached

    inner = _fresh("cached_again")
    assert cached(cache_dir=tmp_path / "c")(inner)(2, 3) == ("plus", 5)
    inner.__code__ = _times.__code__
    g = cached(cache_dir=tmp_path / "c")(inner)
    assert g(2, 3) == ("times", 6)  # before: ("plus", 5)
    assert g(2, 3) == ("times", 6)


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
@pytest.mark.parametrize("kind", ["positional", "keyword"])
def test_a_decorators_own_default_changed_in_place_is_keyed_by_its_content(
    tmp_path: Path, memory: int | None, kind: str
) -> None:
    """A wrapper's own default that may change in place (``def wrapper(x, opts=OPTS)``, a
    dict or list) counts in the key of every call, as a plain function's default does (its
    binder applies it). Before, a call bound by the wrapped function's signature left it
    out: after ``OPTS["scale"] = 10`` f(2) kept returning the value of ``scale=1``."""
    import functools

    from memojar import cached

    opts = {"scale": 1}

    def double(x):
        return x * 2

    if kind == "positional":
        @functools.wraps(double)
        def scaling(x, opts=opts):
            return double(x) * opts["scale"]
    else:
        @functools.wraps(double)
        def scaling(*args, opts=opts, **kwargs):  # type: ignore[misc]
            return double(*args, **kwargs) * opts["scale"]

    f = cached(cache_dir=tmp_path / "c", memory=memory)(scaling)
    assert f(2) == f(2) == 4
    opts["scale"] = 10
    assert f(2) == f(2) == 40  # before: 4
    opts["scale"] = 1
    assert f(2) == 4
    assert f.cache_info().misses == 2


def test_a_decorators_own_default_it_fills_itself_is_not_keyed(tmp_path: Path) -> None:
    """A wrapper's default it changes itself (a table of its own, ``_seen[key] = value``;
    ``calls.append(x)``) is not keyed by its content, which changes with each call: the
    second call hits."""
    import functools

    from memojar import cached

    def double(x):
        return x * 2

    @functools.wraps(double)
    def counting(x, _seen={}, calls=[]):  # noqa: B006 - its own tables, as in the test
        _seen[x] = len(calls)
        calls.append(x)
        return double(x)

    f = cached(cache_dir=tmp_path / "c")(counting)
    assert f(2) == f(2) == f(2) == 4
    assert f.cache_info()[:2] == (2, 1)


def test_defaults_given_to_a_function_without_any_make_the_short_call_bind(
    tmp_path: Path,
) -> None:
    from memojar import cached

    def bare(x, y):
        return x + y

    f = cached(cache_dir=tmp_path / "c", memory=4)(bare)
    assert f(2, 1) == 3
    bare.__defaults__ = (1,)
    assert f(2) == 3  # as bare(2) now does; before: TypeError from the stale binder
    with pytest.raises(TypeError, match="missing"):
        f()


_REASSIGNING_SCRIPT = '''
import sys
sys.path.insert(0, {folder!r})
from memojar import cached
import codemod

f = cached(cache_dir={cache!r})(codemod.f)
out = [f(1)]
if sys.argv[1] == "reassign":
    codemod.f.__code__ = codemod.other.__code__
    codemod.f.__defaults__ = (5,)
    out.append(f(2))
else:
    out.append(f(2))
print(out, f.cache_info().misses)
'''

_CODEMOD = '''
def f(x, y=1):
    return ["f", x, y]


def other(x, y=1):
    return ["other", x, y]
'''


def test_entries_of_reassigned_code_are_never_another_process_s_values(
    tmp_path: Path,
) -> None:
    """The first process reassigns code and defaults after its first call and computes a
    new call; a second process running the module's own code gets its own values for
    both calls (before: the first stored other(2, 5) as f(2)'s entry, under f's identity,
    and the second returned it as f(2))."""
    (tmp_path / "codemod.py").write_text(_CODEMOD)
    script = _REASSIGNING_SCRIPT.format(folder=str(tmp_path), cache=str(tmp_path / "c"))

    def run(mode: str) -> str:
        return run_python(script, mode).strip()

    assert run("reassign") == "[['f', 1, 1], ['other', 2, 5]] 2"
    # The new code's first store evicted f's entries, as an edited function's does; and
    # this process's first store evicts those of the reassigned code.
    assert run("plain") == "[['f', 1, 1], ['f', 2, 1]] 2"
    assert run("reassign") == "[['f', 1, 1], ['other', 2, 5]] 1"  # f(1) hits


_RELOADING_SCRIPT = '''
import importlib, sys
sys.path.insert(0, {folder!r})
from memojar import cached
import relmod

@cached(cache_dir={cache!r})
def f(x):
    return relmod.scale(x)

out = [f(1)]
if sys.argv[1] == "reload":  # relmod.py edited, then reloaded in this process
    with open(relmod.__file__, "w") as fh:
        fh.write(sys.argv[2])
    importlib.invalidate_caches()
    importlib.reload(relmod)
out.append(f(2))
out.append(f(1))
print(out)
'''

_RELMOD = """
def scale(x):
    return x * {k}
"""


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
def test_a_helper_module_reloaded_after_the_first_call_never_stores_for_the_old_code(
    tmp_path: Path, memory: int | None,
) -> None:
    """A script (or a dask worker: ``client.upload_file``) reloads an edited helper module
    after the function's first call: the next miss makes the identity again, so its value
    (of the new code) is stored under the new code's identity, and the calls after it check
    their entries against it. Before, it was stored under the identity of the first call,
    and a process running the old code (the edit undone) got ``f(2) == 20`` for ``x * 2``."""
    (tmp_path / "relmod.py").write_text(_RELMOD.format(k=2))
    script = _RELOADING_SCRIPT.format(folder=str(tmp_path), cache=str(tmp_path / "c"))
    if memory is not None:
        script = script.replace("@cached(cache_dir=", f"@cached(memory={memory}, cache_dir=")
    env = {"PYTHONDONTWRITEBYTECODE": "1"}

    assert run_python(script, "reload", _RELMOD.format(k=10), env=env).strip() == (
        "[2, 20, 10]")  # f(1) after the miss: the new code's value (before: 2)
    (tmp_path / "relmod.py").write_text(_RELMOD.format(k=2))  # the edit undone
    assert run_python(script, "plain", env=env).strip() == "[2, 4, 2]"  # before: [2, 20, 2]


_RELMOD_CLASS = """
class Scale:
    def of(self, x):
        return x * {k}
"""


_RELMOD_CACHED = """
import os
from memojar import cached

@cached(cache_dir=os.path.join(os.path.dirname(__file__), "helper-cache"))
def scale(x):
    return x * {k}
"""


_RELMOD_STATIC = """
class Scale:
    @staticmethod
    def of(x):
        return x * {k}
"""

_RELMOD_DATA = """
class Scale:
    factor = {k}
"""

_RELMOD_REBOUND = """
def scale(x):
    return x * 2

if {k} != 2:  # the edit binds the name to another function
    def times(x):
        return x * {k}

    scale = times
"""

_RELMOD_WRAPPED = """
def logged(function):  # a decorator without functools.wraps
    def wrapper(x):
        return function(x)
    return wrapper

@logged
def scale(x):
    return x * {k}
"""

_RELOADED_KINDS = {
    "function": (_RELMOD, "scale", "getattr(relmod, NAME)(x)"),
    "class": (_RELMOD_CLASS, "Scale", "getattr(relmod, NAME)().of(x)"),
    "cached function": (_RELMOD_CACHED, "scale", "getattr(relmod, NAME).__wrapped__(x)"),
    "class of a staticmethod": (_RELMOD_STATIC, "Scale", "getattr(relmod, NAME).of(x)"),
    "class of data": (_RELMOD_DATA, "Scale", "x * getattr(relmod, NAME).factor"),
    "name bound to another function": (_RELMOD_REBOUND, "scale", "getattr(relmod, NAME)(x)"),
    "wrapper without wraps": (_RELMOD_WRAPPED, "scale", "getattr(relmod, NAME)(x)"),
}


@pytest.mark.parametrize("memory", [None, 8], ids=["disk", "memory"])
@pytest.mark.parametrize("kind", list(_RELOADED_KINDS))
def test_a_depends_on_helper_whose_module_is_reloaded_is_followed_to_its_new_code(
    tmp_path: Path, memory: int | None, kind: str,
) -> None:
    """A helper the function finds by a name it computes (``getattr(relmod, NAME)``), so
    named in ``depends_on=``, whose module the script edits and reloads after the first
    call: the next miss makes the identity of the helper's new code, as for a helper the
    function calls by name. Before, the reload was seen but the identity was made again
    of the object ``depends_on`` held, the old code: ``f(2)`` of the new code was stored
    under the old identity, ``f(1)`` kept returning the old code's value, and a process
    running the old code (the edit undone) got ``f(2) == 20`` for ``x * 2``; and, until
    the helper was looked for by its module's name for it whatever it is, so too for a
    class of staticmethods or of data, a name bound to another function by the edit, or a
    wrapper (``deco.<locals>.wrapper``) the module binds at the helper's name."""
    source, named, run = _RELOADED_KINDS[kind]
    (tmp_path / "relmod.py").write_text(source.format(k=2))
    script = _RELOADING_SCRIPT.format(folder=str(tmp_path), cache=str(tmp_path / "c"))
    script = script.replace(
        "@cached(cache_dir=", f"NAME = {named!r}\n\n@cached(memory={memory}, "
        f"depends_on=(relmod.{named},), cache_dir=",
    ).replace("return relmod.scale(x)", f"return {run}")
    env = {"PYTHONDONTWRITEBYTECODE": "1"}

    assert run_python(script, "reload", source.format(k=10), env=env).strip() == (
        "[2, 20, 10]")  # before: [2, 20, 2]
    (tmp_path / "relmod.py").write_text(source.format(k=2))  # the edit undone
    assert run_python(script, "plain", env=env).strip() == "[2, 4, 2]"  # before: [2, 20, 2]


_KEYED_SCRIPT = """
import sys
from memojar import cached

if sys.argv[1] == "coarse":
    @cached(cache_dir={cache!r}, key=lambda x: x % 10)
    def f(x):
        return x * 2
else:  # the key function edited: calls it took for one (1 and 11) are two now
    @cached(cache_dir={cache!r}, key=lambda x: x % 100)
    def f(x):
        return x * 2

print(f(int(sys.argv[2])))
"""


def test_an_edited_key_function_never_returns_what_its_old_code_stored(
    tmp_path: Path,
) -> None:
    """``key=`` decides which calls share an entry: its code (and what it reads) is part of
    the function's identity, as ``depends_on=``'s callables are, so entries its old code
    stored are incompatible after an edit. Before, ``f(1)`` under ``x % 100`` returned 22,
    the value ``f(11)`` stored under ``x % 10``, which keys both calls as 1."""
    script = _KEYED_SCRIPT.format(cache=str(tmp_path / "c"))
    assert run_python(script, "coarse", "11").strip() == "22"
    assert run_python(script, "fine", "1").strip() == "2"  # before: 22
    assert run_python(script, "fine", "11").strip() == "22"


_BOUND_KEY_SCRIPT = """
import collections, functools, sys, threading, types
from memojar import cached

def key_mod(x, mod, lock=None):
    return x % mod

class Modulo:
    def __init__(self, mod, lock=None):
        self.mod = mod
        self.lock = lock

    def __call__(self, x):
        return x % self.mod

    def key_of(self, x):
        return x % self.mod

mod = int(sys.argv[2])
class Settings:
    __slots__ = ("mod", "lock")

    def __init__(self, mod, lock):
        self.mod, self.lock = mod, lock

class Service:  # the settings three objects down
    def __init__(self, settings):
        self.inner = types.SimpleNamespace(config=types.SimpleNamespace(settings=settings))

def key_of_settings(x, settings):
    return x % settings.mod

def key_of_table(x, table):
    return x % table["mod"]

def key_of_service(x, service):
    return x % service.inner.config.settings.mod

Pair = collections.namedtuple("Pair", "mod lock")
lock = threading.Lock()  # (cannot be pickled: counts by its type, the others by value)
key = {{"partial": functools.partial(key_mod, mod=mod), "instance": Modulo(mod),
        "method": Modulo(mod).key_of,
        "partial and a lock": functools.partial(key_mod, mod=mod, lock=lock),
        "instance and a lock": Modulo(mod, lock),
        "method and a lock": Modulo(mod, lock).key_of,
        "namedtuple and a lock": functools.partial(key_of_settings, settings=Pair(mod, lock)),
        "slots and a lock": functools.partial(key_of_settings, settings=Settings(mod, lock)),
        "ordered dict and a lock": functools.partial(
            key_of_table, table=collections.OrderedDict(mod=mod, lock=lock)),
        "nested and a lock": functools.partial(key_of_service,
                                               service=Service(Settings(mod, lock))),
        }}[sys.argv[1]]
del mod

@cached(cache_dir={cache!r}, key=key)
def f(x):
    return x * 2

print(f(int(sys.argv[3])))
"""


@pytest.mark.parametrize("bound", [
    "partial", "instance", "method", "partial and a lock", "instance and a lock",
    "method and a lock", "namedtuple and a lock", "slots and a lock",
    "ordered dict and a lock", "nested and a lock"])
def test_a_key_function_bound_otherwise_never_returns_what_it_stored_bound_before(
    tmp_path: Path, bound: str,
) -> None:
    """What is bound to a ``key=`` callable (a partial's arguments, a callable instance's
    or a bound method's object) decides which calls share an entry as its code does.
    Before, only the code was in the identity: ``f(1)`` under ``partial(key_mod,
    mod=100)`` returned 22, the value ``f(11)`` stored under ``mod=10`` (both keyed 1);
    and then, with a lock bound beside ``mod``, all that was bound counted by its type (in
    a namedtuple, ``__slots__`` or three objects down, after the first fix too)."""
    script = _BOUND_KEY_SCRIPT.format(cache=str(tmp_path / "c"))
    assert run_python(script, bound, "10", "11").strip() == "22"
    assert run_python(script, bound, "100", "1").strip() == "2"  # before: 22
    assert run_python(script, bound, "100", "11").strip() == "22"


class _Held:
    """An object of the user's code holding data beside a lock (so counted by its parts)."""

    def __init__(self, **parts: Any) -> None:
        import threading

        self.__dict__.update(parts)
        self.lock = threading.Lock()


def test_a_list_held_by_many_parts_of_a_bound_object_is_hashed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An object that cannot be pickled whole, each of whose 64 attributes holds one list
    of 100,000 numbers 64 times, has that list hashed once, not once per place it is held.
    Before, 4,096 times: its first call took 45 s."""
    from memojar import _identity, _keys

    hashed = []
    state_key = _keys._state_key
    monkeypatch.setattr(_keys, "_state_key", lambda value, left: (
        hashed.append(value), state_key(value, left))[1])
    big = list(range(100_000))
    held = _Held(**{f"a{i}": [big] * 64 for i in range(64)})
    shape = _identity.bound_shape(held)
    assert sum(value is big for value in hashed) == 1
    assert len(hashed) < 200  # the object, each attribute, the list, the lock
    assert shape == _identity.bound_shape(held)


def test_what_a_bound_object_may_hash_is_bounded_the_rest_counting_by_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What one bound object hashes is bounded in all (``WALK_ITEMS``; here 5,000 items,
    1,500 a state): its parts are hashed in the order of their names until that is spent,
    and the parts after count by their type. The same in every process: neither time nor
    the order the attributes were set in decides. Before, each part had its own bound and
    nothing bounded their sum (64 attributes of 64 lists of 100,000 numbers: 45 s)."""
    from memojar import _identity, _keys

    monkeypatch.setattr(_identity, "WALK_ITEMS", 5_000)
    monkeypatch.setattr(_keys, "_ITEMS_LIMIT", 1_500)

    def shape(changed: str = "", reverse: bool = False) -> Any:
        parts = {f"a{i}": list(range(1_000)) for i in range(10)}
        if changed:
            parts[changed] = list(range(1, 1_001))
        if reverse:
            parts = dict(reversed(parts.items()))
        return _identity.bound_shape(_Held(**parts))

    assert shape() == shape(reverse=True)
    assert shape("a0") != shape()  # hashed: within the bound
    assert shape("a2") != shape()
    assert shape("a9") == shape()  # past it: by its type


def _helper_with(table: list[int]) -> Any:
    def helper(x: int, table: list[int] = table) -> int:
        return table[x]

    return helper


def test_a_function_met_in_a_bound_objects_walk_keeps_its_own_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A function met while a bound object's parts are hashed (a helper in a list beside a
    lock) gets the identity it has anywhere else, made with its own limits, whatever is
    left of the object's budget (here 10 items): that identity is kept for the life of
    the process. Made with what was left, its default table of 1,000 numbers counted by
    its type, and two helpers differing in it shared one identity from then on."""
    from memojar import _identity

    monkeypatch.setattr(_identity, "WALK_ITEMS", 10)
    first, second = _helper_with(list(range(1_000))), _helper_with(list(range(1, 1_001)))
    _identity.bound_shape(_Held(helpers=[first]))
    _identity.bound_shape(_Held(helpers=[second]))
    made_inside = _identity.function_identity(first)
    assert made_inside != _identity.function_identity(second)
    _identity._function_ids.pop(first)
    assert _identity.function_identity(first) == made_inside


def test_an_object_shared_at_every_level_of_a_bound_object_makes_a_small_shape() -> None:
    """Four lists, each holding the next 256 times, the last a lock: the shape is made once
    per list and stays small. Before, each parent held the whole shape of each reference
    to its child: the first call ran for minutes and took 20 GB (found by an attack)."""
    import threading

    from memojar import _identity

    table = [[[[threading.Lock()]] * 256] * 256] * 256
    assert len(repr(_identity.bound_shape(table))) < 1_000


class _Level:
    """Data beside a lock, holding the next level."""

    def __init__(self, inner: Any) -> None:
        import threading

        self.a_data = list(range(200))
        self.inner = inner
        self.z_lock = threading.Lock()


def test_items_under_a_lock_count_once_toward_a_bound_objects_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ten chains of five levels, each level data beside a lock, hold 10,000 items in all:
    within a budget of 12,000, the setting after them still counts by value. Before, the
    attempt to hash each level whole (which the lock stops) was charged too, an item k
    levels down counted k + 1 times, and the setting counted by its type: a key object
    under another setting returned the first one's values (found by an attack)."""
    from memojar import _identity

    monkeypatch.setattr(_identity, "WALK_ITEMS", 12_000)

    def shape(mod: int) -> Any:
        chains = {}
        for c in range(10):
            level = None
            for _ in range(5):
                level = _Level(level)
            chains[f"c{c}"] = level
        return _identity.bound_shape(_Held(chains=chains, zz_mods={mod}))

    assert shape(10) == shape(10)
    assert shape(10) != shape(100)


def _step_with(shared: bytearray) -> Any:
    def step(x: int) -> int:
        return x + len(shared)

    return step


def test_a_state_captured_by_many_functions_of_a_bound_object_is_hashed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thousand closures beside a lock, each capturing one large value: its state is
    hashed once for all their identities. Before, once each: a thousand closures sharing an
    800 MB array took 26 s at the first call (found by an attack)."""
    import threading

    from memojar import _identity, _keys

    hashed = []
    state_key = _keys._state_key
    monkeypatch.setattr(_keys, "_state_key", lambda value, left: (
        hashed.append(value), state_key(value, left))[1])
    shared = bytearray(1_000_000)  # (bytes would count by value, as a constant)
    steps = [_step_with(shared) for _ in range(1_000)]
    _identity.bound_shape(_Held(steps=steps, lock=threading.Lock()))
    assert sum(value is shared for value in hashed) == 1


class _Opts(dict):
    """A user's dict subclass: its items and its attributes are settings."""


class _Unviewable(dict):
    @property
    def __dict__(self) -> Any:
        raise RuntimeError("no attribute view")


class _Private:
    __slots__ = ("__mod", "lock")

    def __init__(self, mod: int) -> None:
        import threading

        self.__mod = mod
        self.lock = threading.Lock()


def test_a_user_dict_counts_its_attributes_apart_from_its_items() -> None:
    """``Opts()`` with ``mode`` set as an attribute is not ``Opts(mode=...)``, which holds it
    as an item (``opts.get("mode")`` tells them apart); a dict subclass whose attribute view
    raises still counts by its items; a private slot (``__mod``, stored mangled) counts. Found
    by an attack of the first change that looked at a dict subclass's attributes."""
    import threading

    from memojar import _identity

    lock = threading.Lock()
    by_attribute = _Opts()
    by_attribute.mode, by_attribute.lock = "fast", lock
    assert (_identity.bound_shape(by_attribute)
            != _identity.bound_shape(_Opts(mode="fast", lock=lock)))
    assert (_identity.bound_shape(_Unviewable(mod=10, lock=lock))
            != _identity.bound_shape(_Unviewable(mod=100, lock=lock)))
    assert _identity.bound_shape(_Private(10)) != _identity.bound_shape(_Private(100))


_CLASS_CALL_KEY_SCRIPT = """
import sys
from memojar import cached

class ByMod:
    MOD = {mod}

    @classmethod
    def by_mod(cls, x):
        return x % cls.MOD

    __call__ = by_mod

@cached(cache_dir={cache!r}, key=ByMod())
def f(x):
    return x * 2

print(f(int(sys.argv[1])))
"""


def test_a_key_object_whose_call_is_a_classmethod_is_taken_and_follows_its_class(
    tmp_path: Path,
) -> None:
    """``__call__ = classmethod(...)``: the key takes ``f``'s arguments (before, refused as
    a key taking none), and its class edited never returns what it stored before."""
    cache = str(tmp_path / "c")
    tens = _CLASS_CALL_KEY_SCRIPT.format(cache=cache, mod=10)
    assert run_python(tens, "11").strip() == "22"
    assert run_python(tens, "1").strip() == "22"
    assert run_python(_CLASS_CALL_KEY_SCRIPT.format(cache=cache, mod=100), "1").strip() == "2"


_HELD_SETTINGS_KEY_SCRIPT = """
import functools, sys, threading
from memojar import cached

def by_mod(x, mod):
    return x % mod

def by_limit(x, held):
    return x % held.limit

class Mod:
    def __init__(self, m):
        self.m = m
    def __call__(self, x):
        return x % self.m

class Settings(dict):
    pass

class Steps(list):
    pass

kind, setting = sys.argv[1], int(sys.argv[2])  # (no global the key functions name)
if kind in ("partial", "object", "builtin"):  # __call__ = staticmethod(what holds it)
    class Key:
        __call__ = staticmethod({{"partial": functools.partial(by_mod, mod=setting),
                                  "object": Mod(setting),
                                  "builtin": functools.partial(pow, exp=1, mod=setting)}}[kind])
    key = Key()
else:  # a subclass of dict or list holding a lock, with the setting as an attribute
    held = Settings(lock=threading.Lock()) if kind == "dict" else Steps([threading.Lock()])
    held.limit = setting
    key = functools.partial(by_limit, held=held)

@cached(cache_dir={cache!r}, key=key)
def f(x):
    return x * 2

print(f(int(sys.argv[3])))
"""


@pytest.mark.parametrize("kind", ["partial", "object", "builtin", "dict", "list"])
def test_a_key_holding_its_setting_in_a_static_call_or_a_containers_attribute_follows_it(
    tmp_path: Path, kind: str,
) -> None:
    """A ``key=`` whose class says ``__call__ = staticmethod(...)`` of a partial, a callable
    object or a partial of a builtin counts by what that holds; a subclass of dict or list
    holding a lock counts by its attributes too. Before, the setting counted nowhere, and
    ``f(1)`` under ``mod=100`` returned 22, the value ``f(11)`` stored under ``mod=10``
    (found by an attack)."""
    script = _HELD_SETTINGS_KEY_SCRIPT.format(cache=str(tmp_path / "c"))
    assert run_python(script, kind, "10", "11").strip() == "22"
    assert run_python(script, kind, "100", "1").strip() == "2"


_CLASS_PARTIAL_SCRIPT = """
import functools, sys
from memojar import cached

def _scale(x, k):
    return x * k

def _mscale(self, x, k):
    return x * k

class M:
    op = functools.partial(_scale, k={k})
    mop = functools.partialmethod(_mscale, k={k})

    def run(self, x):
        return self.op(x) if sys.argv[1] == "partial" else self.mop(x)

@cached(cache_dir={cache!r})
def f(x):
    return M().run(x)

print(f(1))
"""


@pytest.mark.parametrize("kind", ["partial", "partialmethod"])
def test_a_class_partial_edited_in_its_keywords_never_returns_what_it_stored(
    tmp_path: Path, kind: str,
) -> None:
    """A class attribute ``partial(_scale, k=10)`` (or ``partialmethod``) edited to ``k=100``
    is another identity for the functions that use the class. Before, only the partial's
    positional arguments counted, and ``f(1)`` returned 10 (found by an attack)."""
    cache = str(tmp_path / "c")
    assert run_python(_CLASS_PARTIAL_SCRIPT.format(cache=cache, k=10), kind).strip() == "10"
    assert run_python(_CLASS_PARTIAL_SCRIPT.format(cache=cache, k=100), kind).strip() == "100"


_STATIC_CALL_KEY_SCRIPT = """
import sys
from memojar import cached

def by_mod(x):
    return x % {mod}

class ByMod:
    __call__ = staticmethod(by_mod)

@cached(cache_dir={cache!r}, key=ByMod())
def f(x):
    return x * 2

print(f(int(sys.argv[1])))
"""


def test_a_key_object_whose_call_is_a_staticmethod_is_taken_and_follows_its_code(
    tmp_path: Path,
) -> None:
    """A callable instance whose class says ``__call__ = staticmethod(by_mod)`` is a
    ``key=`` taking ``f``'s arguments (before, refused: ``inspect.signature`` reports
    ``()`` for it), and ``by_mod`` edited never returns what its old code stored."""
    cache = str(tmp_path / "c")
    tens = _STATIC_CALL_KEY_SCRIPT.format(cache=cache, mod=10)
    assert run_python(tens, "11").strip() == "22"
    assert run_python(tens, "1").strip() == "22"  # keyed 1 as f(11): its value
    assert run_python(_STATIC_CALL_KEY_SCRIPT.format(cache=cache, mod=100), "1").strip() == "2"


_LIBRARY_KEY_SCRIPT = """
import operator, sys
from memojar import cached

field = sys.argv[2]
key = {{"itemgetter": operator.itemgetter(field),
        "methodcaller": operator.methodcaller("get", field)}}[sys.argv[1]]

@cached(cache_dir={cache!r}, key=key)
def f(row):
    return row["id"] * 10 + row["uuid"]

print(f({{"id": int(sys.argv[3]), "uuid": int(sys.argv[4])}}))
"""


@pytest.mark.parametrize("kind", ["itemgetter", "methodcaller"])
def test_a_library_key_function_holding_another_field_never_returns_what_it_stored(
    tmp_path: Path, kind: str,
) -> None:
    """A ``key=`` from a library (``operator.itemgetter("id")``) counts by what it holds,
    not only by its name: under ``itemgetter("uuid")``, a row whose uuid is 1 is not the row
    whose id was 1. Before, both were ``operator.itemgetter`` to the identity, and ``f``
    returned 17, the value of ``{"id": 1, "uuid": 7}``."""
    script = _LIBRARY_KEY_SCRIPT.format(cache=str(tmp_path / "c"))
    assert run_python(script, kind, "id", "1", "7").strip() == "17"
    assert run_python(script, kind, "uuid", "3", "1").strip() == "31"  # before: 17
    assert run_python(script, kind, "uuid", "5", "1").strip() == "31"  # keyed by uuid: a hit


_BOUND_BUILTIN_KEY_SCRIPT = """
import sys
from memojar import cached

table = {{"a": {{1: "y", 2: "x"}}, "b": {{1: "x", 2: "y"}}}}[sys.argv[1]]

@cached(cache_dir={cache!r}, key=table.get)
def f(x):
    return x * 10

print(f(int(sys.argv[2])))
"""


def test_a_builtin_method_key_of_another_object_never_returns_what_it_stored(
    tmp_path: Path,
) -> None:
    """``key=table.get`` counts by its table: another table keys other calls together.
    Before, ``dict.get`` was all the identity saw, and ``f(2)`` under the second table
    (keyed "y", as ``f(1)`` under the first) returned 10."""
    script = _BOUND_BUILTIN_KEY_SCRIPT.format(cache=str(tmp_path / "c"))
    assert run_python(script, "a", "1").strip() == "10"
    assert run_python(script, "b", "2").strip() == "20"  # before: 10


_STEADY_KEY_SCRIPT = """
import functools, random, subprocess, sys, threading
from memojar import cached

class Client:  # a lock, a running thread and a child process beside the one setting
    def __init__(self, mod):
        self.mod = mod
        self.lock = threading.Lock()
        self.poller = threading.Thread(target=threading.Event().wait, args=(0.1,))
        self.poller.start()
        self.child = subprocess.Popen([sys.executable, "-c", "pass"])
        self.child.wait()

    def key_of(self, x):
        return x % self.mod

@cached(cache_dir={cache!r}, key=Client(10).key_of, depends_on=(random.random,))
def f(x):
    return x * 2

f(11)
print(f.cache_info().hits)
"""


def test_a_key_object_holding_a_thread_and_a_process_keys_every_run_alike(
    tmp_path: Path,
) -> None:
    """What a key object holds beside a lock counts by value, but a library's object in it
    that cannot be pickled (a thread, a process: their ids are this process's) by its type,
    and ``random.random`` (its module's generator, seeded anew in each process) by its
    name: the next run hits. After the first fix of a lock beside the settings, each run
    was an identity of its own, its first store sweeping the last run's entries."""
    script = _STEADY_KEY_SCRIPT.format(cache=str(tmp_path / "c"))
    assert run_python(script).strip() == "0"
    assert run_python(script).strip() == "1"


_IGNORING_SCRIPT = """
import sys
from memojar import cached

@cached(cache_dir={cache!r}, ignore=tuple(sys.argv[1].split(",")))
def f(a, b):
    return a * 10 + b

print(f(int(sys.argv[2]), int(sys.argv[3])))
"""


def test_another_parameter_ignored_never_returns_what_the_old_ignore_stored(
    tmp_path: Path,
) -> None:
    """``ignore=`` decides which arguments a key hashes: which names it takes is part of the
    identity, so that ``ignore=("a",)`` never reads what ``ignore=("b",)`` stored. Before,
    both hashed one value, ``f(5, 1)`` under ``ignore=("a",)`` hashed ``b=1`` as ``f(1, 9)``
    under ``ignore=("b",)`` hashed ``a=1``, and returned its 19."""
    script = _IGNORING_SCRIPT.format(cache=str(tmp_path / "c"))
    assert run_python(script, "b", "1", "9").strip() == "19"
    # the names as a set: ("b", "b") is ("b",) (before, another identity: recomputed, and
    # its first store swept the other's entries as older code)
    assert run_python(script, "b,b", "1", "4").strip() == "19"
    assert run_python(script, "a", "5", "1").strip() == "51"  # before: 19
    assert run_python(script, "a", "7", "1").strip() == "51"  # a is ignored: a hit


_RELOADED_MEANWHILE = '''
import importlib, sys, threading
sys.path.insert(0, {folder!r})
from memojar import cached
import relmod

def edit_and_reload():
    with open(relmod.__file__, "w") as fh:
        fh.write(sys.argv[2])
    importlib.invalidate_caches()
    importlib.reload(relmod)

@cached(cache_dir={cache!r})
def f(x):
    if sys.argv[1] == "reload":  # another thread reloads the edited helper meanwhile
        thread = threading.Thread(target=edit_and_reload)
        thread.start()
        thread.join()
    return relmod.scale(x)

print(f(1))
'''


def test_a_helper_module_reloaded_during_the_first_call_never_stores_for_the_old_code(
    tmp_path: Path,
) -> None:
    """Another thread reloads an edited helper module while the function's first call
    runs: that call's identity was walked (the old helper) after it had looked for the
    modules to watch (none yet), so the reload went unseen and the new code's value was
    stored under the old code's identity: a process running the old code got it."""
    (tmp_path / "relmod.py").write_text(_RELMOD.format(k=2))
    script = _RELOADED_MEANWHILE.format(folder=str(tmp_path), cache=str(tmp_path / "c"))
    env = {"PYTHONDONTWRITEBYTECODE": "1"}

    assert run_python(script, "reload", _RELMOD.format(k=10), env=env).strip() == "10"
    (tmp_path / "relmod.py").write_text(_RELMOD.format(k=2))  # the edit undone
    assert run_python(script, "plain", env=env).strip() == "2"  # before: 10

_RELOADED_PIPELINE = """
from memojar import cached
K = {k}

@cached(cache_dir={cache!r})
def f(x):
    return x * K
"""

_IMPORTING_SCRIPT = '''
import importlib, sys
sys.path.insert(0, {folder!r})
import pipemod
from pipemod import f  # held here: the old function, run in the reloaded module

out = [f(1)]
if sys.argv[1] == "reload":
    with open(pipemod.__file__, "w") as fh:
        fh.write(sys.argv[2])
    importlib.invalidate_caches()
    importlib.reload(pipemod)
out += [f(2), pipemod.f(3), f(3)]
print(out)
'''


def test_a_function_whose_own_module_is_reloaded_never_stores_for_its_old_globals(
    tmp_path: Path,
) -> None:
    """The module defining a cached function is reloaded with a constant edited: the
    function imported before (``from pipemod import f``) keeps its code and reads the new
    constant. Before, its misses stored ``x * 30`` under the identity made for ``K = 2``,
    and a process running ``K = 2`` got ``f(3) == 90``."""
    cache = str(tmp_path / "c")
    (tmp_path / "pipemod.py").write_text(_RELOADED_PIPELINE.format(k=2, cache=cache))
    script = _IMPORTING_SCRIPT.format(folder=str(tmp_path))
    env = {"PYTHONDONTWRITEBYTECODE": "1"}

    edited = _RELOADED_PIPELINE.format(k=30, cache=cache)
    assert run_python(script, "reload", edited, env=env).strip() == "[2, 60, 90, 90]"
    (tmp_path / "pipemod.py").write_text(_RELOADED_PIPELINE.format(k=2, cache=cache))
    assert run_python(script, "plain", env=env).strip() == "[2, 4, 6, 6]"  # before: 90s


def test_a_function_argument_whose_code_is_reassigned_is_another_key(tmp_path: Path) -> None:
    from memojar import cached

    @cached(cache_dir=tmp_path / "c")
    def apply(fn, x):
        return fn(x)

    arg = _fresh("argument")
    assert apply(arg, 2) == ("plus", 3)
    before = apply.cache_key(arg, 2)
    arg.__code__ = _times.__code__
    assert apply(arg, 2) == ("times", 2)  # before: ("plus", 3), the old code's entry
    arg.__defaults__ = (7,)
    assert apply(arg, 2) == ("times", 14)
    assert len({before, apply.cache_key(arg, 2)}) == 2


def test_a_wrapped_function_argument_whose_inner_code_is_reassigned_is_another_key(
    tmp_path: Path,
) -> None:
    """A function of ``functools.wraps`` given as an argument runs the function it wraps:
    its identity covers that function's code and defaults. Before, only the wrapper's own
    were compared with those its identity was made for: after ``inner.__code__ =
    other.__code__`` apply(wrapped, 2) kept the key, and the old code's value."""
    from memojar import cached

    @cached(cache_dir=tmp_path / "c")
    def apply(fn, x):
        return fn(x)

    inner = _fresh("wrapped_argument")
    wrapped = _passing(inner)
    assert apply(wrapped, 2) == ("plus", 3)
    before = apply.cache_key(wrapped, 2)
    inner.__code__ = _times.__code__
    assert apply(wrapped, 2) == ("times", 2)  # before: ("plus", 3), the old code's entry
    inner.__defaults__ = (7,)
    assert apply(wrapped, 2) == ("times", 14)  # before: ("times", 2)
    assert len({before, apply.cache_key(wrapped, 2)}) == 2


def test_a_global_deleted_by_another_thread_as_the_walk_reads_it_leaves_the_rest_tracked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A global of the function's module deleted by another thread between the walk's
    look for it and its read (a ``del`` of a module's temporary): the KeyError ended the
    walk, a warning said only its own code was tracked, and the identity left out its
    helper (an edit of it returned the old value). The global is read once: absent, it
    counts for nothing; the rest of the walk goes on."""
    import importlib
    import threading

    from memojar import _identity

    (tmp_path / "deleted_meanwhile.py").write_text(
        "GONE = 1\n"
        "def helper(x):\n"
        "    return x\n"
        "def f(x):\n"
        "    return helper(x) + (GONE if 'GONE' in globals() else 0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("deleted_meanwhile")
    walk, seen = _identity._walk_callable.__code__, []

    def deleting(frame: Any, event: str, arg: Any) -> Any:
        # the second line the walk runs with ``name`` bound to GONE: after its look
        if event == "line" and frame.f_locals.get("name") == "GONE":
            seen.append(frame.f_lineno)
            if len(seen) == 2:
                thread = threading.Thread(target=delattr, args=(module, "GONE"))
                thread.start()  # another thread, between the look and the read
                thread.join(10)
        return deleting

    def calls(frame: Any, event: str, arg: Any) -> Any:
        return deleting if event == "call" and frame.f_code is walk else None

    sys.settrace(calls)
    try:
        rows = _identity.dependencies(module.f)  # (the decorator's identity warned)
    finally:
        sys.settrace(None)
    assert not hasattr(module, "GONE")
    assert "deleted_meanwhile.helper" in [row[1] for row in rows]


def test_modules_that_import_each_other_are_walked_once_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nine modules each importing the eight others, and a function loading a helper of
    each through the first: a module is looked up once for the names the function loads.
    Before, each was walked again in every order the others reached it in (9! orders: 1.7 s
    at nine modules, 150 s at ten)."""
    from memojar import _identity

    count = 9
    for i in range(count):
        others = "".join(f"import cyc{j}\n" for j in range(count) if j != i)
        (tmp_path / f"cyc{i}.py").write_text(f"{others}def g{i}(x):\n    return x + {i}\n")
    body = " + ".join(f"cyc0.cyc{i}.g{i}(x)" for i in range(1, count))
    (tmp_path / "cycmain.py").write_text(f"import cyc0\ndef f(x):\n    return {body}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("cyc")]:
        monkeypatch.delitem(sys.modules, name)
    import cycmain  # type: ignore[import-not-found]

    walked = []
    real = _identity._walk_global

    def counted(*args: Any, **kwargs: Any) -> None:
        walked.append(args[1])
        real(*args, **kwargs)

    monkeypatch.setattr(_identity, "_walk_global", counted)
    rows = {name for _, name, _ in _identity.dependencies(cycmain.f)}
    assert {f"cyc{i}.g{i}" for i in range(1, count)} <= rows
    assert len(walked) < 1000, len(walked)
    for name in [n for n in sys.modules if n.startswith("cyc")]:
        del sys.modules[name]
