"""Attacks on error handling: the caller's exceptions are the caller's.

memojar catches the errors of its own system calls and nothing else. A ``TimeoutError``
raised by the caller's ``SIGALRM`` handler while memojar waits for a lock or reads an entry,
and whatever the cached function raises, reach the caller. A failure to load an entry that
says something about this process (no memory, a module missing here) recomputes without
deleting the entry other processes may still use.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import gc
import os
import signal
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from faultkit import entry_files, finish, read_line, spawn

from memojar import Cache, MemojarWarning

# --- the caller's SIGALRM ------------------------------------------------------------------


class Deadline(Exception):
    """A timeout that is no ``OSError``, as stopit's, interruptingcow's or a user's own."""


# Before, only a ``TimeoutError`` was taken for the caller's: a ``Deadline`` raised while
# the key was made became a ``TypeError`` ("cannot be pickled"), one while an entry loaded
# removed the entry and ran the function past the deadline, one while the result was
# pickled gave a false warning and the call returned.
DEADLINES = pytest.mark.parametrize("deadline", [TimeoutError, Deadline])


@contextmanager
def alarm_in(seconds: float, deadline: type[Exception] = TimeoutError) -> Iterator[None]:
    """Raise ``deadline("deadline")`` from a SIGALRM handler ``seconds`` from now.

    Another exception out of the block says whether the handler ran, and where: the
    deadline swallowed there, or never raised (once in 21 CI runs, on 3.10, a wait went on
    to its ``lock_timeout``; six runs again passed).

    The timer repeats, the handler raising once: a signal landing between CPython's last
    look for signals and a blocking system call it then enters is handled only when that
    call returns (CPython's race, with any code: 26 in 3,000 for a ``recv``); the next one
    interrupts it. A deadline swallowed is not raised again."""
    ran: list[str] = []

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        if ran:
            return
        ran.append("".join(traceback.format_stack(frame)))
        raise deadline("deadline")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
    try:
        yield
    except Exception as exc:
        if isinstance(exc, deadline):
            raise
        where = (f"the handler raised the deadline at\n{ran[0]}and it was lost" if ran
                 else "the handler never ran")
        raise AssertionError(f"{type(exc).__name__} instead of the deadline: {where}") from exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


HOLDER = """
import os, time
from memojar import Cache

lock = Cache(os.environ["CACHE"]).store.lock(os.environ["NAME"], os.environ["KEY"])
assert lock.acquire(blocking=False)
print("held", flush=True)
time.sleep(60)
"""


def test_alarm_while_waiting_for_a_lock_reaches_the_caller(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", lock_timeout=30)
    calls = []

    @cache.cached
    def double(x):
        calls.append(x)
        return x * 2

    holder = spawn(HOLDER, CACHE=cache.directory, NAME=double.__memojar__.name,
                   KEY=double.cache_key(3))
    try:
        assert read_line(holder, timeout=30) == "held"
        start = time.monotonic()
        with alarm_in(0.3), pytest.raises(TimeoutError, match="deadline"):
            double(3)
        elapsed = time.monotonic() - start
    finally:
        holder.kill()
        holder.communicate()
    assert elapsed < 5  # the caller's deadline, not the lock's
    assert calls == []


_load_delay = [0.0]


def _rebuild(value: int) -> SlowToLoad:
    time.sleep(_load_delay[0])
    return SlowToLoad(value)


class SlowToLoad:
    """A value whose unpickling takes ``_load_delay`` seconds."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return _rebuild, (self.value,)


@DEADLINES
def test_alarm_while_loading_an_entry_reaches_the_caller_and_keeps_the_entry(
    tmp_path: Path, deadline: type[Exception],
) -> None:
    cache = Cache(tmp_path / "cache")
    calls = []

    @cache.cached
    def make(x):
        calls.append(x)
        return SlowToLoad(x)

    assert make(5).value == 5
    before = entry_files(cache.directory)
    _load_delay[0] = 10.0
    try:
        start = time.monotonic()
        with alarm_in(0.2, deadline), pytest.raises(deadline, match="deadline"):
            make(5)
        assert time.monotonic() - start < 8  # the alarm's 0.2 s, not the 10 s: a hang's limit
    finally:
        _load_delay[0] = 0.0
    assert calls == [5]  # not recomputed past the caller's deadline
    assert entry_files(cache.directory) == before  # and the good entry is still there
    assert make(5).value == 5
    assert calls == [5]


@DEADLINES
def test_alarm_while_loading_a_stale_value_reaches_the_caller(
    tmp_path: Path, deadline: type[Exception],
) -> None:
    """An entry expired within ``stale_while_revalidate``: before, a deadline while its
    value loaded was taken for the entry's failure, and the call computed past it."""
    calls = []

    @Cache(tmp_path / "cache").cached(ttl=0.05, stale_while_revalidate=60)
    def make(x):
        calls.append(x)
        return SlowToLoad(x)

    make(5)
    time.sleep(0.1)
    _load_delay[0] = 10.0
    try:
        start = time.monotonic()
        with alarm_in(0.2, deadline), pytest.raises(deadline, match="deadline"):
            make(5)
        assert time.monotonic() - start < 8
    finally:
        _load_delay[0] = 0.0
    assert calls == [5]


@DEADLINES
def test_alarm_while_cache_explain_loads_an_entry_reaches_the_caller(
    tmp_path: Path, deadline: type[Exception],
) -> None:
    """Before, ``cache_explain`` raised only an ``OSError`` with no errno again: another
    deadline was explained as "payload does not load"."""

    @Cache(tmp_path / "cache").cached
    def make(x):
        return SlowToLoad(x)

    make(5)
    _load_delay[0] = 10.0
    try:
        with alarm_in(0.2, deadline), pytest.raises(deadline, match="deadline"):
            make.cache_explain(5)
    finally:
        _load_delay[0] = 0.0
    assert make.cache_explain(5).startswith("hit")


def test_alarm_while_reading_an_entry_file_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache(tmp_path / "cache")

    @cache.cached
    def double(x):
        return x * 2

    assert double(2) == 4
    real_read = os.read

    def read_then_alarm(fd: int, n: int) -> bytes:  # the signal lands during the read
        data = real_read(fd, n)
        signal.raise_signal(signal.SIGALRM)
        return data

    with alarm_in(60), monkeypatch.context() as patch:
        patch.setattr(os, "read", read_then_alarm)
        with pytest.raises(TimeoutError, match="deadline"):
            double(2)


# --- the function's own exceptions -----------------------------------------------------------

RAISED = [
    FileNotFoundError(errno.ENOENT, "No such file or directory", "input.csv"),
    TimeoutError("the service did not answer"),
    OSError("plain"),
    PermissionError(errno.EACCES, "Permission denied"),
]


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
def test_the_functions_oserrors_reach_the_caller(tmp_path: Path, exc: OSError) -> None:
    cache = Cache(tmp_path / "cache")

    @cache.cached
    def load(x):
        raise exc

    with pytest.raises(type(exc)) as raised:
        load(1)
    assert raised.value is exc
    assert entry_files(cache.directory) == []


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
def test_the_coroutines_oserrors_reach_the_caller(tmp_path: Path, exc: OSError) -> None:
    cache = Cache(tmp_path / "cache")

    @cache.cached
    async def load(x):
        raise exc

    with pytest.raises(type(exc)) as raised:
        asyncio.run(load(1))
    assert raised.value is exc


# --- loads that fail because of this process ---------------------------------------------------

_fail_load: list[BaseException] = []


@contextmanager
def _loads_failing(exc: BaseException) -> Iterator[None]:
    """Within it, every ``Fragile`` loaded raises ``exc``."""
    _fail_load.append(exc)
    try:
        yield
    finally:
        _fail_load.clear()


def _rebuild_or_fail(value: int) -> Fragile:
    if _fail_load:
        raise _fail_load[0]
    return Fragile(value)


class Fragile:
    """A value whose unpickling raises whatever ``_fail_load`` holds."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return _rebuild_or_fail, (self.value,)


@pytest.mark.parametrize("exc", [MemoryError(), ImportError("no module named 'extra'")],
                         ids=lambda e: type(e).__name__)
def test_a_load_that_fails_for_this_process_recomputes_but_keeps_the_entry(
    tmp_path: Path, exc: BaseException
) -> None:
    cache = Cache(tmp_path / "cache")
    calls = []

    @cache.cached
    def make(x):
        calls.append(x)
        if len(calls) > 1:
            raise RuntimeError("the recomputation fails here too")
        return Fragile(x)

    assert make(1).value == 1
    entry = entry_files(cache.directory)
    with _loads_failing(exc), pytest.raises(RuntimeError, match="recomputation fails"):
        make(1)
    assert calls == [1, 1]  # recomputed
    assert entry_files(cache.directory) == entry  # and the entry is still there for others
    assert make(1).value == 1  # once the process can load it again, it hits
    assert calls == [1, 1]


def test_a_load_that_fails_for_its_content_still_discards_the_entry(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    calls = []

    @cache.cached
    def make(x):
        calls.append(x)
        if len(calls) > 1:
            raise RuntimeError("the recomputation fails")
        return Fragile(x)

    make(1)
    with _loads_failing(ValueError("bad state")), pytest.raises(RuntimeError,
                                                                match="recomputation fails"):
        make(1)
    assert entry_files(cache.directory) == []  # an entry that cannot load is gone


def _mapped(entry: Path) -> bool:
    with open("/proc/self/maps") as maps:
        return any(str(entry) in line for line in maps)


@pytest.mark.parametrize(
    "exc", [MemoryError(), ImportError("no module named 'extra'"), ValueError("bad state")],
    ids=lambda e: type(e).__name__)
def test_an_entry_that_fails_to_load_is_let_go_before_the_recomputation(
    tmp_path: Path, exc: BaseException
) -> None:
    # The recomputation of a large entry that did not load (out of memory in this
    # process: the very case where the memory is needed) runs with the entry's buffer
    # released. Before, the failed load's traceback held the entry's mapping in a
    # reference cycle (the exception, its frames, their locals), until the cyclic
    # collector ran: a recomputation that fits in memory alone raised MemoryError.
    cache = Cache(tmp_path / "cache")
    held = []

    @cache.cached
    def make(x):
        if held:
            held.append(_mapped(entry))
        return Fragile(bytes(2 << 20))  # 2 MiB: an entry the file store maps

    make(1)
    [entry] = entry_files(cache.directory)
    held.append("recomputing")
    gc.disable()  # the collector would break the cycle at a moment of its own
    try:
        with _loads_failing(exc):
            assert len(make(1).value) == 2 << 20
    finally:
        gc.enable()
    assert held == ["recomputing", False]


def test_a_failed_load_leaves_the_exception_its_caller_handles_whole(tmp_path: Path) -> None:
    # Letting go of a failed load's tracebacks stops at the load's own exceptions: the one
    # the caller was handling when it called (the load's error's __context__) keeps its
    # traceback, for its own `raise` or logging. Before, it was dropped too.
    cache = Cache(tmp_path / "cache")

    @cache.cached
    def make(x):
        return Fragile(x)

    make(1)
    with _loads_failing(ImportError("no module named 'extra'")):
        try:
            raise KeyError("the caller's own")
        except KeyError as caught:
            assert make(1).value == 1  # the entry did not load: recomputed
            assert caught.__traceback__ is not None


MODULE = """
class Point:
    def __init__(self, x):
        self.x = x
"""

IMPORT_JOB = """
import os, sys
if os.environ.get("BLOCK"):
    sys.modules["pointmod"] = None  # the module is missing in this one process
from memojar import Cache

cache = Cache(os.environ["CACHE"])

@cache.cached
def point(x):
    import pointmod
    return pointmod.Point(x)

try:
    print(point(3).x, point.cache_info().misses, flush=True)
except ImportError as exc:
    print("ImportError", flush=True)
"""


def test_a_module_missing_in_one_process_does_not_delete_the_entry(tmp_path: Path) -> None:
    (tmp_path / "pointmod.py").write_text(MODULE)
    env = {"CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(tmp_path)}
    assert finish(spawn(IMPORT_JOB, **env), timeout=60).split() == ["3", "1"]
    entry = entry_files(tmp_path / "cache")
    assert finish(spawn(IMPORT_JOB, BLOCK="1", **env), timeout=60).split() == ["ImportError"]
    assert entry_files(tmp_path / "cache") == entry
    assert finish(spawn(IMPORT_JOB, **env), timeout=60).split() == ["3", "0"]  # still a hit


_dump_delay = [0.0]


class SlowToStore:
    """A value whose pickling takes ``_dump_delay`` seconds."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[object, tuple[int]]:
        time.sleep(_dump_delay[0])
        return SlowToStore, (self.value,)


@DEADLINES
def test_alarm_while_storing_a_result_reaches_the_caller(tmp_path: Path,
                                                        deadline: type[Exception]) -> None:
    cache = Cache(tmp_path / "cache")

    @cache.cached
    def make(x):
        return SlowToStore(x)

    _dump_delay[0] = 10.0
    try:
        start = time.monotonic()
        with alarm_in(0.2, deadline), pytest.raises(deadline, match="deadline"):
            make(1)  # not a "cannot be pickled" warning: the caller's deadline
        assert time.monotonic() - start < 8  # the alarm's 0.2 s, not the 10 s: a hang's limit
    finally:
        _dump_delay[0] = 0.0
    assert entry_files(cache.directory) == []


@DEADLINES
def test_alarm_while_making_the_key_reaches_the_caller(tmp_path: Path,
                                                      deadline: type[Exception]) -> None:
    calls = []

    @Cache(tmp_path / "cache").cached
    def make(x):
        calls.append(x)
        return 1

    _dump_delay[0] = 10.0
    try:
        start = time.monotonic()
        with alarm_in(0.2, deadline), pytest.raises(deadline, match="deadline"):
            make(SlowToStore(1))  # not a TypeError "cannot be pickled": the deadline
        assert time.monotonic() - start < 8
    finally:
        _dump_delay[0] = 0.0
    assert calls == []


class SlowGlobal:
    """A global whose pickling takes ``_dump_delay`` seconds (a big model a function reads):
    the identity walk of a function's first call pickles it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self) -> tuple[object, tuple[int]]:
        time.sleep(_dump_delay[0])
        return SlowGlobal, (self.n,)


SLOW = SlowGlobal(3)


@DEADLINES
def test_alarm_while_the_first_call_walks_its_globals_reaches_the_caller(
        tmp_path: Path, deadline: type[Exception]) -> None:
    """Before, the walk passed over the deadline: the function ran past it, stored under an
    identity that counted ``SLOW`` by its type alone, which calls made with another value of
    it then hit (a wrong value)."""
    calls = []

    @Cache(tmp_path / "cache").cached
    def scaled(x):
        calls.append(x)
        return x * SLOW.n

    _dump_delay[0] = 10.0
    try:
        start = time.monotonic()
        with alarm_in(0.2, deadline), pytest.raises(deadline, match="deadline"):
            scaled(2)
        assert time.monotonic() - start < 8
    finally:
        _dump_delay[0] = 0.0
    assert calls == []
    assert scaled(2) == 6
    assert scaled.cache_explain(2).startswith("hit")


class Connection:
    """A live connection: pickling it raises an ``OSError`` of its own (errno None)."""

    def __getstate__(self) -> Any:
        raise ConnectionError("cannot snapshot a live connection")


class Reconnecting:
    """A client that reconnects when unpickled: with its server down, an ``OSError`` of
    its own (errno None), not the caller's."""

    down = False

    def __init__(self, host: str) -> None:
        self.host = host

    def __setstate__(self, state: Any) -> None:
        if Reconnecting.down:
            raise ConnectionError("cannot reach the server")
        self.__dict__.update(state)


CONNECTION = Connection()


def test_a_global_whose_pickling_raises_an_oserror_of_its_own_leaves_calls_working(
        tmp_path: Path) -> None:
    """Before, an ``OSError`` with no errno met in the walk was taken for the caller's
    deadline: every call raised it."""
    @Cache(tmp_path / "cache").cached
    def uses(x):
        return x if CONNECTION is not None else -1

    assert [uses(2), uses(2)] == [2, 2]


def test_an_entry_whose_load_raises_an_oserror_of_its_own_is_recomputed(
        tmp_path: Path) -> None:
    """Before, a ``ConnectionError`` its ``__setstate__`` raised was taken for the caller's:
    every call raised it, and the entry stayed."""
    calls = []

    @Cache(tmp_path / "cache").cached
    def connect(host):
        calls.append(host)
        return Reconnecting(host)

    connect("db1")
    Reconnecting.down = True
    try:
        assert connect("db1").host == "db1"
    finally:
        Reconnecting.down = False
    assert calls == ["db1", "db1"]


def test_cache_explain_of_an_entry_whose_load_raises_an_oserror_of_its_own_says_so(
        tmp_path: Path) -> None:
    """Before, the ``ConnectionError`` its ``__setstate__`` raised was taken for the
    caller's and raised out of ``cache_explain``, which the call itself recomputes."""

    @Cache(tmp_path / "cache").cached
    def connect(host):
        return Reconnecting(host)

    connect("db1")
    Reconnecting.down = True
    try:
        said = connect.cache_explain("db1")
    finally:
        Reconnecting.down = False
    assert said == "miss: payload does not load: ConnectionError: cannot reach the server"


def _handled_by(how: str, deadline: type[Exception]) -> Any:
    """A SIGALRM handler raising ``deadline``, installed ``how`` users install theirs."""

    def raising(signum: int, frame: object) -> None:
        raise deadline("deadline")

    def one_shot(signum: int, frame: object) -> None:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the previous one back, then raise
        raise deadline("deadline")

    class Raising:
        def __init__(self, signum: int, frame: object) -> None:
            raise deadline("deadline")

    class Base:
        def __call__(self, signum: int, frame: object) -> None:
            raise deadline("deadline")

    class Inherits(Base):
        pass

    return {"function": raising, "one-shot": one_shot, "lambda": lambda *args: raising(*args),
            "partial": functools.partial(lambda tag, signum, frame: raising(signum, frame), 1),
            "class": Raising, "inherited __call__": Inherits()}[how]


@pytest.mark.parametrize("how", ["function", "one-shot", "lambda", "partial", "class",
                                 "inherited __call__"])
def test_a_deadline_from_any_kind_of_handler_reaches_the_caller(tmp_path: Path,
                                                                how: str) -> None:
    """Before (found by its code among the handlers installed), a one-shot handler, a
    class and an inherited ``__call__`` were missed: the call ran past the deadline."""
    calls = []

    @Cache(tmp_path / "cache").cached
    def make(x):
        calls.append(x)
        return 1

    previous = signal.signal(signal.SIGALRM, _handled_by(how, Deadline))
    _dump_delay[0] = 10.0
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Deadline, match="deadline"):
            make(SlowToStore(1))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _dump_delay[0] = 0.0
    assert calls == []


def _wrapped(func: Any) -> Any:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:  # one code for every function it wraps
        return func(*args, **kwargs)

    return wrapper


@_wrapped
def _on_term(signum: int, frame: object) -> None:
    raise SystemExit(0)


class _NoPickle:
    @_wrapped
    def __reduce__(self) -> Any:
        raise TypeError("holds a live socket")


def test_a_value_whose_reduce_shares_a_handlers_code_is_still_the_values_failure(
        tmp_path: Path) -> None:
    """A handler and a ``__reduce__`` decorated by one decorator share its wrapper's code:
    found by that code, the value's own failure was taken for the caller's, and the call
    raised instead of returning its value with a warning."""
    @Cache(tmp_path / "cache").cached
    def make(x):
        return _NoPickle()

    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        with pytest.warns(MemojarWarning, match="cannot be pickled"):
            assert isinstance(make(1), _NoPickle)
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the caller's code run inside memojar's own (a handler, a finalizer) -------------------

REENTERED = """
import os, signal, time
import memojar
from memojar import Cache, _control

cache = Cache(os.environ["CACHE"])
case = os.environ["CASE"]
inner = []


class Noisy:
    def __del__(self):  # run when the memory tier drops this result to hold a newer one
        if not inner:
            inner.append(f(100))


@cache.cached(memory=1, ttl=0.05, stale_while_revalidate=600)
def f(x):
    return Noisy() if case == "finalizer" and x < 100 else x


def handler(signum, frame):
    if case == "disabled() block":
        with memojar.disabled():
            inner.append(f(100))
    else:
        inner.append(f(100))


signal.signal(signal.SIGUSR1, handler)
memo = f.__memojar__
if case == "finalizer":
    f(1)
    f(2)  # its fill drops f(1)'s result, holding the memory tier's lock
else:
    f(100)
    time.sleep(0.1)  # stale from now on
    lock = _control.SWITCH._lock if case == "disabled() block" else memo.revalidating_lock
    with lock:  # the signal arrives while this thread holds it (as in a fill, a stale hit)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)  # the handler runs here, on this thread
print(inner == [100])
"""


@pytest.mark.parametrize("case", ["finalizer", "signal handler", "disabled() block"])
def test_the_callers_code_run_inside_memojars_lock_may_call_the_function(
        tmp_path: Path, case: str) -> None:
    """Old: a function's lock (held while the memory tier stores a result and drops the
    oldest, and while a stale hit marks its background recomputation) and the
    ``disabled()`` switch's were not reentrant: a signal handler calling a cached function
    while its thread held one (one handler in a few thousand, every 2 ms, hung the process
    within seconds), or the finalizer of the result the memory tier dropped, waited on its
    own thread for ever."""
    out = finish(spawn(REENTERED, CACHE=str(tmp_path / "c"), CASE=case), timeout=30)
    assert out.split() == ["True"]


REENTERED_REMOTE = """
import os, signal, time, warnings
from memojar import Cache, MemojarWarning

warnings.simplefilter("ignore", MemojarWarning)  # no secret: entries not authenticated
cache = Cache(os.environ["CACHE"])
inner = []


@cache.cached
def f(x):
    return x + 1


signal.signal(signal.SIGUSR1, lambda signum, frame: inner.append(f(100)))
store = cache.store
held = os.environ["HELD"]
lock = store._renewer._mutex if held == "renewer" else store._mutex
assert f(1) == 2
with lock:  # the signal arrives while this thread holds it (taking or giving a lease)
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.05)  # the handler runs here, on this thread: a miss, a lease taken
print(inner == [101])
"""


@pytest.mark.parametrize(("kind", "held"), [("redis", "renewer"), ("redis", "leases"),
                                            ("s3", "renewer")])
def test_a_signal_handler_calling_a_remote_cached_function_inside_its_lease_lock(
        kind: str, held: str, request: pytest.FixtureRequest) -> None:
    """Old: the lease renewer's mutex (held while a lease is noted, its thread started, or
    dropped) and the Redis store's table of leases were plain locks:
    a signal handler calling a cached function on Redis or S3 while its thread held one
    waited on its own thread for ever (SIGALRM every 2 ms calling a Redis function hung
    the process within seconds)."""
    location = str(request.getfixturevalue(f"{kind}_location"))
    out = finish(spawn(REENTERED_REMOTE, CACHE=location, HELD=held), timeout=30)
    assert out.split() == ["True"]
