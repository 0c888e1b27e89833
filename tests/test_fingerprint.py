"""Edits the code fingerprint must see (issue 10, "Wrong values today" 1, 5 and 6).

Each test here compares the fingerprints (or keys) of two versions of a function that
return different results: equal fingerprints would serve one version's results to the
other. Run on every Python 3.10-3.13 present (the bytecode differs between them).
"""

from __future__ import annotations

import functools
import itertools
import sys
import textwrap
import types
from pathlib import Path

import pytest

from memojar._identity import code_fingerprint
from memojar._keys import make_key

_counter = itertools.count()


def module(source: str, name: str | None = None) -> types.ModuleType:
    """Run ``source`` as a module registered in ``sys.modules`` (as an edited and re-run
    module or notebook cell would be: same name, new code)."""
    name = name or f"fp_user_{next(_counter)}"
    mod = types.ModuleType(name)
    mod.__file__ = f"/home/user/project/{name}.py"
    sys.modules[name] = mod
    exec(compile(textwrap.dedent(source), mod.__file__, "exec"), mod.__dict__)
    return mod


def fp(source: str, name: str, attr: str = "f") -> str:
    return code_fingerprint(getattr(module(source, name), attr))


def differ(old: str, new: str, attr: str = "f") -> None:
    """The same module name for both: an edit, not another function."""
    name = f"fp_edit_{next(_counter)}"
    assert fp(old, name, attr) != fp(new, name, attr)
    assert fp(old, name, attr) == fp(old, name, attr)


# --- keyword names, the exception table, defaults ------------------------------------------

def test_keyword_names_of_a_call_count() -> None:
    """3.11: dis leaves KW_NAMES' operand unresolved."""
    differ("def f(g, x):\n    return g(a=x)\n", "def f(g, x):\n    return g(b=x)\n")


def test_keyword_names_of_a_method_call_count() -> None:
    differ("def f(df, c):\n    return df.drop(columns=c)\n",
           "def f(df, c):\n    return df.drop(index=c)\n")


TRY_BODY = """
def f(g, h):
    try:
        x = g()
        h()
    except ValueError:
        return None
    else:
        return x
"""

TRY_ELSE = """
def f(g, h):
    try:
        x = g()
    except ValueError:
        return None
    else:
        h()
        return x
"""


def test_a_call_moved_from_try_to_else_counts() -> None:
    """3.11+: the bytecode can be identical; only the exception table tells them apart."""
    differ(TRY_BODY, TRY_ELSE)


def test_defaults_count() -> None:
    differ('def f(x, method="mean"):\n    return (x, method)\n',
           'def f(x, method="max"):\n    return (x, method)\n')


def test_keyword_only_defaults_count() -> None:
    differ("def f(x, *, n=1):\n    return x * n\n", "def f(x, *, n=2):\n    return x * n\n")


# --- decorators between @cached and the function ------------------------------------------

DECORATED = """
import functools

def deco(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper

@deco
@deco
def f(x):
    return x + {n}
"""


def test_two_wraps_layers_are_followed() -> None:
    differ(DECORATED.format(n=1), DECORATED.format(n=2))


def test_lru_cache_wrapper_is_followed() -> None:
    source = "import functools\n@functools.lru_cache\ndef f(x):\n    return x + {n}\n"
    differ(source.format(n=1), source.format(n=2))


def test_a_wrapper_class_without_code_is_followed() -> None:
    source = """
import functools

class Traced:
    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)
    def __call__(self, *args):
        return self.fn(*args)

@Traced
def f(x):
    return x * {n}
"""
    differ(source.format(n=2), source.format(n=3))


# --- what closures capture, recursively ---------------------------------------------------

FACTORY = """
import functools

def adder(n):
    def add(x):
        return x + n
    return add

class Model:
    def __init__(self, w):
        self.w = w
    def predict(self, x):
        return self.w * x

def power(x, p):
    return x ** p

def make(fn):
    def f(x):
        return fn(x) * 2
    return f
"""


@pytest.mark.parametrize(
    ("one", "two"),
    [
        pytest.param("adder(2)", "adder(3)", id="closure"),
        pytest.param("Model(2).predict", "Model(3).predict", id="bound-method"),
        pytest.param("functools.partial(power, p=2)", "functools.partial(power, p=3)",
                     id="partial"),
        pytest.param("make(adder(2))", "make(adder(3))", id="closure-of-a-closure"),
    ],
)
def test_captured_callables_count_with_what_they_hold(one: str, two: str) -> None:
    mod = module(FACTORY, "fp_factory")
    first, second = eval(f"make({one})", mod.__dict__), eval(f"make({two})", mod.__dict__)
    assert first(5) != second(5)  # really different functions
    assert code_fingerprint(first) != code_fingerprint(second)


def test_equal_captured_callables_give_equal_fingerprints() -> None:
    one, two = module(FACTORY, "fp_factory"), module(FACTORY, "fp_factory")
    assert code_fingerprint(one.make(one.adder(2))) == code_fingerprint(two.make(two.adder(2)))
    assert code_fingerprint(one.make(one.Model(2).predict)) == code_fingerprint(
        two.make(two.Model(2).predict)
    )


def test_a_recursive_closure_does_not_loop() -> None:
    mod = module("def outer():\n    def f(n):\n        return 1 if n < 1 else f(n - 1)\n"
                 "    return f\n")
    assert len(code_fingerprint(mod.outer())) == 16


# --- functions, classes and callable objects passed as arguments ---------------------------

def _key_of_edited(source: str, attr: str, edits: tuple[str, str], call: str = "") -> tuple:
    name = f"fp_arg_{next(_counter)}"
    first = module(source, name)
    value_one = getattr(first, attr)
    key_one = make_key((eval(call, first.__dict__) if call else value_one, 10))
    second = module(source.replace(*edits), name)  # the same name, edited: a re-run cell
    value_two = getattr(second, attr)
    key_two = make_key((eval(call, second.__dict__) if call else value_two, 10))
    return key_one, key_two


def test_a_function_passed_as_an_argument_counts_by_its_code() -> None:
    one, two = _key_of_edited("def transform(x):\n    return x + 1\n", "transform",
                              ("x + 1", "x + 2"))
    assert one != two


def test_a_class_passed_as_an_argument_counts_by_its_methods() -> None:
    source = "class Scaler:\n    def apply(self, x):\n        return x * 2\n"
    one, two = _key_of_edited(source, "Scaler", ("x * 2", "x * 3"))
    assert one != two


def test_a_callable_object_passed_as_an_argument_counts_by_its_class_code() -> None:
    source = ("class Scaler:\n    def __init__(self, k):\n        self.k = k\n"
              "    def __call__(self, x):\n        return x * self.k\n")
    one, two = _key_of_edited(source, "Scaler", ("x * self.k", "x + self.k"), "Scaler(2)")
    assert one != two


def test_a_partial_passed_as_an_argument_counts_by_its_function_and_arguments() -> None:
    source = "import functools\ndef power(x, p):\n    return x ** p\n"
    mod = module(source)
    assert make_key((functools.partial(mod.power, p=2),)) != make_key(
        (functools.partial(mod.power, p=3),))
    one, two = _key_of_edited(source, "power", ("x ** p", "p ** x"),
                              "functools.partial(power, p=2)")
    assert one != two


def test_the_same_function_passed_twice_gives_one_key() -> None:
    mod = module("def transform(x):\n    return x + 1\n")
    assert make_key((mod.transform, 1)) == make_key((mod.transform, 1))
    other = module("def transform(x):\n    return x + 1\n")  # equal code, a new object
    assert make_key((other.transform, 1)) != make_key((mod.transform, 1))  # another name


def test_library_functions_and_classes_still_count_by_name() -> None:
    import json
    import os

    assert make_key((json.dumps,)) == make_key((json.dumps,))
    assert make_key((os.path.join,)) != make_key((os.path.split,))
    assert make_key((Path,)) != make_key((dict,))


def test_local_classes_count_with_what_their_methods_capture() -> None:
    mod = module("def make(k):\n    class Local:\n        def get(self):\n"
                 "            return k\n        def again(self):\n"
                 "            return super().__repr__()\n    return Local\n", "fp_local")
    assert make_key((mod.make(1)(),)) != make_key((mod.make(2)(),))
    assert make_key((mod.make(1),)) == make_key((mod.make(1),))
