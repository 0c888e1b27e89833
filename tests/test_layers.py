"""The modules import one way: command line -> cache -> decorator -> store policy ->
entry format -> keys; backends below the cache, above the store interface. No cycles.
And a backend is its primitives alone: one written here passes the behaviour tests."""

from __future__ import annotations

import ast
import errno
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import memojar
from memojar import Cache
from memojar._store import HEAD_BYTES, Breaker, KeyLock, Store, StoredEntry, header_of

SRC = Path(memojar.__file__).parent


def imports_of(module: Path, top_level: bool = False) -> set[str]:
    """The memojar modules ``module`` imports (at any depth of its code, or at its top
    level only: what importing it imports). Imports under ``if TYPE_CHECKING:`` are left
    out: they never run."""
    found = set()
    tree = ast.parse(module.read_text())
    nodes = tree.body if top_level else list(ast.walk(tree))
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(block.test)
                 for stmt in block.body for n in ast.walk(stmt)}
    modules = {path.stem for path in module.parent.glob("*.py")}
    for node in nodes:
        if not isinstance(node, ast.ImportFrom) or id(node) in type_only:
            continue
        name = "" if node.level == 1 else "memojar" if node.level == 0 else None
        if name is None or not (node.module or "").startswith(name):
            continue
        below = (node.module or "").removeprefix(name).lstrip(".")
        if below:  # from ._x import y, from memojar._x import y
            found.add(below.split(".")[0])
        else:  # from . import _x, from memojar import _x (or a name of the package's)
            found.update(a.name if a.name in modules else "__init__" for a in node.names)
    return (found & modules) - {module.stem}  # a module importing itself is no cycle


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (module -> the modules it imports), or None."""
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name):], name]
        if name in done:
            return None
        for dep in sorted(graph.get(name, ())):
            found = visit(dep, (*path, name))
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name, ())
        if found:
            return found
    return None


def test_the_import_graph_has_no_cycles() -> None:
    """Counting the imports inside functions too (run later, but still an arrow back up),
    and leaving out those under ``TYPE_CHECKING`` (never run: ``_ledger`` names
    ``_store.StoredEntry`` in its types). ``_identity`` keys values with ``_keys.make_key``,
    which keys functions by ``_identity``: ``_keys`` hands it ``make_key`` when imported."""
    graph = {path.stem: imports_of(path) for path in SRC.glob("*.py")}
    cycle = _cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or ())}"


@pytest.mark.parametrize("statement", [
    "from ._a import f", "from . import _a", "from memojar import _a",
    "from memojar._a import f", "def g():\n    from ._a import f",
])
def test_the_cycle_check_sees_every_form_of_import(tmp_path: Path, statement: str) -> None:
    (tmp_path / "_a.py").write_text("from ._b import h\n")
    (tmp_path / "_b.py").write_text(statement + "\n")
    graph = {path.stem: imports_of(path) for path in tmp_path.glob("*.py")}
    assert _cycle(graph) == ["_a", "_b", "_a"]


def test_the_cycle_check_leaves_out_type_checking_imports(tmp_path: Path) -> None:
    (tmp_path / "_a.py").write_text("from ._b import h\n")
    (tmp_path / "_b.py").write_text("from typing import TYPE_CHECKING\n"
                                    "if TYPE_CHECKING:\n    from ._a import f\n")
    graph = {path.stem: imports_of(path) for path in tmp_path.glob("*.py")}
    assert graph == {"_a": {"_b"}, "_b": set()}
    assert _cycle(graph) is None


def test_the_decorator_and_stores_never_import_the_cache() -> None:
    for low in ("_decorator", "_store", "_filestore", "_redisstore", "_locks", "_entry",
                "_keys", "_identity"):
        assert "_cache" not in imports_of(SRC / f"{low}.py"), low
        assert "_cli" not in imports_of(SRC / f"{low}.py"), low


def test_stores_never_import_the_decorator() -> None:
    for low in ("_store", "_filestore", "_redisstore", "_locks", "_entry", "_keys"):
        assert "_decorator" not in imports_of(SRC / f"{low}.py"), low


# --- a new backend needs only its primitives ------------------------------------------------

class DictStore(Store):
    """A whole backend in primitives: entries in a dict of this process. Everything else
    (trust, whole headers for ``scan``, the LRU decision and size accounting under
    ``max_size``, refusing oversized entries, logging removals) is ``Store``'s."""

    def __init__(self, max_size: int | None = None) -> None:
        self.location = "dict:"
        self.max_size = max_size
        self.entries: dict[tuple[str, str], tuple[bytes, float]] = {}  # -> (bytes, accessed)
        self.locks: dict[tuple[str, str], threading.Lock] = {}
        self.ranges: list[tuple[int, int]] = []  # what ``scan`` asked for (a test looks)

    def _read(self, function: str, key: str) -> bytes | None:
        found = self.entries.get((function, key))
        if found is None:
            return None
        self.entries[function, key] = (found[0], time.time())  # the access, for the LRU
        return found[0]

    def _write(self, function: str, key: str, views: list[memoryview], size: int,
               expires: float | None) -> None:
        self.entries[function, key] = (b"".join(views), time.time())

    def delete(self, function: str, key: str) -> bool:
        return self.entries.pop((function, key), None) is not None

    def lock(self, function: str, key: str) -> KeyLock:
        return _DictLock(self.locks.setdefault((function, key), threading.Lock()))

    def _list(self, function: str | None, heads: bool) -> Iterator[StoredEntry]:
        for (fn, key), (data, accessed) in list(self.entries.items()):
            if function is None or fn == function:
                yield StoredEntry(fn, key, len(data), accessed, b"", f"dict:{fn}/{key}")

    def _read_range(self, entry: StoredEntry, start: int, end: int) -> bytes | None:
        self.ranges.append((start, end))
        found = self.entries.get((entry.function_dir, entry.key))
        return None if found is None else found[0][start:end]

    def _unlink(self, entries: Sequence[StoredEntry]) -> list[StoredEntry]:
        return [e for e in entries if self.delete(e.function_dir, e.key)]


class _DictLock(KeyLock):
    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def acquire(self, blocking: bool = True) -> bool:
        return self._lock.acquire(blocking)

    def release(self) -> None:
        self._lock.release()


def _counted(cache: Cache) -> tuple[Any, list[int]]:
    calls: list[int] = []

    @cache.cached
    def triple(x: int) -> bytes:
        calls.append(x)
        return bytes(1000) + str(3 * x).encode()

    return triple, calls


def test_a_backend_of_primitives_alone_hits_and_misses() -> None:
    triple, calls = _counted(Cache(store=DictStore()))
    assert triple(1) == triple(1) == bytes(1000) + b"3"
    assert triple(2).endswith(b"6")
    assert calls == [1, 2]


def test_a_backend_of_primitives_alone_is_listed_with_whole_headers() -> None:
    store = DictStore()
    cache = Cache(store=store)
    triple, _ = _counted(cache)
    triple(1)
    triple(2)
    listed = list(cache.entries())  # from headers: the policy read them
    assert sorted(e.key for e in listed) == sorted(triple.cache_key(x) for x in (1, 2))
    assert {(0, HEAD_BYTES)} <= set(store.ranges)  # the policy read the first bytes
    assert all(header_of(e) is not None for e in store.scan())


def test_a_backend_of_primitives_alone_evicts_least_recently_used() -> None:
    store = DictStore(max_size=5500)  # four entries of about 1,250 bytes, not five
    triple, calls = _counted(Cache(store=store))
    for x in range(3):
        triple(x)
        time.sleep(0.01)  # distinct access times
    triple(0)  # now 1 is the least recently used
    for x in range(3, 6):
        triple(x)
        time.sleep(0.01)
    assert sum(len(d) for d, _ in store.entries.values()) <= 5500
    calls.clear()
    triple(0)
    triple(1)
    assert calls == [1]  # 0 was used since, 1 was evicted


def test_a_backend_of_primitives_alone_refuses_an_entry_larger_than_max_size() -> None:
    store = DictStore(max_size=100)
    with pytest.raises(OSError, match="larger than the cache's max_size"):
        store.write("f", "0" * 32, [bytes(101)])
    assert store.entries == {}


def test_a_backend_of_primitives_alone_is_cleared_and_pruned() -> None:
    store = DictStore()
    cache = Cache(store=store)
    triple, calls = _counted(cache)
    triple(1)
    store.entries["other", "f" * 32] = (b"not an entry", time.time())
    assert cache.prune() == 1  # the unreadable one
    assert list(store.entries) == [(triple.__memojar__.name, triple.cache_key(1))]
    assert cache.clear() == 1
    assert store.entries == {}
    triple(1)
    assert calls == [1, 1]


def test_an_entry_shorter_than_its_header_says_is_listed_as_unreadable() -> None:
    store = DictStore()
    triple, _ = _counted(Cache(store=store))
    triple(1)
    ((name, data),) = [(k, v[0]) for k, v in store.entries.items()]
    cut = data[:40]  # its header promises more than is there
    store.entries[name] = (cut, time.time())
    (entry,) = store.scan()
    assert entry.head == cut and header_of(entry) is None


class _LateDictStore(DictStore):
    """Stores the entry, then its answer does not come: a ``TimeoutError`` of the backend's."""

    def _write(self, function: str, key: str, views: list[memoryview], size: int,
               expires: float | None) -> None:
        super()._write(function, key, views, size, expires)
        raise TimeoutError(errno.ETIMEDOUT, "no answer in time")

    def _holds(self, function: str, key: str, head: bytes, timed_out: bool) -> bool:
        return self.entries[function, key][0].startswith(head)


class _ServerDictStore(_LateDictStore):
    reads_back = True


@pytest.mark.parametrize("backend", [_LateDictStore, _ServerDictStore],
                         ids=["file-system-like", "reads back"])
def test_a_write_that_timed_out_is_read_back_only_by_a_backend_that_declares_it(
        backend: type[DictStore]) -> None:
    """``reads_back`` is the backend's capability, declared beside ``remote`` and the
    others: a backend declaring it has a write that timed out read back (here: stored, so
    the write succeeds); one that does not (a file system's timeout) fails, its ``_holds``
    never asked, whatever it writes."""
    store = backend()
    if backend.reads_back:
        assert store.write("f", "0" * 32, [b"entry"]) == 5
    else:
        with pytest.raises(TimeoutError, match="no answer in time"):
            store.write("f", "0" * 32, [b"entry"])


class _LostDictStore(DictStore):
    """The connection drops before the entry is stored: the write's answer is lost, and
    the entry read back is not there."""

    def _write(self, function: str, key: str, views: list[memoryview], size: int,
               expires: float | None) -> None:
        raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")

    def _holds(self, function: str, key: str, head: bytes, timed_out: bool) -> bool:
        return (function, key) in self.entries


class _Value:
    """An argument or a result, to see whether it was freed."""


def test_a_write_whose_answer_was_lost_and_not_stored_frees_the_call_without_the_collector(
) -> None:
    """The write's error raised again by the frame that read the entry back (``_confirm``)
    stayed in it, and its traceback held that frame: a cycle holding the argument, the
    result and the frames of the call until the collector ran."""
    import gc
    import weakref

    @Cache(store=_LostDictStore()).cached
    def make(value: _Value) -> _Value:
        return _Value()

    argument = _Value()
    freed = weakref.ref(argument)
    gc.collect()
    gc.disable()
    try:
        with pytest.warns(memojar.MemojarWarning, match="connection reset by peer"):
            result = make(argument)
        returned = weakref.ref(result)
        del argument, result
        assert freed() is None
        assert returned() is None
    finally:
        gc.enable()


# --- what remote backends share: failing fast after a fault, the lock's waiting loop ---------

def test_a_tripped_breaker_fails_fast_with_the_fault_until_its_pause_is_over() -> None:
    breaker = Breaker("test:", every=0.2)
    breaker.check()  # up: nothing raised
    breaker.trip(ConnectionError(111, "cannot reach the server"))
    with pytest.raises(ConnectionError, match="cannot reach the server"):
        breaker.check()
    time.sleep(0.25)
    breaker.check()  # the pause is over: calls try the server again
    assert not breaker.down


def test_a_tripped_breaker_with_a_probe_is_up_when_the_probe_answers() -> None:
    answers = threading.Event()

    def probe() -> None:
        if not answers.is_set():
            raise OSError("still down")

    breaker = Breaker("test:", every=0.01, probe=probe)
    breaker.trip(TimeoutError(110, "no answer"))
    time.sleep(0.1)
    with pytest.raises(TimeoutError, match="no answer"):
        breaker.check()  # the probe has not answered: still down, however long
    answers.set()
    deadline = time.monotonic() + 10
    while breaker.down:
        assert time.monotonic() < deadline, "the probe's answer never brought it up"
        time.sleep(0.01)
    breaker.check()
    breaker.close()


class _Busy(KeyLock):
    """Taken on the third try; remembers the pauses the base loop asked for."""

    def __init__(self) -> None:
        self.tries = 0
        self.pauses: list[float] = []

    def _try(self) -> bool:
        self.tries += 1
        return self.tries >= 3

    def _pause(self, pause: float) -> float:
        self.pauses.append(pause)
        return pause

    def release(self) -> None:
        pass


def test_the_base_lock_loop_tries_with_growing_pauses_and_never_waits_unasked() -> None:
    lock = _Busy()
    assert lock.acquire(blocking=False) is False and lock.pauses == []
    lock.tries = 0
    assert lock.acquire() is True
    assert lock.tries == 3 and lock.pauses[1] == 2 * lock.pauses[0]
