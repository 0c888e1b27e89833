"""Equal values, equal keys (issue 10): no needless miss, the same key in every process."""

from __future__ import annotations

import json
import mmap
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from memojar._keys import BIG_BUFFER, make_key


class Tags(set):
    """A set subclass: pickled through its reduce, not as a set."""


class FrozenTags(frozenset):
    pass


class Tagged(frozenset):
    """A frozenset subclass whose reduction passes more than its items."""

    __slots__ = ("tag",)

    def __new__(cls, items: object, tag: str) -> Tagged:
        made = super().__new__(cls, items)  # type: ignore[arg-type]
        made.tag = tag
        return made

    def __reduce__(self) -> tuple[object, ...]:
        return (Tagged, (sorted(self), self.tag))  # (sorted: alike under any hash seed)


class OrderedTags(frozenset):
    """A frozenset subclass that keeps the order its items were given in."""

    def __new__(cls, items: object) -> OrderedTags:
        order = list(items)  # type: ignore[call-overload]
        made = super().__new__(cls, order)
        made.order = order  # type: ignore[attr-defined]
        return made

    def __reduce__(self) -> tuple[object, ...]:
        return (OrderedTags, (self.order,))  # type: ignore[attr-defined]


_SEED_SCRIPT = """
import json, sys
from collections import OrderedDict
sys.path.insert(0, {tests!r})
from test_keys_equal import Tags, FrozenTags, Tagged
from memojar._keys import make_key
names = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
print(json.dumps([
    make_key((OrderedDict([("a", set(names)), ("b", {{"x": frozenset(names)}})]),)),
    make_key((Tags(names),)),
    make_key((FrozenTags(names),)),
    make_key(([Tags(names), FrozenTags(names[:3])],)),
    make_key((Tagged(names, "m"),)),
    list(set(names)),
]))
"""


def test_ordered_dicts_of_sets_and_set_subclasses_key_alike_under_any_hash_seed() -> None:
    tests = str(Path(__file__).parent)
    outputs = []
    for seed in ("0", "1", "2", "3"):
        proc = subprocess.run(
            [sys.executable, "-c", _SEED_SCRIPT.format(tests=tests)], capture_output=True,
            text=True, timeout=60, env={**_env(), "PYTHONHASHSEED": seed},
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(json.loads(proc.stdout))
    assert len({json.dumps(o[-1]) for o in outputs}) > 1  # the seeds really reorder sets
    assert all(o[:-1] == outputs[0][:-1] for o in outputs)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_set_subclasses_differ_from_plain_sets_and_by_content() -> None:
    assert make_key((Tags({"a"}),)) != make_key(({"a"},))
    assert make_key((Tags({"a"}),)) != make_key((Tags({"b"}),))
    assert make_key((FrozenTags({"a"}),)) != make_key((Tags({"a"}),))


def test_set_subclasses_whose_reduction_passes_more_than_their_items_differ_by_it() -> None:
    """The arguments of a set subclass's reduction were replaced by its sorted items: a
    ``Tagged(items, tag)`` whose ``__reduce__`` passes the tag (pickle keeps it) shared a
    key with any other tag, and a cached function got the other tag's value."""
    assert make_key((Tagged({"a"}, "m"),)) != make_key((Tagged({"a"}, "s"),))
    assert make_key((Tagged({"a"}, "m"),)) == make_key((Tagged({"a"}, "m"),))
    assert make_key((Tagged({"a"}, "m"),)) != make_key((Tagged({"b"}, "m"),))
    assert make_key((Tagged({"a", "b"}, "m"),)) == make_key((Tagged(["b", "a"], "m"),))


def test_a_set_subclass_keeping_its_order_differs_by_it() -> None:
    """A list of the set's items that its own reduction passes is keyed in its order.
    Before, it was sorted as ``set.__reduce__``'s ``list(self)`` is: ``OrderedTags("xyz")``
    and ``OrderedTags("zyx")`` shared a key, and a function returning the first item got
    the other's value. ``set.__reduce__``'s own list is still sorted."""
    assert make_key((OrderedTags("xyz"),)) != make_key((OrderedTags("zyx"),))
    assert make_key((OrderedTags("xyz"),)) == make_key((OrderedTags("xyz"),))
    assert make_key((Tags("xyz"),)) == make_key((Tags("zyx"),))


def test_ordered_dict_order_still_counts() -> None:
    one = OrderedDict([("a", {1, 2}), ("b", 1)])
    two = OrderedDict([("b", 1), ("a", {2, 1})])
    assert make_key((one,)) != make_key((two,))


# --- shared and separate equal objects ----------------------------------------------------

def apart(*words: str) -> list[str]:
    """Equal strings as separate objects (as ``read_csv`` or ``split`` make them)."""
    return " ".join(words).split()


@pytest.mark.parametrize(
    ("shared", "separate"),
    [
        pytest.param(lambda: ["hello", "hello"], lambda: apart("hello", "hello"), id="list"),
        pytest.param(lambda: ("hello", "hello"), lambda: tuple(apart("hello", "hello")),
                     id="atoms"),
        pytest.param(lambda: {"k": ["hello", "hello"]},
                     lambda: {"k": apart("hello", "hello")}, id="nested"),
        pytest.param(lambda: [b"hello", b"hello"],
                     lambda: [w.encode() for w in apart("hello", "hello")], id="bytes"),
    ],
)
def test_equal_strings_key_alike_whether_shared_or_not(shared, separate) -> None:
    a, b = shared(), separate()
    assert a == b
    assert make_key((a,)) == make_key((b,))
    assert make_key(tuple(a) if isinstance(a, list) else (a,)) == make_key(
        tuple(b) if isinstance(b, list) else (b,))


class Node:
    def __init__(self, value: int) -> None:
        self.value = value
        self.me = self


def test_an_object_that_contains_itself_still_keys() -> None:
    """Without pickle's memo a cycle never ends: such a value is pickled with the memo."""
    assert make_key((Node(1),)) == make_key((Node(1),)) != make_key((Node(2),))


def _list_holding_itself(tag: object) -> list[object]:
    a: list[object] = [tag, {"s", "t", "u"}]
    a.append(a)
    return a


def _dict_holding_itself(tag: object) -> dict[str, object]:
    d: dict[str, object] = {"tag": tag, "names": {"s", "t", "u"}}
    d["inner"] = {"up": d, "list": [d]}
    return d


class Basket:
    """An object whose state holds a list holding itself (pickled through its reduce)."""

    def __init__(self, tag: object) -> None:
        self.tag = tag
        self.items: list[object] = [{"s", "t"}]
        self.items.append(self.items)


@pytest.mark.parametrize("build", [_list_holding_itself, _dict_holding_itself, Basket],
                         ids=["list", "dict", "object-state"])
def test_a_container_that_holds_itself_keys_by_its_contents(
        build: Callable[[object], object]) -> None:
    """``a.append(a)``: normalising recursed until Python's limit, and the call raised
    "cannot be pickled" for a value pickle keeps (joblib and diskcache key it)."""
    assert make_key((build(1),)) == make_key((build(1),)) != make_key((build(2),))


def _grid(n: int, tag: object = 0) -> dict[str, object]:
    """Cells of an n x n grid, each a dict listing its neighbours: every cell reaches every
    other by many paths."""
    cells = [[{"v": (i, j, tag), "nb": []} for j in range(n)] for i in range(n)]
    for i in range(n):
        for j in range(n):
            for di, dj in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                if 0 <= i + di < n and 0 <= j + dj < n:
                    cells[i][j]["nb"].append(cells[i + di][j + dj])  # type: ignore[attr-defined]
    return cells[0][0]


def test_neighbours_that_list_each_other_are_keyed_in_time() -> None:
    """Each list and dict is written once: the first form of the fallback wrote one by
    every path through it (a 5 x 5 grid took 3 s, a 6 x 6 one did not end)."""
    start = time.monotonic()
    assert make_key((_grid(12),)) == make_key((_grid(12),)) != make_key((_grid(12, 1),))
    assert time.monotonic() - start < 10  # (a hang's bound: 0.01 s here)


def test_dicts_holding_other_lists_in_a_cycle_differ_by_what_each_key_holds() -> None:
    """The lists and dicts of a value that holds itself were numbered in a dict's insertion
    order, then its items sorted: ``d2["b"]``, a list holding itself, and ``d1["b"]``, a
    list holding ``d1["a"]``, both became the mark of number 1 (a wrong value)."""
    d1: dict[str, object] = {}
    x1: list[object] = ["x", d1]
    d1["a"], d1["b"] = x1, ["y", x1]
    d2: dict[str, object] = {}
    y2: list[object] = ["y"]
    y2.append(y2)
    d2["b"], d2["a"] = y2, ["x", d2]
    assert make_key((d1,)) != make_key((d2,))


def test_a_value_that_holds_itself_keys_alike_whatever_its_dicts_insertion_order() -> None:
    """(A miss before: the lists were numbered in insertion order.)"""

    def built(order: str) -> dict[str, object]:
        d: dict[str, object] = {}
        lists = {name: [name, d] for name in "ab"}
        for name in order:
            d[name] = lists[name]
        d["both"] = [lists["a"], lists["b"]]
        return d

    assert make_key((built("ab"),)) == make_key((built("ba"),))


class Neighbour:
    def __init__(self) -> None:
        self.nbrs: set[Neighbour] = set()


def test_objects_that_reach_each_other_through_a_set_are_refused_at_once() -> None:
    """Sorting one's set pickles the other, whose set holds the first: before, each level
    recursed to Python's limit and was retried, and the call never ended."""
    a, b = Neighbour(), Neighbour()
    a.nbrs.add(b)
    b.nbrs.add(a)
    with pytest.raises(TypeError, match="reaches itself through a set or a dict's keys"):
        make_key(([a, b],))


_CYCLE_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_keys_equal import _dict_holding_itself, Basket
from memojar._keys import make_key
print(make_key((_dict_holding_itself("x"), Basket("y"))))
"""


def test_a_container_that_holds_itself_keys_alike_under_any_hash_seed() -> None:
    tests = str(Path(__file__).parent)
    keys = {subprocess.run([sys.executable, "-c", _CYCLE_SCRIPT.format(tests=tests)],
                           capture_output=True, text=True, timeout=60, check=True,
                           env={**_env(), "PYTHONHASHSEED": seed}).stdout
            for seed in ("0", "1", "2")}
    assert len(keys) == 1, keys


# --- buffers: read-only or writable -------------------------------------------------------

@pytest.mark.parametrize("size", [16, BIG_BUFFER + 16])
def test_memoryview_of_bytes_and_of_bytearray_key_alike(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    assert make_key((memoryview(data),)) == make_key((memoryview(bytearray(data)),))


def test_arrays_holding_objects_differ_by_their_dtype() -> None:
    """A dtype holding Python objects was left out of the key: a structured array with an
    object field, one with other field names or sizes, and an object array of the same
    tuples got each other's value."""
    np = pytest.importorskip("numpy")
    rows = [("p", 1), ("q", 2)]
    named = np.array(rows, dtype=[("a", "O"), ("b", "<i4")])
    renamed = np.array(rows, dtype=[("name", "O"), ("count", "<i8")])
    plain = np.empty(2, dtype=object)
    plain[:] = rows
    keys = {make_key((named,)), make_key((renamed,)), make_key((plain,))}
    assert len(keys) == 3
    assert make_key((named,)) == make_key((named.copy(),))



def test_arrays_differing_in_dtype_metadata_or_alignment_differ() -> None:
    """An array's dtype was keyed by ``dtype.str`` or ``descr``, which leave out its
    ``metadata`` (h5py keeps its enum and string types there) and the aligned flag: arrays
    differing only there got each other's value. Arrays of no metadata keep their key."""
    np = pytest.importorskip("numpy")
    from memojar._keys import state_key

    metres = np.zeros(3, np.dtype("f8", metadata={"unit": "m"}))
    seconds = np.zeros(3, np.dtype("f8", metadata={"unit": "s"}))
    plain = np.zeros(3, "f8")
    aligned = np.zeros(2, np.dtype([("a", "u1"), ("b", "<i4")], align=True))
    packed = np.zeros(2, np.dtype({"names": ["a", "b"], "formats": ["u1", "<i4"],
                                   "offsets": [0, 4], "itemsize": 8}))
    assert aligned.dtype.isalignedstruct and not packed.dtype.isalignedstruct
    nested = np.zeros(2, [("x", np.dtype("f8", metadata={"unit": "m"}))])
    objects = np.array(["a"], dtype=np.dtype("O", metadata={"vlen": str}))
    for keyed in (lambda a: make_key((a,)), state_key):
        assert len({keyed(metres), keyed(seconds), keyed(plain)}) == 3
        assert keyed(aligned) != keyed(packed)
        assert keyed(nested) != keyed(np.zeros(2, [("x", "f8")]))
        assert keyed(objects) != keyed(np.array(["a"], dtype=object))
        assert keyed(metres) == keyed(metres.copy())
        assert keyed(aligned) == keyed(aligned.copy())


def test_arrays_whose_dtype_str_names_another_scalar_type_differ() -> None:
    """A dtype was keyed by its ``str``, which for numpy's ``longlong`` is ``<i8`` (as
    ``int64``'s), and for a record dtype the one of its ``np.void`` twin: arrays of the
    same bytes shared a key, and a function reading the type got the other's."""
    np = pytest.importorskip("numpy")
    from memojar._keys import state_key

    if np.dtype(np.dtype(np.longlong).str).type is np.longlong:
        pytest.skip("longlong is the type <i8 names on this platform")
    longs, plain = np.arange(3, dtype=np.longlong), np.arange(3, dtype=np.int64)
    record = np.zeros(2, np.dtype((np.record, [("a", "<i4")])))
    fields = np.zeros(2, [("a", np.longlong)])
    for keyed in (lambda a: make_key((a,)), state_key):
        assert keyed(longs) != keyed(plain)
        assert keyed(longs) == keyed(longs.copy())
        assert keyed(record) != keyed(np.zeros(2, [("a", "<i4")]))
        assert keyed(fields) != keyed(np.zeros(2, [("a", np.int64)]))


def test_scalars_whose_dtype_str_names_another_type_differ(cache_dir: Path) -> None:
    """As arrays (above), a scalar: ``np.longlong(1)``'s pickle names ``int64``, and a
    function reading the type got the other's."""
    np = pytest.importorskip("numpy")
    from memojar import Cache

    if np.dtype(np.dtype(np.longlong).str).type is np.longlong:
        pytest.skip("longlong is the type <i8 names on this platform")

    @Cache(cache_dir).cached
    def kind(x: object) -> str:
        return type(x).__name__

    for plain, other in ((np.int64(1), np.longlong(1)), (np.uint64(1), np.ulonglong(1))):
        assert kind(plain) == type(plain).__name__
        assert kind(other) == type(other).__name__
        assert make_key((other,)) == make_key((type(other)(1),))
    assert make_key((np.longlong(1),)) != make_key((np.longlong(2),))


def test_dtypes_that_pickle_as_another_differ(cache_dir: Path) -> None:
    """As arrays and scalars (above), a dtype passed itself: ``np.dtype(np.longlong)``
    pickles as ``"i8"``, which reads back as ``int64``, and a function making an array of
    it got the other's type."""
    np = pytest.importorskip("numpy")
    from memojar import Cache
    from memojar._keys import state_key

    if np.dtype(np.dtype(np.longlong).str).type is np.longlong:
        pytest.skip("longlong is the type <i8 names on this platform")

    @Cache(cache_dir).cached
    def kind(dtype: object) -> str:
        return type(np.zeros(1, dtype)[0]).__name__

    for plain, other in ((np.int64, np.longlong), (np.uint64, np.ulonglong)):
        assert kind(np.dtype(plain)) == plain.__name__
        assert kind(np.dtype(other)) == other.__name__
    for keyed in (lambda a: make_key((a,)), state_key):
        assert keyed(np.dtype([("a", np.longlong)])) != keyed(np.dtype([("a", np.int64)]))
        assert keyed(np.dtype(np.longlong)) == keyed(np.dtype("q"))


def _alike_in_three_processes(script: str) -> None:
    """``script`` prints the same keys in three processes (memory each fills otherwise)."""
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=60, env=_env(), check=True).stdout for _ in range(3)}
    assert len(outputs) == 1, outputs


_LONG_DOUBLES = """
import json, numpy as np
from memojar._keys import make_key, state_key
scalar, array = np.longdouble("1.5"), np.array([1.0, 2.0], dtype=np.longdouble)
print(json.dumps([make_key((scalar,)), make_key((array,)), make_key((np.clongdouble(1 + 2j),)),
                  make_key((array.astype(">f16"),)), state_key(array)]))
"""


def test_long_doubles_key_alike_in_every_process() -> None:
    """An x87 long double (x86 Linux) is 10 bytes in 16, the other 6 whatever was in
    memory: keyed with them, a long double scalar or array had another key in each
    process, and was never a hit after its first."""
    np = pytest.importorskip("numpy")
    if np.finfo(np.longdouble).nmant != 63:
        pytest.skip("a long double here has no padding")
    _alike_in_three_processes(_LONG_DOUBLES)
    assert make_key((np.longdouble(1),)) != make_key((np.longdouble(2),))


_LONG_DOUBLES_WRAPPED = """
import json, os, warnings, numpy as np
from memojar._keys import make_key, state_key
class Numbers(np.ndarray):
    pass
numbers = np.frombuffer(bytearray(os.urandom(64)), dtype=np.longdouble).copy()
numbers[:] = 1.5, 2, 3, 4  # (each number's 6 bytes of padding: left as they were)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)  # (np.matrix's)
    matrix = np.asmatrix(numbers)
values = (np.ma.array(numbers), np.ma.array(numbers, hard_mask=True), np.ma.array(numbers)[:1],
          np.ma.array(numbers.view(np.clongdouble)), numbers.view(Numbers),
          numbers.view(np.recarray), matrix)
print(json.dumps([[make_key((value,)), state_key(value)] for value in values]))
"""


def test_long_doubles_wrapped_key_alike_in_every_process() -> None:
    """A masked array (soft or hard), an ndarray subclass's, a ``recarray`` or a matrix of
    long doubles was keyed by its pickle, each number's padding and all: another key in
    each process, never a hit after its first, as a long double array before 1b47579."""
    np = pytest.importorskip("numpy")
    if np.finfo(np.longdouble).nmant != 63:
        pytest.skip("a long double here has no padding")
    _alike_in_three_processes(_LONG_DOUBLES_WRAPPED)
    ones, twos = np.ones(2, np.longdouble), np.array([1, 2], np.longdouble)
    for one, other in ((np.ma.array(ones), np.ma.array(twos)), (np.ma.array(ones), ones),
                       (np.ma.array(ones), np.ma.array(ones, mask=[False, True])),
                       (np.ma.array(ones), np.ma.array(ones, hard_mask=True)),
                       (ones.view(np.recarray), ones), (ones.view(np.recarray),
                                                        twos.view(np.recarray))):
        assert make_key((one,)) != make_key((other,))


_PADDED_RECORDS = """
import json, os, numpy as np
from memojar._keys import make_key, state_key
junk = [np.random.default_rng(os.getpid()).integers(0, 256, n, dtype=np.uint8)
        for n in (48, 80, 160, 4096)]  # memory the arrays below may be made in, dirtied
del junk
aligned = np.dtype([("a", "u1"), ("b", "f8")], align=True)
spaced = np.dtype({"names": ["a", "b"], "formats": ["u1", "i4"], "offsets": [0, 8],
                   "itemsize": 16})
class Records(np.ndarray):
    pass
keys = []
for dtype in (aligned, spaced, np.dtype([("a", "u1"), ("b", np.longdouble)])):
    for size in (1, 3, 5):
        records = np.empty(size, dtype)
        records["a"], records["b"] = 1, 2
        masked = np.ma.array(records, mask=[False] * size)
        for value in (records, records[::2], records[0], records.view(np.recarray),
                      records.view(np.recarray)[0], [records[0]], masked, masked[0],
                      np.ma.array(records, mask=[True] * size, hard_mask=True),
                      records.view(Records)):
            keys.append([make_key((value,)), state_key(value)])
print(json.dumps(keys))
"""


def test_records_with_padding_key_alike_in_every_process() -> None:
    """A structured dtype's item may hold bytes no field covers (``align=True``, explicit
    offsets, a long double field's padding): made by ``np.empty`` and its fields assigned,
    they are whatever was in memory. Keyed with them, such an array, a view of it, a
    record of it (``np.void``, ``np.record``), a ``recarray``, a masked array of it or an
    ndarray subclass's had another key in each process, and was never a hit after its
    first."""
    np = pytest.importorskip("numpy")
    _alike_in_three_processes(_PADDED_RECORDS)
    aligned = np.dtype([("a", "u1"), ("b", "f8")], align=True)
    ones, twos = np.zeros(2, aligned), np.zeros(2, aligned)
    ones["b"], twos["b"] = 1, [1, 2]
    packed = np.zeros(2, [("a", "u1"), ("b", "f8")])
    packed["b"] = 1
    for one, other in ((ones, twos), (ones[1], twos[1]), (ones, packed), (ones[0], packed[0]),
                       (ones, ones.view(np.recarray)), (ones[0], ones.view(np.recarray)[0]),
                       (np.ma.array(ones), np.ma.array(twos)), (np.ma.array(ones), ones),
                       (np.ma.array(ones), np.ma.array(ones, mask=[False, True])),
                       (np.ma.array(ones), np.ma.array(ones, hard_mask=True))):
        assert make_key((one,)) != make_key((other,))


def test_arrays_of_dtypes_a_package_registers_differ_by_their_type(cache_dir: Path) -> None:
    """ml_dtypes' float8 and int4 dtypes are all spelled ``<V1``: the same bytes read as
    ``float8_e4m3fn`` and as ``float8_e4m3fnuz`` shared a key, and the second call
    returned the first one's floats (``[1, 2, 448]`` for ``[0.5, 1, 224]``)."""
    np = pytest.importorskip("numpy")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from memojar import Cache

    @Cache(cache_dir).cached
    def as_floats(x: object) -> object:
        return x.astype(np.float32).tolist()  # type: ignore[attr-defined]

    e4m3 = np.array([1.0, 2.0, 448.0], dtype=ml_dtypes.float8_e4m3fn)
    for other in (e4m3.view(ml_dtypes.float8_e4m3fnuz), e4m3.view(ml_dtypes.int4)):
        assert as_floats(e4m3) == [1.0, 2.0, 448.0]
        assert as_floats(other) == as_floats.__wrapped__(other)
    assert make_key((e4m3,)) == make_key((e4m3.copy(),))
    pair = np.zeros(2, [("x", ml_dtypes.float8_e4m3fn)])
    assert make_key((pair,)) != make_key((pair.view([("x", ml_dtypes.int4)]),))


def test_a_hard_masked_array_differs_from_the_same_array_soft(cache_dir: Path) -> None:
    """Pickle leaves a masked array's hard mask out: a hard-masked array and the same one
    soft shared a key, and assigning to a masked item (which a hard mask ignores)
    returned the other's values."""
    np = pytest.importorskip("numpy")
    from memojar import Cache
    from memojar._keys import state_key

    @Cache(cache_dir).cached
    def filled(m: object) -> object:
        copy = m.copy()  # type: ignore[attr-defined]
        copy[1] = 9
        return copy.tolist()

    soft = np.ma.array([1, 2, 3], mask=[0, 1, 0])
    hard = np.ma.array([1, 2, 3], mask=[0, 1, 0], hard_mask=True)
    for _ in range(2):
        assert [filled(soft), filled(hard)] == [[1, 9, 3], [1, None, 3]]
    assert hard.hardmask  # (keying it leaves it hard)
    for keyed in (lambda a: make_key((a,)), state_key):
        assert keyed(hard) == keyed(hard.copy())
        assert keyed(hard) != keyed(soft)


def test_arrays_of_a_subclass_differ_by_their_attributes(cache_dir: Path) -> None:
    """numpy's ``InfoArray`` (an ndarray subclass setting ``info`` in
    ``__array_finalize__``) pickles as an ndarray, attributes left out: arrays tagged
    ``"m"`` and ``"km"`` shared a key, and a function reading the tag got the other's."""
    np = pytest.importorskip("numpy")
    import threading

    from memojar import Cache
    from memojar._keys import state_key

    class InfoArray(np.ndarray):  # type: ignore[type-arg]
        def __new__(cls, values: object, info: object = None) -> InfoArray:
            array = np.asarray(values).view(cls)
            array.info = info
            return array

        def __array_finalize__(self, obj: object) -> None:
            self.info = getattr(obj, "info", None)

    @Cache(cache_dir).cached
    def unit(x: object) -> object:
        return x.info  # type: ignore[attr-defined]

    metres, kilometres = InfoArray([1.0, 2.0], "m"), InfoArray([1.0, 2.0], "km")
    for _ in range(2):
        assert [unit(metres), unit(kilometres)] == ["m", "km"]
    for keyed in (lambda a: make_key((a,)), state_key):
        assert keyed(metres) == keyed(InfoArray([1.0, 2.0], "m"))
        assert keyed(metres[::-1]) != keyed(kilometres[::-1])
    itself = InfoArray([1.0])
    itself.info = itself
    assert make_key((itself,)) != make_key((InfoArray([1.0]),))
    # an attribute pickle refuses is left out, as before: the array is still keyed
    assert make_key((InfoArray([1.0], threading.Lock()),)) == make_key(
        (InfoArray([1.0], threading.Lock()),))


def test_structured_arrays_whose_fields_overlap_or_are_out_of_order_are_keyed() -> None:
    """A structured dtype with fields out of the order of their offsets, or overlapping (a
    union view), has no ``descr``: numpy raised ValueError, and such an array, which pickle
    takes, was refused as one that cannot be pickled."""
    np = pytest.importorskip("numpy")
    from memojar._keys import state_key

    swapped = np.dtype({"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [4, 0]})
    ordered = np.dtype({"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [0, 4]})
    union = np.dtype({"names": ["i", "f"], "formats": ["<i4", "<f4"], "offsets": [0, 0]})
    one = np.zeros(2, swapped)
    one["a"] = [1, 2]
    other = np.zeros(2, ordered)
    other.view("<i4")[:] = one.view("<i4")  # the same bytes, read otherwise
    for keyed in (lambda a: make_key((a,)), state_key):
        assert keyed(one) == keyed(one.copy())
        assert keyed(one) != keyed(other)
        assert keyed(np.zeros(2, union)) == keyed(np.zeros(2, union))
        assert keyed(np.zeros(2, union)) != keyed(np.ones(2, union))


@pytest.mark.parametrize("n", [10, 100_000])
def test_read_only_and_writable_arrays_key_alike(n: int) -> None:
    np = pytest.importorskip("numpy")
    writable = np.arange(n, dtype=np.float64)
    read_only = writable.copy()
    read_only.flags.writeable = False
    from_buffer = np.frombuffer(writable.tobytes(), dtype=np.float64)
    assert not from_buffer.flags.writeable
    assert make_key((writable,)) == make_key((read_only,)) == make_key((from_buffer,))
    assert make_key((writable,)) != make_key((writable + 1,))
    assert make_key((writable,)) != make_key((writable.astype(np.float32),))
    assert make_key((writable,)) != make_key((writable.reshape(-1, 2),))


def test_a_read_only_memmap_keys_like_the_array(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(50_000, dtype=np.int64)
    path = tmp_path / "a.bin"
    array.tofile(path)
    mapped = np.memmap(path, dtype=np.int64, mode="r", shape=array.shape)
    assert make_key((mapped,)) == make_key((array,))
    assert mmap  # the module the memmap lives on


def test_memory_layout_does_not_count() -> None:
    np = pytest.importorskip("numpy")
    c = np.arange(12.0).reshape(3, 4)
    f = np.asfortranarray(c)
    assert make_key((c,)) == make_key((f,))
    assert make_key((c[:, ::2],)) == make_key((c[:, ::2].copy(),))


def test_arrays_of_objects_key_by_their_items() -> None:
    np = pytest.importorskip("numpy")
    one = np.array(["hello", "hello", 1], dtype=object)
    two = np.array([*apart("hello", "hello"), 1], dtype=object)
    assert make_key((one,)) == make_key((two,))
    assert make_key((one,)) != make_key((np.array(["hello", "world", 1], dtype=object),))


# --- data frames --------------------------------------------------------------------------

def _frames():
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    at_once = pd.DataFrame({"a": np.arange(5.0), "b": np.arange(5), "c": list("vwxyz"),
                            "d": np.ones(5)})
    later = pd.DataFrame({"a": np.arange(5.0), "b": np.arange(5), "c": list("vwxyz")})
    later["d"] = np.ones(5)  # a float block of its own, not one two-column block
    assert len(later._mgr.blocks) != len(at_once._mgr.blocks)
    return pd, np, at_once, later


def test_equal_pandas_frames_key_alike_whatever_their_blocks() -> None:
    _, _, at_once, later = _frames()
    assert at_once.equals(later)
    assert make_key((at_once,)) == make_key((later,))
    consolidated = later.copy()
    consolidated._consolidate_inplace()
    assert make_key((consolidated,)) == make_key((at_once,))


def test_dates_key_alike_before_and_after_pandas_cached_their_unit() -> None:
    """A date or duration array keeps what it worked out (``.unit``, read by ``shift``,
    plots and arithmetic) in a cache its pickle holds: not in the key. Before, a frame
    indexed by dates keyed apart once ``df.index.shift(1)`` had run, so the call after
    one that shifted its argument missed, as did another process that had not."""
    pd = pytest.importorskip("pandas")
    fresh, used = (pd.DataFrame({"t": pd.timedelta_range("1D", periods=3)},
                                index=pd.date_range("2024-01-02", periods=3, freq="D"))
                   for _ in range(2))
    used.index.shift(1)
    used["t"].dt.unit  # noqa: B018 - read for its cache
    keys = [make_key((frame,)) for frame in (fresh, used)]
    periods = [pd.period_range("2024-01", periods=2, freq="M") for _ in range(2)]
    periods[1].shift(1)
    assert keys[0] == keys[1]
    assert make_key((periods[0],)) == make_key((periods[1],))
    arrays = [pd.date_range("2024-01-02", periods=3).array for _ in range(2)]  # as given
    arrays[1].unit  # noqa: B018 - read for its cache
    assert make_key((arrays[0],)) == make_key((arrays[1],))
    assert make_key((arrays[0],)) != make_key((pd.date_range("2024-01-03", periods=3).array,))


@pytest.mark.parametrize(
    "change",
    [
        "df.rename(columns={'a': 'z'})",
        "df.astype({'b': 'int32'})",
        "df.set_axis(list('pqrst'))",
        "df.assign(a=df['a'] + 1)",
        "df.assign(c=list('vwxyZ'))",
        "df[['b', 'a', 'c', 'd']]",
        "df.iloc[:4]",
    ],
)
def test_pandas_frames_differing_in_labels_dtypes_or_values_differ(change: str) -> None:
    _, _, df, _ = _frames()
    assert make_key((df,)) != make_key((eval(change),))


def test_pandas_series_key_by_name_index_and_values() -> None:
    pd, _, df, later = _frames()
    assert make_key((df["a"],)) == make_key((later["a"],))
    assert make_key((df["a"],)) != make_key((df["a"].rename("x"),))
    assert make_key((df["a"],)) != make_key((df["b"],))
    assert make_key((pd.Series([1, 2], index=["x", "y"]),)) != make_key(
        (pd.Series([1, 2], index=["x", "z"]),))


def test_pandas_series_differing_in_attrs_differ() -> None:
    pd, _, _, _ = _frames()
    metres, kilograms = pd.Series([1, 2]), pd.Series([1, 2])
    metres.attrs["unit"], kilograms.attrs["unit"] = "m", "kg"
    assert make_key((metres,)) != make_key((kilograms,))


def test_pandas_frames_of_a_subclass_differing_in_its_metadata_differ() -> None:
    pd, _, _, _ = _frames()

    class UnitFrame(pd.DataFrame):  # pandas' way to subclass: ``_metadata``, pickled too
        _metadata: ClassVar[list[str]] = ["unit"]

        @property
        def _constructor(self) -> type:
            return UnitFrame

    metres, kilometres = UnitFrame({"v": [1, 2]}), UnitFrame({"v": [1, 2]})
    metres.unit, kilometres.unit = "m", "km"
    assert make_key((metres,)) != make_key((kilometres,))


def test_a_pandas_frame_or_series_naming_itself_in_its_metadata_or_attrs_is_keyed() -> None:
    """``d.parent = d``, which pickle keeps: the key recursed until Python's limit, and the
    call raised (since its metadata counted)."""
    pd, _, _, _ = _frames()

    class Tracked(pd.DataFrame):
        _metadata: ClassVar[list[str]] = ["parent"]

        @property
        def _constructor(self) -> type:
            return Tracked

    frame, series = Tracked({"v": [1, 2]}), pd.Series([1, 2])
    frame.parent, series.attrs["source"] = frame, series
    assert make_key((frame,)) != make_key((Tracked({"v": [1, 2]}),))
    assert make_key((series,)) != make_key((pd.Series([1, 2]),))


def test_equal_polars_frames_key_alike_whatever_their_chunks() -> None:
    pl = pytest.importorskip("polars")
    one = pl.DataFrame({"a": [1, 2, 3, 4], "b": ["w", "x", None, "z"]})
    two = pl.concat([one.head(2), one.tail(2)], rechunk=False)
    assert one.equals(two)
    assert make_key((one,)) == make_key((two,))
    assert make_key((one,)) != make_key((one.with_columns(pl.col("a") + 1),))
    assert make_key((one["a"],)) == make_key((two["a"],))


def test_hashing_imports_neither_numpy_nor_pandas() -> None:
    script = (
        "import sys\n"
        "from memojar._keys import make_key\n"
        "class P:\n    def __init__(self):\n        self.s = {1, 2}\n"
        "make_key((P(), [1, {'a': {2}}], memoryview(b'x' * 70000)))\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'polars') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[]\n"


@pytest.mark.parametrize(
    ("one", "two"),
    [
        ([1, None, 3], [1, 0, 3]),
        ([True, None], [True, False]),
        (["x", None], ["x", "None"]),
    ],
)
def test_polars_nulls_are_not_their_fill_values(one: list, two: list) -> None:
    pl = pytest.importorskip("polars")
    assert make_key((pl.Series("a", one),)) != make_key((pl.Series("a", two),))


def test_polars_temporal_and_categorical_columns_key_by_value() -> None:
    import datetime

    pl = pytest.importorskip("polars")
    day = datetime.date(2020, 1, 1)
    assert make_key((pl.Series("a", [day]),)) != make_key(
        (pl.Series("a", [day + datetime.timedelta(days=1)]),))
    assert make_key((pl.Series("a", ["x", "y"], dtype=pl.Categorical),)) != make_key(
        (pl.Series("a", ["y", "x"], dtype=pl.Categorical),))
    assert make_key((pl.Series("a", [1], dtype=pl.Int64),)) != make_key(
        (pl.Series("a", [1], dtype=pl.Datetime),))


def test_polars_128_bit_integer_columns_are_keyed_by_value() -> None:
    """numpy has no 128-bit integers: ``to_numpy`` raised, and a series or frame with an
    ``Int128`` column was refused as an argument that cannot be pickled."""
    pl = pytest.importorskip("polars")
    if not hasattr(pl, "Int128"):
        pytest.skip("this polars has no Int128")
    big = pl.Series("a", [2**100, None], dtype=pl.Int128)
    assert make_key((big,)) == make_key((big.clone(),))
    assert make_key((big,)) != make_key((pl.Series("a", [2**100 + 1, None], dtype=pl.Int128),))
    assert make_key((big,)) != make_key((pl.Series("a", [2**100, 0], dtype=pl.Int128),))
    assert make_key((pl.DataFrame({"b": big}),)) != make_key((pl.DataFrame({"b": big.reverse()}),))


# --- containers inside numpy object arrays and frames -------------------------------------

_ARRAY_SEED_SCRIPT = """
import json
import numpy as np
import pandas as pd
from memojar._keys import make_key
names = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
print(json.dumps([
    make_key((np.array([set(names), None], dtype=object),)),
    make_key((pd.DataFrame({"c": [frozenset(names)]}),)),
    make_key((pd.Series([1], name=frozenset(names)),)),
    make_key((pd.DataFrame({"c": [1]}, index=pd.Index([0], name=frozenset(names))),)),
    list(set(names)),
]))
"""


def test_sets_inside_object_arrays_and_frame_names_key_alike_under_any_hash_seed() -> None:
    """An object array's items and a pandas name are pickled by the C pickler, which never
    sorts a set: they are normalised like any argument."""
    pytest.importorskip("pandas")
    outputs = []
    for seed in ("0", "1", "2", "3"):
        proc = subprocess.run(
            [sys.executable, "-c", _ARRAY_SEED_SCRIPT], capture_output=True, text=True,
            timeout=60, env={**_env(), "PYTHONHASHSEED": seed},
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(json.loads(proc.stdout))
    assert len({json.dumps(o[-1]) for o in outputs}) > 1  # the seeds really reorder sets
    assert all(o[:-1] == outputs[0][:-1] for o in outputs)


def test_dicts_inside_object_arrays_key_alike_whatever_their_insertion_order() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    one, two = {"a": 1, "b": 2}, {"b": 2, "a": 1}
    assert make_key((np.array([one, None], dtype=object),)) == make_key(
        (np.array([two, None], dtype=object),))
    assert make_key((pd.DataFrame({"c": [one]}),)) == make_key((pd.DataFrame({"c": [two]}),))
    assert make_key((np.array([one, None], dtype=object),)) != make_key(
        (np.array([{"a": 1, "b": 3}, None], dtype=object),))


def test_a_structured_dtype_renamed_in_place_keys_by_its_new_names() -> None:
    """``dtype.names = ...`` renames a structured dtype's fields in place: an array of it
    keys by the new names. Before (a spelling kept by the dtype object, for speed), the
    old names' key, and a function reading the names got the other's value."""
    import numpy as np

    dt = np.dtype([("a", "<i4"), ("b", "<i4")])
    before = make_key((np.zeros(2, dt),))
    dt.names = ("c", "d")
    assert make_key((np.zeros(2, dt),)) != before


_BUILTIN_METHODS = """
import sys
from memojar import Cache

ALLOWED = {"alpha", "beta", "gamma", "delta", "epsilon"}
TABLE = {"tags": {"x", "y", "z"}, "name": "t"}

@Cache(sys.argv[1]).cached
def keep(rows, allowed):
    print("computed", file=sys.stderr)
    return [r for r in rows if allowed(r)]

print(keep(["alpha", "zeta"], ALLOWED.__contains__), keep(["tags", "x"], TABLE.get))
"""


def test_a_builtin_method_of_a_set_or_dict_hits_in_every_process(tmp_path: Path) -> None:
    """``allowed.__contains__`` or ``table.get`` passed as an argument: its set or dict is
    keyed as anywhere else, whatever the hash seed. Before, pickle's own reduction of the
    method wrote it as it was (a set in the seed's order): every process missed."""
    import os

    runs = [subprocess.run([sys.executable, "-c", _BUILTIN_METHODS, str(tmp_path / "c")],
                           capture_output=True, text=True, timeout=60, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed})
            for seed in ("1", "2", "3")]
    assert [r.stdout for r in runs] == ["['alpha'] ['tags']\n"] * 3
    assert [r.stderr.count("computed") for r in runs] == [2, 0, 0]
    assert make_key(({"a": 1, "b": 2}.get,)) == make_key(({"b": 2, "a": 1}.get,))
    assert make_key(({"a"}.__contains__,)) != make_key(({"b"}.__contains__,))


_SENTINELS = """
import sys
from memojar import Cache

MISSING = object()
ALL = object()

@Cache(sys.argv[1]).cached
def pick(rows=MISSING):
    print("computed", file=sys.stderr)
    return "default" if rows is MISSING else "all" if rows is ALL else "other"

print(pick(), pick(ALL), pick(rows=MISSING))
"""


def test_two_sentinels_key_apart_and_each_alike_in_every_process(tmp_path: Path) -> None:
    """A bare ``object()`` (a sentinel) keys by the global naming it. Before, every one
    pickled as ``object()`` did: ``pick(ALL)`` returned ``pick()``'s "default"."""
    runs = [subprocess.run([sys.executable, "-c", _SENTINELS, str(tmp_path / "c")],
                           capture_output=True, text=True, timeout=60, check=True)
            for _ in range(2)]
    assert [r.stdout for r in runs] == ["default all default\n"] * 2
    assert [r.stderr.count("computed") for r in runs] == [2, 0]


def test_a_sentinel_no_module_names_keys_apart_from_others_in_its_process() -> None:
    first, second = object(), object()  # (locals: a token of this process's each)
    assert make_key((first,)) == make_key((first,)) != make_key((second,))


_CLASS_SENTINEL = """
import sys
from memojar import Cache

class Options:
    UNSET = object()
    ALL = object()

@Cache(sys.argv[1]).cached
def pick(rows=Options.UNSET):
    print("computed", file=sys.stderr)
    return "default" if rows is Options.UNSET else "all" if rows is Options.ALL else "other"

print(pick(), pick(Options.ALL))
"""


def test_a_sentinel_a_class_attribute_names_keys_alike_in_every_process(
        tmp_path: Path) -> None:
    """``class Options: UNSET = object()``, a sentinel no module names, keys by its class's
    name for it. Before, by a token of its process's: every process computed again, each
    storing an entry of its own."""
    runs = [subprocess.run([sys.executable, "-c", _CLASS_SENTINEL, str(tmp_path / "c")],
                           capture_output=True, text=True, timeout=60, check=True)
            for _ in range(2)]
    assert [r.stdout for r in runs] == ["default all\n"] * 2
    assert [r.stderr.count("computed") for r in runs] == [2, 0]


_SENTINEL_NAMED_ANEW = """
import sys
from memojar import Cache

SKIP = object()
class Options:
    UNSET = object()
opts = {"a": SKIP, "b": Options.UNSET}

@Cache(sys.argv[1]).cached
def skipped(table):
    return [k for k, v in table.items() if v is SKIP or v is Options.UNSET]

print(skipped(opts))
SKIP = object()  # the cell defining them run again: opts holds the old ones
class Options:
    UNSET = object()
print(skipped(opts), skipped({"a": SKIP, "b": Options.UNSET}))
"""


def test_a_sentinel_whose_name_is_bound_anew_keys_apart_from_the_new_one(
        tmp_path: Path) -> None:
    """A sentinel whose global or class attribute was bound to a new ``object()`` (a
    notebook's cell run again, a module reloaded) no longer keys by that name, which is the
    new one's. Before, the old one kept the name it was keyed by first: ``skipped(opts)``
    returned ``['a', 'b']``, the value of when they were ``SKIP`` and ``Options.UNSET``."""
    done = subprocess.run([sys.executable, "-c", _SENTINEL_NAMED_ANEW, str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "['a', 'b']\n[] ['a', 'b']\n"


_CLASS_OF_A_SENTINEL = """
import sys
from memojar import Cache

class Options:
    UNSET = object()

@Cache(sys.argv[1]).cached
def is_unset(x):
    print("computed", file=sys.stderr)
    return x is Options.UNSET
"""


def _printed_and_computed(tmp_path: Path, scripts: list[str]) -> list[tuple[str, int]]:
    """Each of ``scripts`` run in turn with ``python -c`` in ``tmp_path`` (its modules
    found in the working folder), the cache in ``tmp_path / "c"``: what it printed, and how
    many times it said "computed"."""
    runs = [subprocess.run([sys.executable, "-c", script, str(tmp_path / "c")],
                           capture_output=True, text=True, timeout=60, check=True,
                           cwd=tmp_path) for script in scripts]
    return [(r.stdout, r.stderr.count("computed")) for r in runs]


def test_a_class_sentinel_a_script_names_keys_apart_from_the_scripts_own_sentinels(
        tmp_path: Path) -> None:
    """A sentinel of a class of a module (``Options.UNSET``) that a script also names
    (``DEFAULT = Options.UNSET``) keys by its class's name for it, not the script's: another
    script's own ``DEFAULT = object()`` keys apart, and a script passing ``Options.UNSET``
    hits. Before, both scripts keyed ``DEFAULT`` alike: the second returned True."""
    (tmp_path / "opts.py").write_text(_CLASS_OF_A_SENTINEL)
    scripts = ["from opts import Options, is_unset\nDEFAULT = Options.UNSET\n"
               "print(is_unset(DEFAULT))",
               "from opts import is_unset\nDEFAULT = object()\nprint(is_unset(DEFAULT))",
               "from opts import Options, is_unset\nprint(is_unset(Options.UNSET))"]
    assert _printed_and_computed(tmp_path, scripts) == [
        ("True\n", 1), ("False\n", 1), ("True\n", 0)]


_SENTINEL_OF_A_SHIMMED_MODULE = """
import sys, types
from memojar import Cache

MISSING = object()

@Cache(sys.argv[1]).cached
def check(x):
    print("computed", file=sys.stderr)
    return x is MISSING

class _Module(types.ModuleType):  # a module's __getattr__ (of deprecations)
    def __getattr__(self, name):
        raise AttributeError(name)

sys.modules[__name__].__class__ = _Module
"""


def test_a_sentinel_of_a_module_of_a_module_subclass_keys_by_its_modules_name(
        tmp_path: Path) -> None:
    """A sentinel of a module whose ``__class__`` is a ``ModuleType`` subclass (a
    ``__getattr__`` of deprecations) keys by that module's name: alike in every process,
    and apart from another script's own ``MISSING = object()``. Before, such a module was
    not searched: a token in a process that imports it (a miss in each), and a script's
    ``from shim import MISSING`` keyed ``(__main__, MISSING)``, whose entry another
    script's own ``MISSING`` hit: True."""
    (tmp_path / "shim.py").write_text(_SENTINEL_OF_A_SHIMMED_MODULE)
    scripts = ["import shim\nprint(shim.check(shim.MISSING))",
               "from shim import MISSING, check\nprint(check(MISSING))",
               "from shim import check\nMISSING = object()\nprint(check(MISSING))"]
    assert _printed_and_computed(tmp_path, scripts) == [
        ("True\n", 1), ("True\n", 0), ("False\n", 1)]


_SENTINEL_ALIASED_BY_MAIN = """
import multiprocessing, sys
from memojar import Cache

missing = object()
cache = Cache(sys.argv[1])

@cache.cached
def pick(rows):
    return rows is missing

def misses():
    pick(missing)  # (the worker's own: a sentinel sent by pickle is a new object)
    return pick.cache_info().misses

if __name__ == "__main__":
    default = missing  # a name the script's main block alone makes
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print(misses(), pool.apply(misses))
"""


def test_a_sentinel_the_main_block_names_again_keys_as_in_a_spawned_worker(
        tmp_path: Path) -> None:
    """A sentinel passed that a script's main block also names (``default = missing``)
    keys by the name its module bound first, as in a spawned worker, which does not run
    the block: the worker hits the script's entry. Before, by the name that sorted first
    (``default``): the worker computed again."""
    (tmp_path / "prog.py").write_text(_SENTINEL_ALIASED_BY_MAIN)
    done = subprocess.run([sys.executable, "prog.py", str(tmp_path / "c")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0"]


_LIBRARY_OF_A_SENTINEL = """
import sys
from memojar import Cache

MISSING = object()

@Cache(sys.argv[1]).cached
def pick(rows=MISSING):
    print("computed", file=sys.stderr)
    return "default" if rows is MISSING else "other"
"""


def test_a_sentinel_a_script_imports_keys_as_in_a_script_that_does_not(
        tmp_path: Path) -> None:
    """A script's ``from picks import MISSING`` names the sentinel in ``__main__`` too,
    which a spawned worker or another script does not: it keys by its library's name.
    Before, by ``__main__``'s, the first in order: a miss in every other process."""
    (tmp_path / "picks.py").write_text(_LIBRARY_OF_A_SENTINEL)
    scripts = ["from picks import MISSING, pick\nprint(pick())",
               "import picks\nprint(picks.pick())"]
    assert _printed_and_computed(tmp_path, scripts) == [("default\n", 1), ("default\n", 0)]
