"""Cache keys: binding, canonical ordering, types, buffers, unpicklable arguments."""

from __future__ import annotations

import contextlib
import functools
import json
import pickle
import re
import signal
import sys
import threading
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_python, views_left_in_a_collection
from memojar import cached
from memojar._keys import BIG_BUFFER, make_binder, make_key

np = pytest.importorskip("numpy")

hsettings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def key(*values: object) -> str:
    return make_key(values)


@dataclass
class Holder:
    """A custom object holding unordered containers."""

    tags: set = field(default_factory=set)
    table: dict = field(default_factory=dict)


class Tagged(dict):
    """A dict subclass with an attribute of its own."""


class Opaque:
    def __init__(self, items: object) -> None:
        self.items = items


# --- binding ------------------------------------------------------------------------------

def test_bound_arguments_with_defaults_give_one_key(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir)
    def f(x, y=1):
        return x + y

    keys = {f.cache_key(1), f.cache_key(1, 1), f.cache_key(x=1), f.cache_key(1, y=1),
            f.cache_key(y=1, x=1)}
    assert len(keys) == 1
    assert f.cache_key(1, 2) not in keys
    assert f.cache_key(2) not in keys


def test_binder_applies_defaults_and_spells_every_parameter_kind() -> None:
    def f(a, /, b, *args, c, d=4, **kw):
        pass

    bind = make_binder(f)
    assert bind(1, 2, c=3) == (1, 2, (), 3, 4, {})
    assert bind(1, 2, 9, c=3, d=5, z=6) == (1, 2, (9,), 3, 5, {"z": 6})
    with pytest.raises(TypeError):
        bind(1)  # missing b and c: the same error as calling f


def test_keyword_arguments_in_any_order_give_one_key() -> None:
    def f(**kw):
        pass

    bind = make_binder(f)
    assert make_key(bind(a=1, b=2)) == make_key(bind(b=2, a=1))


def test_ignore_leaves_parameters_out_of_the_key(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir, ignore=("verbose", "conn"))
    def f(x, verbose=False, conn=None):
        return x

    assert f.cache_key(1, verbose=True, conn=object()) == f.cache_key(1)
    assert f.cache_key(1) != f.cache_key(2)


def test_ignore_accepts_a_single_name(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir, ignore="verbose")
    def f(x, verbose=False):
        return x

    assert f.cache_key(1, True) == f.cache_key(1, False)


def test_key_function_replaces_the_arguments(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir, key=lambda path, mode="r": path.lower())
    def f(path, mode="r"):
        return path

    assert f.cache_key("A.txt", "rb") == f.cache_key("a.TXT")
    assert f.cache_key("a.txt") != f.cache_key("b.txt")


def test_key_function_returning_the_unpicklable_is_a_type_error(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir, key=lambda x: (threading.Lock(), x))
    def f(x):
        return x

    with pytest.raises(TypeError, match=r"key= of .*f returned a value that cannot be pickled"):
        f.cache_key(1)


# --- canonical containers -----------------------------------------------------------------

def test_dict_order_does_not_change_the_key() -> None:
    assert key({"a": 1, "b": 2}) == key({"b": 2, "a": 1})


def test_set_and_frozenset_order_does_not_change_the_key() -> None:
    words = [f"w{i}" for i in range(50)]
    assert key(set(words)) == key(set(reversed(words)))
    assert key(frozenset(words)) == key(frozenset(reversed(words)))
    assert key(set(words)) != key(frozenset(words))


def test_order_does_not_matter_at_any_depth() -> None:
    one = [{"outer": {"inner": {3, 2, 1}, "other": frozenset({"x", "y"})}}, ({"z": 1, "a": 2},)]
    two = [{"outer": {"other": frozenset({"y", "x"}), "inner": {1, 2, 3}}}, ({"a": 2, "z": 1},)]
    assert key(one) == key(two)


def test_sets_inside_sets_and_mixed_member_types() -> None:
    one = {frozenset({1, 2}), frozenset({"a", b"b"}), ("t", 1), None, 2.5}
    two = {2.5, None, ("t", 1), frozenset({b"b", "a"}), frozenset({2, 1})}
    assert key(one) == key(two)


def test_dataclass_holding_a_set_keys_by_content() -> None:
    assert key(Holder({"a", "b", "c"}, {"x": 1, "y": 2})) == key(
        Holder({"c", "b", "a"}, {"y": 2, "x": 1})
    )
    assert key(Holder({"a"})) != key(Holder({"b"}))


def test_plain_object_holding_nested_containers_keys_by_content() -> None:
    assert key(Opaque({"k": {1, 2}, "j": [{"b", "a"}]})) == key(
        Opaque({"j": [{"a", "b"}], "k": {2, 1}})
    )


def test_dict_subclasses_key_by_content() -> None:
    one, two = Tagged(), Tagged()
    one.update(a=1, b={"x", "y"})
    two.update(b={"y", "x"}, a=1)
    assert key(one) == key(two)
    assert key(Counter("abcab")) == key(Counter("bacba"))
    d1, d2 = defaultdict(list), defaultdict(list)
    d1["a"].append(1)
    d1["b"].append(2)
    d2["b"].append(2)
    d2["a"].append(1)
    assert key(d1) == key(d2)


def test_dict_subclass_differs_from_a_plain_dict() -> None:
    assert key(Tagged(a=1)) != key({"a": 1})


def test_ordered_dict_keeps_its_order_because_its_equality_does() -> None:
    one, two = OrderedDict(a=1, b=2), OrderedDict(b=2, a=1)
    assert one != two
    assert key(one) != key(two)


def test_equal_values_in_different_containers_differ() -> None:
    assert key([1, 2]) != key((1, 2))
    assert key({"a": 1}) != key([("a", 1)])
    assert key({1, 2}) != key([1, 2])


# --- types --------------------------------------------------------------------------------

def test_one_one_point_oh_and_true_are_different_keys() -> None:
    assert len({key(1), key(1.0), key(True)}) == 3


def test_one_one_point_oh_and_true_differ_as_dict_keys() -> None:
    assert len({key({1: "v"}), key({1.0: "v"}), key({True: "v"})}) == 3


def test_one_one_point_oh_and_true_differ_as_set_members() -> None:
    assert len({key({1}), key({1.0}), key({True}), key(frozenset({1})), key(frozenset({1.0}))}) \
        == 5


def test_str_and_bytes_differ() -> None:
    assert key("a") != key(b"a")
    assert key(b"a") != key(bytearray(b"a"))


def test_a_struct_keys_by_its_format() -> None:
    """Before, refused ("cannot pickle '_struct.Struct' object")."""
    import struct

    assert key(struct.Struct("<i")) == key(struct.Struct("<i"))
    assert key(struct.Struct("<i")) != key(struct.Struct(">i"))


def test_a_code_object_keys_by_its_code() -> None:
    """Before, refused ("cannot pickle 'code' object"); its line numbers do not count."""
    assert key(compile("x * 2", "<a>", "eval")) == key(compile("\nx * 2", "<b>", "eval"))
    assert key(compile("x * 2", "<a>", "eval")) != key(compile("x * 3", "<a>", "eval"))


def test_a_slice_is_keyed_by_what_it_holds_as_any_argument() -> None:
    """A slice was an atom, pickled plain whatever it held: a function of the user's code
    in it counted by its name alone (an edit kept the key), a dict in it by its insertion
    order, and a lambda in it was refused. A slice of atoms keeps its key."""
    import xxhash

    from memojar._keys import _plain_bytes

    assert key(slice({"a": 1, "b": 2})) == key(slice({"b": 2, "a": 1}))
    assert key(slice(None, [{"a", "b"}])) == key(slice(None, [{"b", "a"}]))
    double = lambda x: x * 2  # noqa: E731
    triple = lambda x: x * 3  # noqa: E731
    assert key(slice(double)) != key(slice(triple))
    assert key(slice(double)) == key(slice(double))
    for plain in (slice(1, 2), slice(None, "a", 2.5), slice(None)):
        assert key(plain) == xxhash.xxh3_128_hexdigest(_plain_bytes((plain,)))
        assert key(plain, [plain]) == xxhash.xxh3_128_hexdigest(_plain_bytes((plain, [plain])))
    assert key(slice(1, 2)) != key(slice(1, 3))
    assert key(slice(1, 2)) != key(slice(1.0, 2))


def test_a_function_in_a_slice_counts_by_its_code(tmp_path: Path) -> None:
    """Before, a new process given an edited function inside a slice got the value the
    old code computed (keyed by the function's name alone)."""
    main = tmp_path / "main.py"
    main.write_text(
        f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
        "from memojar import cached\n"
        "from helpers import scale\n"
        f"@cached(cache_dir={str(tmp_path / 'cache')!r})\n"
        "def apply(s):\n"
        "    return s.start(10)\n"
        "print(apply(slice(scale, None)))\n"
    )
    outputs = []
    for factor in (2, 3):
        (tmp_path / "helpers.py").write_text(f"def scale(x):\n    return x * {factor}\n")
        outputs.append(run_python(main.read_text()).strip())
    assert outputs == ["20", "30"]


# --- buffers ------------------------------------------------------------------------------

def test_numpy_arrays_key_by_content_dtype_and_shape() -> None:
    a = np.arange(1000, dtype=np.int64)
    assert key(a) == key(a.copy())
    assert key(a) != key(a.astype(np.int32))
    assert key(a) != key(a.reshape(10, 100))
    b = a.copy()
    b[500] += 1
    assert key(a) != key(b)


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "numpy"])
def test_large_buffers_hashed_out_of_band_key_by_content(kind: str) -> None:
    size = 4 * BIG_BUFFER + 3
    raw = bytes(range(256)) * (size // 256) + b"xyz"

    def make(data: bytes) -> object:
        if kind == "bytes":
            return bytes(data)
        if kind == "bytearray":
            return bytearray(data)
        if kind == "memoryview":
            return memoryview(bytearray(data))
        return np.frombuffer(data, dtype=np.uint8).copy()

    changed = bytearray(raw)
    changed[len(raw) // 2] ^= 1
    assert key(make(raw)) == key(make(bytes(raw)))
    assert key(make(raw)) != key(make(bytes(changed)))
    changed_last = bytearray(raw)
    changed_last[-1] ^= 0x80
    assert key(make(raw)) != key(make(bytes(changed_last)))


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "numpy"])
def test_large_buffers_go_out_of_band_not_into_the_pickle(kind: str) -> None:
    from memojar._keys import _dump, normalize

    raw = bytearray(8 * BIG_BUFFER)
    value = {"bytes": bytes(raw), "bytearray": raw, "memoryview": memoryview(raw),
             "numpy": np.frombuffer(raw, dtype=np.uint8)}[kind]
    buffers: list = []
    data = _dump(normalize((value,)), buffers.append)
    assert len(buffers) == 1
    assert memoryview(buffers[0]).nbytes == len(raw)
    assert len(data) < 1000  # the pickle holds a reference, not the contents


def test_large_bytes_types_stay_different() -> None:
    raw = bytes(2 * BIG_BUFFER)
    assert len({key(raw), key(bytearray(raw)), key(memoryview(raw))}) == 3


def test_small_and_large_buffers_of_different_lengths_differ() -> None:
    assert key(b"\0" * BIG_BUFFER) != key(b"\0" * (BIG_BUFFER + 1))
    assert key(b"\0" * (BIG_BUFFER - 1)) != key(b"\0" * BIG_BUFFER)


def test_two_buffers_do_not_run_into_each_other() -> None:
    a, b = b"a" * BIG_BUFFER, b"b" * BIG_BUFFER
    assert key(a + b"b", b[1:]) != key(a, b)


def test_memoryview_keys_by_format_and_shape() -> None:
    data = bytearray(range(16))
    view = memoryview(data)
    assert key(view) == key(memoryview(bytearray(range(16))))
    assert key(view) != key(view.cast("i"))
    assert key(view.cast("B", (4, 4))) != key(view)


def test_non_contiguous_views_key_by_content() -> None:
    data = memoryview(bytearray(range(200)))[::2]
    assert key(data) == key(memoryview(bytearray(range(0, 200, 2))))


def test_numpy_array_of_a_set_does_not_crash() -> None:
    arr = np.empty(1, dtype=object)
    arr[0] = {"a", "b"}
    assert len(key(arr)) == 32


# --- unpicklable arguments ----------------------------------------------------------------

def test_an_unpicklable_instance_is_not_told_to_be_ignored(cache_dir: Path) -> None:
    # Before: "leave it out with ignore=('self',)", which gives every instance the results
    # of the first one called (Model(2).predict(3) returning Model(5)'s value).
    import threading

    class Model:
        def __init__(self, k: int) -> None:
            self.k, self.lock = k, threading.Lock()

        @cached(cache_dir=cache_dir)
        def predict(self, x: int, scale: int = 1) -> int:
            return x * self.k * scale

    with pytest.raises(TypeError, match=r"argument 'self' of .*Model\.predict cannot be "
                                        r"pickled") as info:
        Model(2).predict(3)
    message = str(info.value)
    assert "ignore=('self',)" not in message and "__getstate__" in message
    assert "key=lambda self, x, scale: ..." in message


def test_unpicklable_argument_is_a_type_error_naming_the_parameter(cache_dir: Path) -> None:
    import threading

    @cached(cache_dir=cache_dir)
    def f(x, conn):
        return x

    with pytest.raises(TypeError, match=r"argument 'conn' of .*f cannot be pickled") as info:
        f(1, threading.Lock())
    assert "ignore=('conn',)" in str(info.value)
    assert "key=" in str(info.value)


@pytest.mark.parametrize(
    ("call", "named"), [(lambda f: f(1, 2, threading.Lock()), "args[1]"),
                        (lambda f: f(1, a=2, conn=threading.Lock()), "options['conn']")],
    ids=["star-args", "star-star-options"])
def test_an_unpicklable_item_of_star_args_is_named_and_ignore_is_not_suggested(
        cache_dir: Path, call: Any, named: str) -> None:
    # Before: "argument 'args' of f cannot be pickled ...; leave it out with
    # ignore=('args',)": ignoring *args (or **options) whole keys every call on the other
    # arguments alone, so f(1, 2, lock) and f(1, 3, lock) would share one result.
    @cached(cache_dir=cache_dir)
    def f(x, *args, **options):
        return x

    with pytest.raises(TypeError, match=rf"argument {re.escape(named)} of .*f cannot be "
                                        "pickled") as info:
        call(f)
    message = str(info.value)
    assert "leave it out with" not in message and "key=lambda x, *args, **options: ..." in message
    assert "share one result" in message


def test_unpicklable_argument_error_names_a_nested_one(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir)
    def f(x, options):
        return x

    with pytest.raises(TypeError, match="'options'"):
        f(1, {"callback": threading.Lock()})


def test_unpicklable_argument_computes_nothing(cache_dir: Path) -> None:
    calls = []

    @cached(cache_dir=cache_dir)
    def f(x):
        calls.append(x)
        return 1

    with pytest.raises(TypeError, match="ignore="):
        f(threading.Lock())
    assert calls == []



class _RefusesPickling:
    def __reduce__(self) -> Any:
        raise RuntimeError("this handle is closed")


@pytest.mark.parametrize(
    "make", [lambda: __import__("ctypes").pointer(__import__("ctypes").c_int(1)),
             _RefusesPickling],
    ids=["ctypes-pointer-ValueError", "reduce-raises-RuntimeError"],
)
def test_argument_whose_pickling_raises_another_error_is_a_type_error_too(
    cache_dir: Path, make: Any
) -> None:
    # Only PicklingError, TypeError and AttributeError were turned into the TypeError naming
    # the parameter: a ctypes pointer's ValueError ("ctypes objects containing pointers
    # cannot be pickled") or a __reduce__'s own error reached the caller bare.
    calls = []

    @cached(cache_dir=cache_dir)
    def f(x, handle):
        calls.append(x)
        return x

    with pytest.raises(TypeError, match=r"argument 'handle' of .*f cannot be pickled .*"
                                        r"ignore=\('handle',\)") as info:
        f(1, make())
    assert isinstance(info.value.__cause__, (ValueError, RuntimeError))
    assert calls == []


class _Interrupted:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self) -> Any:
        if isinstance(self.error, MemoryError):
            raise self.error

        def on_alarm(signum: int, frame: Any) -> None:  # as Python calls a signal handler
            raise self.error

        on_alarm(signal.SIGALRM, sys._getframe())
        raise AssertionError("unreachable")


@pytest.mark.parametrize("error", [TimeoutError("the caller's alarm"), MemoryError()],
                         ids=["signal-handler-TimeoutError", "MemoryError"])
def test_an_error_not_of_the_argument_while_keying_reaches_the_caller_as_it_is(
    cache_dir: Path, error: BaseException
) -> None:
    # The caller's SIGALRM handler raising TimeoutError while a big argument is pickled,
    # or memory running out, is no "cannot be pickled" TypeError: it propagates untouched.
    @cached(cache_dir=cache_dir)
    def f(x):
        return x

    with pytest.raises(type(error)) as info:
        f(_Interrupted(error))
    assert info.value is error

# --- hypothesis ---------------------------------------------------------------------------

atoms = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8),
    st.binary(max_size=8),
)
hashables = st.recursive(
    atoms, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4), max_leaves=8
)
values = st.recursive(
    hashables,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(hashables, inner, max_size=4)
    | st.sets(hashables, max_size=4)
    | st.builds(Holder, st.sets(hashables, max_size=4), st.dictionaries(st.text(), inner,
                                                                          max_size=3)),
    max_leaves=20,
)


def reordered(value: object, rnd) -> object:
    """An equal copy of ``value`` whose dicts and sets were filled in another order."""
    t = type(value)
    if t is dict:
        items = [(reordered(k, rnd), reordered(v, rnd)) for k, v in value.items()]
        rnd.shuffle(items)
        return dict(items)
    if t in (set, frozenset):
        items = [reordered(x, rnd) for x in value]
        rnd.shuffle(items)
        # Rebuild through an intermediate set of another size so the hash table differs
        # (fillers no value holds: numbers could be the value's own items).
        fillers = [object() for _ in range(3 * len(items))]
        out = set(fillers)
        out.update(items)
        out.difference_update(fillers)
        return t(out)
    if t is list:
        return [reordered(x, rnd) for x in value]
    if t is tuple:
        return tuple(reordered(x, rnd) for x in value)
    if t is Holder:
        return Holder(reordered(value.tags, rnd), reordered(value.table, rnd))
    return value


@hsettings
@given(values, st.randoms(use_true_random=False))
def test_equal_values_built_in_another_order_give_equal_keys(value: object, rnd) -> None:
    other = reordered(value, rnd)
    assert other == value
    assert key(other) == key(value)


def _typed(value: object) -> tuple:
    """What a key must tell apart: a value together with the types inside it."""
    t = type(value)
    if t in (list, tuple):
        return (t.__name__, tuple(_typed(x) for x in value))
    if t in (set, frozenset):
        return (t.__name__, frozenset(_typed(x) for x in value))
    if t is dict:
        return ("dict", frozenset((_typed(k), _typed(v)) for k, v in value.items()))
    if t is Holder:
        return ("Holder", _typed(value.tags), _typed(value.table))
    if t is float:
        return ("float", repr(value))  # 0.0 and -0.0 are different keys, and may be
    return (t.__name__, value)


@hsettings
@given(values, values)
def test_values_that_differ_in_value_or_type_give_different_keys(a: object, b: object) -> None:
    if _typed(a) != _typed(b):
        assert key(a) != key(b)
    else:
        assert key(a) == key(b)


@hsettings
@given(st.sampled_from([0, 1, -1, 2]), st.sampled_from([int, float, bool, str]),
       st.sampled_from([int, float, bool, str]))
def test_same_number_of_different_types_gives_different_keys(n: int, t1: type, t2: type) -> None:
    if t1 is t2 or (bool in (t1, t2) and n not in (0, 1)):
        return
    a, b = t1(n), t2(n)
    assert key(a) != key(b)
    assert key({a: 0}) != key({b: 0})
    assert key({a}) != key({b})


# --- across processes ---------------------------------------------------------------------

_SEED_SCRIPT = """
import json
import pickle
from dataclasses import dataclass
from memojar._keys import make_key

class Holder:
    def __init__(self, tags):
        self.tags = tags

words = [f"word{i}" for i in range(40)]
cases = {
    "set of str": ({*words},),
    "dict with str keys": ({w: i for i, w in enumerate(words)},),
    "nested frozensets": (frozenset({frozenset(words[:10]), frozenset(words[10:20]),
                                     frozenset({"a", frozenset({"b", "c"})})}),),
    "object holding a set": (Holder(set(words)),),
    "mixed": ({"k": {1, "1", 1.5, b"1", (2, "x")}},),
}
print(json.dumps({name: make_key(values) for name, values in cases.items()}))
"""


def test_keys_are_identical_under_different_hash_seeds() -> None:
    results = [
        json.loads(run_python(_SEED_SCRIPT, env={"PYTHONHASHSEED": seed}))
        for seed in ("0", "1", "12345", "4294967295")
    ]
    assert len(results[0]) == 5
    for result in results[1:]:
        assert result == results[0]


def test_hash_seed_script_really_changes_set_order() -> None:
    """Guard for the test above: the seeds do change iteration order of str sets."""
    code = "print(list({f'word{i}' for i in range(40)}))"
    orders = {run_python(code, env={"PYTHONHASHSEED": s}) for s in ("1", "2")}
    assert len(orders) == 2


def test_classes_made_at_run_time_are_not_kept_by_the_keys() -> None:
    """A program that makes a class per call (a namedtuple, a dataclass factory) and passes
    its instances as arguments: the key maker kept each class for good (its per-type
    reducer table), and with it everything the class holds. The table is bounded."""
    import gc
    import weakref

    made = []
    for i in range(2000):
        cls = type(f"Made{i}", (), {"value": i})
        made.append(weakref.ref(cls))
        key(cls())
        del cls
    gc.collect()
    alive = sum(ref() is not None for ref in made)
    assert alive <= 1100, f"{alive} classes made at run time still alive"


def test_classes_cloudpickle_made_are_not_kept_by_their_identity(cache_dir: Path) -> None:
    """A worker (loky, a notebook's ``Parallel``) loads a class of ``__main__`` sent by
    value with each batch, and a cached call takes it: the class's identity, kept under the
    class weakly, held the classes and their members as they were (to see cloudpickle set
    them again), which hold the class: 300 classes loaded and dropped, 300 alive."""
    import gc
    import pickle
    import weakref

    cloudpickle = pytest.importorskip("cloudpickle")
    f = cached(cache_dir=cache_dir)(lambda c: c.value)
    made = []
    for i in range(300):
        sent = type(f"Sent{i}", (), {"__module__": "__main__", "value": i,
                                     "twice": lambda self: 2 * self.value})
        loaded = pickle.loads(cloudpickle.dumps(sent))
        del sent
        made.append(weakref.ref(loaded))
        assert f(loaded) == i
        del loaded
    gc.collect()
    alive = sum(ref() is not None for ref in made)
    assert alive == 0, f"{alive} classes cloudpickle made still alive"


def test_a_partial_keys_alike_once_its_dict_was_read(cache_dir: Path) -> None:
    # functools.partial's __reduce__ gives its __dict__ as it is: None until something
    # reads ``p.__dict__`` (vars(), memojar's own identity walk of a default), then {}.
    # Before, the key of the same partial changed then.
    p = functools.partial(max, 1)
    f = cached(cache_dir=cache_dir)(lambda x, p: x)
    before = f.cache_key(1, p)
    vars(p)
    assert f.cache_key(1, p) == before
    assert f.cache_key(1, functools.partial(max, 1)) == before


_PARTIAL_DEFAULT = """
import functools, json, sys
from memojar import cached
calls = []

@cached(cache_dir=sys.argv[1])
def f(x, pick=functools.partial(max, 0)):
    calls.append(x)
    return pick(x)

f(1), f(1)
print(json.dumps([calls, f.cache_explain(1), f.cache_info().entries]))
"""


def test_a_module_function_with_a_partial_default_computes_once(tmp_path: Path) -> None:
    # Before: the first call keyed the default before the identity walk (at that call, for
    # a function of a module) read its __dict__, the next calls after: the second call
    # computed again and stored a second entry, and cache_explain said "no entry" of the
    # call just stored.
    calls, explained, entries = json.loads(run_python(_PARTIAL_DEFAULT, str(tmp_path)))
    assert calls == [1]
    assert explained.startswith("hit:")
    assert entries == 1


def test_an_argument_changed_by_another_thread_while_keyed_is_keyed_again(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A table given as an argument, which another thread added to while its key was made
    ("dictionary changed size during iteration"): the call raised TypeError, "the arguments
    cannot be pickled ...; use ignore= or key=" (ignore= would have given every table one
    value). It is keyed again, as it is then."""
    import memojar._keys as keys

    normalize, probe = keys.normalize, [0]
    table: dict[str, Any] = {"probe": probe, "k": 1}
    left = [1]

    def changed_meanwhile(obj: Any) -> Any:
        if obj is probe and left[0]:
            left[0] -= 1
            thread = threading.Thread(target=table.__setitem__, args=("late", 2))
            thread.start()  # another thread, while the key iterates the table
            thread.join(10)
        return normalize(obj)

    monkeypatch.setattr(keys, "normalize", changed_meanwhile)
    f = cached(cache_dir=cache_dir)(lambda t: sorted(t))
    assert f(table) == ["k", "late", "probe"]
    assert f({"probe": [0], "k": 1, "late": 2}) == ["k", "late", "probe"]
    assert f.cache_info()[:2] == (1, 1)


class _Marker:
    """A value of a table, to see whether it was freed."""


@pytest.mark.parametrize("changes", [2, 3], ids=["keyed-again", "raised"])
def test_an_argument_changed_twice_while_keyed_is_freed_without_the_collector(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, changes: int,
) -> None:
    """A table another thread changed again while its key was made again: the change kept
    (``_keyed_again``'s ``exc``) held, through its traceback, the frame keeping it, and
    with it the arguments and the call's frames, until the collector ran; also when the
    call raised that the table kept changing."""
    import gc
    import weakref

    import memojar._keys as keys

    normalize, probe = keys.normalize, [0]
    marker = _Marker()
    freed = weakref.ref(marker)
    tables: list[dict[str, Any]] = [{"probe": probe, "k": 1, "m": marker}]
    del marker
    left = [changes]

    def changed_meanwhile(obj: Any) -> Any:
        if obj is probe and left[0]:
            left[0] -= 1
            thread = threading.Thread(target=tables[0].__setitem__,
                                      args=(f"late{left[0]}", 2))
            thread.start()
            thread.join(10)
        return normalize(obj)

    monkeypatch.setattr(keys, "normalize", changed_meanwhile)
    f = cached(cache_dir=cache_dir)(lambda t: len(t))
    gc.collect()
    gc.disable()
    try:
        try:
            assert f(tables[0]) == 3 + changes
        except RuntimeError as exc:
            assert changes == 3 and "changed in another thread" in str(exc)
        tables.clear()
        assert freed() is None
    finally:
        gc.enable()


_FAILED_PICKLE_WITH_ARRAYS = """
import gc, threading
import numpy as np
from memojar._keys import make_key, state_key

class Holder:
    def __init__(self, n):
        self.lock = threading.Lock()  # after the arrays in the pickle (sorted names)
        self.arrs = [np.arange(10, dtype=float) + i for i in range(n)]

for _ in range(300):
    try:
        state_key(Holder(2))  # a global's or a default's first look
    except TypeError:
        pass
for _ in range(300):
    try:
        make_key((Holder(8),))  # an argument
    except TypeError:
        pass
gc.collect()
print("survived")
"""


def test_a_failed_pickling_of_arrays_beside_a_lock_leaves_nothing_the_collector_crashes_on(
) -> None:
    # The arrays' buffers taken before the lock failed the pickling stayed in a cycle (the
    # traceback's frames, the pickler), each a PickleBuffer of a read-only memoryview; the
    # collector cleared the view before the buffer exported from it and the interpreter
    # died (SIGSEGV in memory_dealloc): a global holding a lock beside arrays, read by a
    # cached function, or such an argument.
    assert run_python(_FAILED_PICKLE_WITH_ARRAYS).strip() == "survived"


class _Settings:
    """Pickled by its global name (a singleton), a lock beside its settings."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.lock = threading.Lock()

    def __reduce__(self) -> str:
        return "SETTINGS"


SETTINGS = _Settings(2)


@pytest.mark.parametrize("state", [False, True], ids=["argument", "global"])
def test_a_value_holding_a_lock_is_freed_without_the_collector(state: bool) -> None:
    # The check of the lock's pickling error (is it the caller's signal handler's?) read
    # the locals of the frame that caught it, the error among them, and left that frame,
    # the error and its traceback in a cycle holding the value, the frames that called
    # it and the bytes pickled so far: only the collector freed them, and on CPython
    # 3.12.1 it crashed there at exit (SIGSEGV clearing a BytesIO's exported buffer).
    import gc
    import weakref

    from memojar import _keys

    value = _Settings(5)
    freed = weakref.ref(value)
    gc.collect()
    gc.disable()
    try:
        if state:
            _keys.state_key((value, 2))
        else:
            make_key((value, 2))
        del value
        assert freed() is None
    finally:
        gc.enable()


class _LeavesACycle:
    """An array-like value whose reduction leaves its own frame in a cycle, as user code
    does (``except E as e: error = e``): the frames that called it, memojar's, are kept
    until the collector runs."""

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> Any:
        try:
            raise LookupError("no such unit")
        except LookupError as e:
            error = e  # noqa: F841 - the cycle
        return (_LeavesACycle, (self.data if type(self.data) is bytes
                                else pickle.PickleBuffer(self.data),))


@pytest.mark.parametrize("data", [b"x" * 64, bytearray(b"x" * 64)], ids=["bytes", "array"])
def test_a_value_whose_reduction_leaves_a_cycle_leaves_no_exported_view_in_it(
        data: bytes | bytearray) -> None:
    # The views memojar hashed (the pickle's BytesIO's, an array's buffer) stayed exported
    # in the kept frames: the collector clearing them crashed CPython 3.12.1 (gh-111049:
    # SIGSEGV at exit, after the call returned).
    kept, views = views_left_in_a_collection(lambda: make_key((_LeavesACycle(data), 2)))
    assert kept  # the cycle kept memojar's frames
    assert views == []


class _HoldsABuffer:
    def __init__(self, buf: pickle.PickleBuffer, lock: bool = False) -> None:
        self.buf = buf
        self.lock = threading.Lock() if lock else None


@pytest.mark.parametrize("where", ["argument", "attribute", "beside a lock"])
def test_a_pickle_buffer_of_the_users_is_usable_after_its_key_is_made(where: str) -> None:
    # The key's buffers are released once hashed: the user's own PickleBuffer (an argument,
    # an attribute of one) was released with them, and the argument was unusable after the
    # call ("operation forbidden on released PickleBuffer object"); beside a lock (a
    # failed pickling) too, before 4a30506.
    buf = pickle.PickleBuffer(bytearray(b"abc" * 100))
    if where == "argument":
        make_key((buf, 2))
    else:
        with contextlib.nullcontext() if where == "attribute" else pytest.raises(TypeError):
            make_key((_HoldsABuffer(buf, lock=where == "beside a lock"), 2))
    assert bytes(buf.raw()) == b"abc" * 100


def test_a_pickle_buffer_keys_as_its_bytes_read_only_or_not() -> None:
    data = bytearray(b"abc" * 100)
    assert make_key((pickle.PickleBuffer(data),)) == make_key(
        (pickle.PickleBuffer(memoryview(data).toreadonly()),))
