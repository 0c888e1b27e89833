"""The state digest of a global holding many instances (``_keys.state_key``): as fast as the
pickle allows, and the very digest the generic pickler gives (a changed digest would make
every user's entries miss)."""

from __future__ import annotations

import collections
import dataclasses
import functools
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python
from memojar import _identity, _keys


def helper(x: Any) -> Any:
    return x


class Plain:
    def __init__(self, i: Any) -> None:
        self.x = i
        self.name, self.w = (f"p{i}", i * 0.5) if isinstance(i, int) else ("held", None)


@dataclasses.dataclass
class Record:
    x: int
    tags: list[Any] = dataclasses.field(default_factory=list)


class Slots:
    __slots__ = ("a", "b")

    def __init__(self, a: Any, b: Any = None) -> None:
        self.a = a
        if b is not None:
            self.b = b


class MoreSlots(Slots):
    __slots__ = ("a", "c")  # "a" again: one slot of the instance


class SlotsAndDict:
    __slots__ = ("__dict__", "a")

    def __init__(self, a: Any) -> None:
        self.a = a
        self.z = a


class OwnState:
    def __init__(self, i: int) -> None:
        self.i = i

    def __getstate__(self) -> Any:
        return {"only": self.i}


class Name(str):
    pass


def _odd_instances() -> list[Any]:
    """Instances of one plain class that the fast path must hand to the generic one."""
    first, empty, int_key, odd_key, hooked, reduced = (Plain(i) for i in range(6))
    empty.__dict__.clear()
    int_key.__dict__[3] = "an int name"
    odd_key.__dict__[Name("b")] = 1
    hooked.__getstate__ = lambda: {"set": "on the instance"}  # type: ignore[attr-defined]
    reduced.__reduce_ex__ = lambda protocol: (Plain, (99,))  # type: ignore[method-assign]
    held = Plain(6)
    held.__dict__.update(s={"b", "a"}, d={"y": 1, "x": {2, 1}}, f=helper, c=Plain,
                         p=functools.partial(helper, 1), o=collections.OrderedDict(b=1, a=2),
                         big=b"x" * (_keys.BIG_BUFFER + 1), t=(1, [2, {3: 4}]))
    cycle = Plain(7)
    cycle.me = cycle
    return [first, empty, int_key, odd_key, hooked, reduced, held, cycle, Plain(Plain(8))]


def _values() -> dict[str, Any]:
    slots = [Slots(1, 2), Slots(3), Slots.__new__(Slots), Slots("a", {"k": [1]}),
             Slots(frozenset({2, 1}), [Plain(1)])]
    more = MoreSlots(1, 2)
    more.c = {"z": 1, "a": 2}
    mixed = SlotsAndDict(2)
    mixed.__dict__.clear()
    values = {
        "plain": [Plain(i) for i in range(50)],
        "records": [Record(i, [i, {i: "x"}]) for i in range(20)],
        "slots": slots,
        "more slots": [MoreSlots(5, 6), more, MoreSlots(7)],
        "slots and dict": [SlotsAndDict(1), mixed, SlotsAndDict.__new__(SlotsAndDict)],
        "own state": [OwnState(i) for i in range(3)],
        "odd": _odd_instances(),
        "nested": [Plain(Plain(Record(i))) for i in range(5)],
    }
    try:
        import numpy as np
    except ImportError:
        return values
    values["arrays"] = [Plain(np.arange(i, i + 4.0)) for i in range(5)]
    square = np.arange(12.0).reshape(3, 4)
    odd = [np.arange(4, dtype=">i4"), np.array(["2020-01-01"], dtype="datetime64[D]"),
           np.array(3.5), np.zeros(0), np.zeros((2, 0)), square.T, square[:, 1],
           np.asfortranarray(square), np.zeros(2, dtype=[("a", "<i2"), ("b", "f8")]),
           np.zeros((2, 2), dtype=("f4", (2,))), np.array([{"b": 1, "a": 2}], dtype=object),
           np.float16([1, 2]), np.complex64([1j]), np.bool_([True, False]), square[:1],
           np.arange(6.0)[::2], np.frombuffer(b"abcd", dtype="u1")]
    values["odd arrays"] = [Plain(array) for array in [np.zeros(1), *odd]] + odd
    return values


VALUES = _values()


def _generic_digest(value: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[str]]:
    with monkeypatch.context() as patch:
        patch.setattr(_keys, "_StatePickler", _keys._CanonicalPickler)
        return _digest(value)


def _digest(value: Any) -> tuple[Any, list[str]]:
    met: dict[int, Any] = {}
    previous, _identity._walk.met = getattr(_identity._walk, "met", None), met
    try:
        key = _keys.state_key(value)
    finally:
        _identity._walk.met = previous
    return key, [_identity.function_name(item) for item in met.values()]


@pytest.mark.parametrize("name", list(VALUES))
def test_the_state_pickler_gives_the_generic_digest(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same digest, same functions and classes met (so followed), in the same order. (A
    class's identity is computed once a process, meeting its methods then: both runs
    here find it made.)"""
    value = VALUES[name]
    _digest(value)
    generic = _generic_digest(value, monkeypatch)
    assert generic[0] is not None
    assert _digest(value) == generic


FRESH = """
import json, sys
sys.path.insert(0, sys.argv[1])
import pytest
import test_state_walk as t
from memojar import _keys
if sys.argv[2] == "generic":
    _keys._StatePickler = _keys._CanonicalPickler
print(json.dumps([t._digest(value) for value in t.VALUES.values()]))
"""


def test_the_state_pickler_gives_the_generic_digest_in_a_fresh_process() -> None:
    """As above, each class met for the first time in the process (its methods met then)."""
    here = str(Path(__file__).parent)
    assert run_python(FRESH, here, "fast") == run_python(FRESH, here, "generic")


def test_a_state_of_many_instances_looks_each_class_up_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 instances cost 26 µs each at the first call (0.4 s), a class's identity and
    reduction looked up again for each: now once a class, and its instances pickled as
    ``object.__reduce_ex__`` does without the generic path's copies."""
    items = [Plain(i) for i in range(2000)]
    calls = collections.Counter()
    looked_up = _keys.class_identity

    def counting(cls: type) -> Any:
        calls[cls] += 1
        return looked_up(cls)

    monkeypatch.setattr(_keys, "class_identity", counting)
    expected = _generic_digest(items, monkeypatch)
    calls.clear()
    assert _digest(items) == expected
    assert calls[Plain] == 1


def test_the_walk_of_a_global_lists_a_class_once_for_all_its_instances() -> None:
    """``_held`` listed the class of each instance (10,000 times for 10,000 instances), each
    walked again for nothing."""
    items = [Plain(i) for i in range(1000)]
    assert _identity._held(items) == [Plain]
    found = _identity._held([helper, Plain(1), Plain, Record(1), Record(2)])
    assert len(found) == 3
    assert set(found) == {helper, Plain, Record}


NESTED = '''
import sys
sys.path.insert(0, sys.argv[1])
from memojar import _keys
import nested_state
if sys.argv[2] == "met before":
    _keys.state_key([nested_state.WithConfig()])
print(_keys.state_key(nested_state.ITEMS))
'''


def test_a_state_met_inside_a_state_leaves_the_outer_one_as_it_was(tmp_path: Path) -> None:
    """A class met first inside a global's state, whose method has a default of the
    user's class (digested then, a state inside the state): the classes after it are
    digested as before it. Before, the inner digest ended the outer one's state mode, so
    ``ITEMS``' digest differed between a process that had met ``WithConfig`` before and
    one that had not (a miss in every other process)."""
    (tmp_path / "nested_state.py").write_text(
        "class Config:\n"
        "    def __init__(self):\n"
        "        self.scale = 1\n"
        "class WithConfig:\n"
        "    def run(self, config=Config()):\n"
        "        return config\n"
        "class After:\n"
        "    def run(self):\n"
        "        return 2\n"
        "ITEMS = [WithConfig(), After()]\n")
    assert (run_python(NESTED, str(tmp_path), "first here")
            == run_python(NESTED, str(tmp_path), "met before"))


def _changing_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                    times: int) -> Any:
    """A module of ``f`` reading ``TABLE``, whose state another thread adds a key to
    while the identity's walk normalises it (``_keys.normalize``, at its ``probe``),
    ``times`` times."""
    import importlib
    import threading

    (tmp_path / f"{name}.py").write_text(
        "TABLE = {'probe': [0], 'k': 1}\n"
        "def f():\n"
        "    return TABLE['k']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    normalize, left = _keys.normalize, [times]

    def changed_meanwhile(obj: Any) -> Any:
        if obj is module.TABLE["probe"] and left[0]:
            left[0] -= 1
            thread = threading.Thread(target=module.TABLE.__setitem__,
                                      args=(f"late{left[0]}", 2))
            thread.start()  # another thread, while the walk iterates the table
            thread.join(10)
        return normalize(obj)

    monkeypatch.setattr(_keys, "normalize", changed_meanwhile)
    return module


def test_a_global_changed_by_another_thread_while_its_state_is_hashed_is_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A global table that another thread added to while the identity's walk hashed it
    ("dictionary changed size during iteration"): it counted by its type, silently, and
    a later change of it did not change the identity (an old value returned). It is
    hashed again, as it is then."""
    import warnings

    module = _changing_table(tmp_path, monkeypatch, "changing_once", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raced = _identity.dependencies(module.f)
    assert len(module.TABLE) == 3  # it was changed meanwhile
    _identity.forget_dependencies(module.f)
    assert _identity.dependencies(module.f) == raced  # as a walk of it as it is now


def test_a_global_changing_at_each_walk_of_its_state_is_named_in_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A global that another thread changes at each try of the walk counts by its type,
    and a warning names it (before: nothing said so)."""
    from memojar import MemojarWarning

    module = _changing_table(tmp_path, monkeypatch, "changing_always", 100)
    with pytest.warns(MemojarWarning, match=r"changing_always\.TABLE .*changed size"):
        _identity.dependencies(module.f)


def test_closures_whose_tables_another_thread_changed_as_they_were_told_apart_keep_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two closures of one factory, told apart by the table each captures, which another
    thread added to while it was hashed (``sibling_of``, at decoration): both counted by
    their type, silently, shared their keys, and ``fb(1)`` returned ``fa(1)``'s value.
    Each table is hashed again, as it is then."""
    import threading

    import memojar

    normalize, probes = _keys.normalize, {}

    def changed_meanwhile(obj: Any) -> Any:
        table = probes.pop(id(obj), None)
        if table is not None:
            thread = threading.Thread(target=table.__setitem__, args=("late", 2))
            thread.start()  # another thread, while the walk iterates the table
            thread.join(10)
        return normalize(obj)

    def make(table: dict[str, Any]) -> Any:
        def f(x: Any) -> Any:
            return (table["k"], x)
        return f

    def probed(k: int) -> dict[str, Any]:
        table: dict[str, Any] = {"probe": [0], "k": k}
        probes[id(table["probe"])] = table
        return table

    monkeypatch.setattr(_keys, "normalize", changed_meanwhile)
    cache = memojar.Cache(tmp_path / "c")
    fa, fb = cache.cached(make(probed(1))), cache.cached(make(probed(2)))
    assert (fa(1), fb(1)) == ((1, 1), (2, 1))
