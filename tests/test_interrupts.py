"""Interrupts and cancellation at every point of a call: a ``KeyboardInterrupt`` (or any
signal handler's exception) raised anywhere in a miss, a hit, a refresh or a ``cache_set``
reaches the caller, and leaves no key lock held, no ``_held`` mark, no temporary file; the
next call, in this process or another, computes or hits at once."""

from __future__ import annotations

import gc
import linecache
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import freed_without_the_collector
from interrupt_kit import SUPPORTED, Injector, Points, every_point
from memojar import Cache, _decorator, _filestore, _locks, _waits

needs_tracing = pytest.mark.skipif(
    not SUPPORTED,
    reason="needs opcode tracing that reports a code object's first traced run "
           "(CPython 3.11 and 3.12 do; 3.10 has none, 3.13.0 reports it from the next run)")


def _left_behind(func: Any, root: Path) -> list[str]:
    """What an interrupted call left behind: a held lock, a mark, a temporary file."""
    left = []
    if _decorator._held.get():
        left.append(f"_held {_decorator._held.get()}")
        _decorator._held.set(())
    if _waits._holder or _waits._waiting:  # a lock or a wait noted for the cycle check
        left.append(f"_waits {_waits._holder} {_waits._waiting}")
        _waits._holder.clear()
        _waits._waiting.clear()
    memo = func.__memojar__
    lock = memo.store.lock(memo.name, func.cache_key(3))
    if lock.acquire(blocking=False):
        lock.release()
    else:
        left.append("the key's lock is held")
    # (pathlib's glob, unlike glob's, also finds the notes' hidden ones: .swept.*.tmp)
    temporary = [str(path) for path in root.rglob("*.tmp")]
    if temporary:
        left.append(f"temporary files {temporary}")
        for path in temporary:
            os.unlink(path)
    return left


# seconds: a next call slower than this hung (a lock left behind is told by _left_behind; the
# size ledger's, a minute's wait). Its time tells nothing less: on a loaded 2-core machine a
# next call that found nothing left has taken over 1.5 s.
HANG = 10.0

SCENARIOS = {
    # name: (cache options, decorator options, before each run, the interrupted call)
    "miss": ({}, {}, lambda f: f.cache_delete(3), lambda f: f(3)),
    "miss with max_size": ({"max_size": 10**6}, {}, lambda f: f.cache_delete(3),
                           lambda f: f(3)),
    "miss with a secret": ({"secret": "s"}, {}, lambda f: f.cache_delete(3), lambda f: f(3)),
    "miss with memory": ({}, {"memory": 8}, lambda f: f.cache_delete(3), lambda f: f(3)),
    "hit": ({}, {}, lambda f: f(3), lambda f: f(3)),
    "refresh": ({}, {}, lambda f: f(3), lambda f: f.refresh(3)),
    "refresh with max_size": ({"max_size": 10**6}, {}, lambda f: f(3), lambda f: f.refresh(3)),
    "delete with max_size": ({"max_size": 10**6}, {}, lambda f: f(3),
                             lambda f: f.cache_delete(3)),
    "cache_set": ({}, {}, lambda f: f.cache_delete(3), lambda f: f.cache_set(6, 3)),
}


@needs_tracing
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_an_interrupt_at_every_point_leaves_nothing_behind(tmp_path: Path,
                                                           scenario: str) -> None:
    cache_options, options, before, call = SCENARIOS[scenario]
    root = tmp_path / "cache"

    @Cache(root, lock_timeout=0.5, **cache_options).cached(**options)
    def f(x: int) -> int:
        return x * 2

    assert f(3) == 6  # folders made, the reader built: the points of a usual call
    points = Points(lambda: call(f), lambda: before(f))
    assert points.count > 10
    assert _broken_at_each(points, lambda: f, root) == []


def _broken_at_each(points: Points, function: Callable[[], Any], root: Path
                    ) -> list[tuple[Any, list[str]]]:
    """Each interrupt point of ``points`` and what it broke: what the interrupted call left
    behind in ``root`` (``_left_behind``), or a next call of ``function()`` that took
    longer than ``HANG`` (a lock left held). Each next call must return 6."""
    broken = []
    for injector in points.interrupts():
        f = function()
        left = _left_behind(f, root)
        start = time.monotonic()
        assert f(3) == 6, injector.where
        took = time.monotonic() - start
        if took > HANG:
            left.append(f"the next call took {took:.2f} s")
        if left:
            broken.append((injector.where, left))
    return broken


@needs_tracing
def test_an_interrupt_at_every_point_of_a_superseded_entrys_discard_leaves_nothing_behind(
        tmp_path: Path) -> None:
    """A call that finds its key's entry written for another identity (here another
    version; in a notebook, a constant bound again) removes it (``_Memo.discard``, the
    store's under the key's lock) and computes: interrupted anywhere in that, the key's lock
    is free and the next call returns the value at once. Before c9735a0, an interrupt as
    the discard's ``acquire`` returned left the lock held for good."""
    root = tmp_path / "cache"
    cache = Cache(root, lock_timeout=0.5)

    def double(x: int) -> int:
        return x * 2

    f = cache.cached(version=1)(double)
    other = cache.cached(version=2)(double)  # same name and key, another identity
    assert f(3) == 6

    def superseded() -> None:  # the key's entry is the other version's
        assert other(3) == 6

    points = Points(lambda: f(3), superseded)
    assert any(code is _filestore.FileStore.discard.__code__ for code, _ in points.path)
    assert _broken_at_each(points, lambda: f, root) == []


@needs_tracing
# (an interrupt as os.scandir returns, before its ``with``: the iterator is closed as it is
# dropped, with this warning, as in any Python code)
@pytest.mark.filterwarnings("ignore:unclosed scandir iterator:ResourceWarning")
def test_an_interrupt_at_every_point_of_a_first_stores_sweep_leaves_nothing_behind(
        tmp_path: Path) -> None:
    """The first store of a new identity sweeps the entries of the one before and notes it
    (``_Memo.sweep``: every call after a notebook cell binds a constant again): interrupted
    anywhere in that, it leaves no temporary file. Before, an interrupt as the note's
    temporary file was made (its name returned, not yet kept) left that file for good."""
    root = tmp_path / "cache"
    cache = Cache(root, lock_timeout=0.5)

    def double(x: int) -> int:
        return x * 2

    made = [cache.cached(version=0)(double)]
    assert made[0](3) == 6

    def another_identity() -> None:  # a version after the last: its first store sweeps
        made[0] = cache.cached(version=made[0].__memojar__.version + 1)(double)

    points = Points(lambda: made[0](3), another_identity)
    assert any(code is _decorator._Memo.sweep.__code__ for code, _ in points.path)
    assert _broken_at_each(points, lambda: made[0], root) == []


SIGINT_LOOP = r"""
import os, pathlib, random, signal, sys, threading, time
from memojar import Cache, _decorator

root = sys.argv[1]
cache = Cache(root, lock_timeout=0.5, max_size=10**7)

@cache.cached
def f(x):
    return [x] * (1 + x % 50)

stop = threading.Event()
def sender():
    while not stop.is_set():
        time.sleep(random.uniform(0.0002, 0.003))
        os.kill(os.getpid(), signal.SIGINT)

# SIGINT raises only inside the ``try`` (not at the loop's own jump back, nor while the
# checks run): the handler runs where CPython's would, and raises while ``inside``.
inside = False
def interrupt(signum, frame):
    if inside:
        raise KeyboardInterrupt
signal.signal(signal.SIGINT, interrupt)
threading.Thread(target=sender, daemon=True).start()
interrupts = problems = 0
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    x = random.randrange(30)
    try:
        inside = True
        if random.random() < 0.3:
            f.cache_delete(x)
        assert f(x) == [x] * (1 + x % 50)
        inside = False
    except KeyboardInterrupt:
        inside = False
        interrupts += 1
        memo = f.__memojar__
        lock = memo.store.lock(memo.name, f.cache_key(x))
        if not lock.acquire(blocking=False):
            problems += 1
            print("held", x, flush=True)
        else:
            lock.release()
        if _decorator._held.get():
            problems += 1
            print("marked", _decorator._held.get(), flush=True)
            _decorator._held.set(())
        stray = list(pathlib.Path(root).rglob("*.tmp"))  # hidden ones too
        for _ in range(40):  # (a write of the statistics thread's under way: it ends)
            stray = [p for p in stray if p.exists()]
            if not stray:
                break
            time.sleep(0.05)
        if stray:
            problems += 1
            print("stray", [str(p) for p in stray], flush=True)
            for p in stray:
                p.unlink(missing_ok=True)
        start = time.monotonic()
        assert f(x) == [x] * (1 + x % 50)
        if time.monotonic() - start > 4.0:  # a hang: a lock left is told above
            problems += 1
            print("slow", flush=True)
stop.set()
print("interrupts", interrupts, "problems", problems, flush=True)
"""


def test_real_sigints_at_random_moments_leave_nothing_behind(tmp_path: Path) -> None:
    """SIGINT sent by a thread every few milliseconds to a process calling (missing and
    hitting) in a loop: after each ``KeyboardInterrupt`` no lock is held, nothing is marked
    held, no temporary file is left, and the next call is right at once."""
    child = subprocess.run(
        [sys.executable, "-c", SIGINT_LOOP, str(tmp_path / "cache"), "5"],
        capture_output=True, text=True, timeout=60,
    )
    last = child.stdout.strip().splitlines()[-1] if child.stdout.strip() else child.stderr
    assert last.startswith("interrupts"), (child.stdout, child.stderr)
    interrupts, problems = int(last.split()[1]), int(last.split()[3])
    assert interrupts > 100
    assert problems == 0, child.stdout


AFTER_A_TRACING_THREAD = r"""
import sys, tempfile, threading
from interrupt_kit import every_point
from memojar import Cache

def tracer(frame, event, arg):
    frame.f_trace_opcodes = True
    return None

thread = threading.Thread(target=lambda: sys.settrace(tracer))  # ends while tracing
thread.start()
thread.join()
f = Cache(tempfile.mkdtemp()).cached(lambda x: x * 2)
print(every_point(lambda: f(3)))
"""


@needs_tracing
def test_the_kit_runs_after_a_thread_ended_while_tracing() -> None:
    """A thread that ends with a tracer set leaves 3.12.1's opcode events on: a frame that
    asked for them with no tracer of its own then crashed the interpreter (the kit's first
    version did, in the full suite, after test_cache_object's threads)."""
    child = subprocess.run([sys.executable, "-c", AFTER_A_TRACING_THREAD],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.returncode == 0, child.stderr[-2000:]
    assert int(child.stdout) > 10


def _folder_in_a_cycle(path: Path) -> tuple[int, os.stat_result]:
    """Cyclic garbage holding a memojar object with a finalizer: an open ``_Folder``, as a
    dropped cache in a reference cycle leaves (its ``__del__`` closes the descriptor)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    st = os.fstat(fd)
    folder = _filestore._Folder(str(path), st)
    folder.fd = fd
    cycle: list[Any] = [folder]
    cycle.append(cycle)
    return fd, st


def _is_open(fd: int, st: os.stat_result) -> bool:
    """Whether ``fd`` is still the folder opened as ``st``: once closed, its number may be
    handed to a file another thread opens (a server's socket in the full suite)."""
    try:
        now = os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


@needs_tracing
def test_the_kit_runs_no_finalizer_of_earlier_garbage_inside_a_traced_call(tmp_path: Path
                                                                          ) -> None:
    """The cycle collector, run inside a traced call, ran the finalizers of garbage earlier
    code left (a ``_Folder.__del__`` in the full suite): memojar code whose points were
    counted in one run and not in the other, and an interrupt raised inside it was lost
    ("Exception ignored"), failing a test at random ("the interrupt at point 88 was
    swallowed"). The kit's runs have the collector off."""
    f = Cache(tmp_path / "cache").cached(lambda x: x * 2)
    assert f(3) == f(3) == 6  # stored, the reader built: the points of a usual hit
    plain = every_point(lambda: f(3))
    during: list[bool] = []

    def call() -> None:
        f(3)
        keep = [[] for _ in range(10_000)]  # allocations past any collector threshold
        during.append(_is_open(*folder) and len(keep) > 0)

    folder = _folder_in_a_cycle(tmp_path)
    assert every_point(call) == plain
    assert during == [True]  # not collected inside the call
    gc.collect()
    assert not _is_open(*folder)  # collected outside it


@needs_tracing
def test_the_kit_reports_an_interrupt_raised_that_did_not_reach_the_caller(tmp_path: Path
                                                                           ) -> None:
    f = Cache(tmp_path / "cache").cached(lambda x: x * 2)
    assert f(3) == 6

    def swallowing() -> None:
        try:
            f(3)
        except KeyboardInterrupt:
            pass

    with pytest.raises(AssertionError, match=r"point 0 \(.*\) was swallowed"):
        Injector(0).run(swallowing)
    assert not Injector(10**6).run(swallowing)  # not reached: no point that far


@needs_tracing
def test_the_kit_runs_a_point_again_after_a_run_that_went_another_way(tmp_path: Path
                                                                      ) -> None:
    """A run that goes another way than the count before its point (from state an earlier
    interrupt left) interrupts another point, or none: the point is run again after a run
    uninterrupted, then after a count; a call that goes another way every other run
    fails, saying so."""
    f = Cache(tmp_path / "cache").cached(lambda x: x * 2)
    assert f(3) == f(3) == 6  # stored, the reader built: the points of a usual hit

    def on_the_count(points: Points, injectors: list[Injector]) -> list[int]:
        return [i.at for i in injectors  # interrupted the count's way
                if i.at is not None and i.path == points.path[: i.at + 1]]

    # the same way every run: each point once
    points = Points(lambda: f(3))
    injectors = list(points.interrupts())
    assert [i.at for i in injectors] == on_the_count(points, injectors)
    assert on_the_count(points, injectors) == list(range(points.count))
    assert points.recounts == 0

    # another way right after an interrupt (a delete first): each point run again
    interrupted = [False]

    def after_an_interrupt() -> None:
        if interrupted[0]:
            f.cache_delete(3)
        interrupted[0] = True
        f(3)
        interrupted[0] = False

    points = Points(after_an_interrupt)
    injectors = list(points.interrupts())
    assert on_the_count(points, injectors) == list(range(points.count))
    assert points.recounts > points.count // 2  # (not at a point of key_of both ways pass)

    # the count a miss, the runs after it hits: counted again, the hit's points all run
    hit = points.count
    f.cache_delete(3)
    points = Points(lambda: f(3))
    assert points.count > hit
    injectors = list(points.interrupts())
    assert points.count == hit
    assert sorted(set(on_the_count(points, injectors))) == list(range(hit))

    runs: list[None] = []

    def alternating() -> None:  # a miss, a hit, a miss, ...
        runs.append(None)
        if len(runs) % 2:
            f.cache_delete(3)
        f(3)

    points = Points(alternating)
    with pytest.raises(AssertionError, match="not reached 4 times"):
        for _ in points.interrupts(start=points.count - 1):
            pass


@needs_tracing
def test_the_kit_runs_code_walking_up_its_callers_frames_at_every_point() -> None:
    """memojar code whose points depend on how deep the call is (``_let_go`` walks up its
    callers' frames, after an entry that did not load) passes the count's points in every
    run: each point is interrupted the count's way, none run again. Before, the count ran
    a frame deeper, and every point after the walk failed "not reached 4 times"."""
    points = Points(lambda: _decorator._let_go(KeyError()))
    injectors = list(points.interrupts())
    assert [i.at for i in injectors if i.path == points.path[: i.at + 1]] == list(
        range(points.count))
    assert points.recounts == 0


_ARMED: list[bool] = []


def _on_alarm(signum: int, frame: Any) -> None:  # the caller's signal handler
    raise OSError("raised by the unpickling")


def _explode() -> str:
    if _ARMED:  # the caller's signal handler runs inside the load: the caller's to handle
        _on_alarm(signal.SIGALRM, sys._getframe())
    return "loaded"


class _Explodes:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_explode, ())


@pytest.mark.parametrize("memory", [None, 4], ids=["store", "memory-tier"])
def test_an_error_raised_by_the_unpickling_leaves_no_cycle(tmp_path: Path,
                                                           memory: int | None) -> None:
    """An exception of the caller's signal handler from a hit's unpickling goes to the
    caller. It was raised as the context of the miss
    whose cause it is, from a frame naming it: cycles that kept the frames of the hit, the
    entry read among them, until the cycle collector ran."""
    import gc

    def explodes(x: int) -> _Explodes:
        return _Explodes()

    Cache(tmp_path).cached(memory=memory)(explodes)(1)
    step = Cache(tmp_path).cached(memory=memory)(explodes)  # reads it from the store
    gc.collect()
    _ARMED.append(True)
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        with pytest.raises(OSError, match="raised by the unpickling"):
            step(1)
        gc.collect()
        kept = [o.f_code.co_name for o in gc.garbage if type(o).__name__ == "frame"
                and "memojar" in o.f_code.co_filename]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        _ARMED.clear()
    assert kept == []


class _Argument:
    """An argument, to see whether it was freed."""


def test_an_interrupt_ending_a_replacement_leaves_no_cycle(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """An interrupt raised in the bump that ends a replacement (``_each``, raising it once
    the rest are done) was kept in the frame raising it again, which its traceback held: a
    cycle holding the frames of the call, its argument among them, until the collector
    ran."""
    bump, left = _filestore.FileStore._bump, [0]

    def interrupted(self: Any, fdir: str, busy: bool = False) -> None:
        bump(self, fdir, busy)
        if not busy and left:
            left.pop()
            raise KeyboardInterrupt

    def replaced(argument: _Argument) -> None:
        step(argument)
        monkeypatch.setattr(_filestore.FileStore, "_bump", interrupted)
        with pytest.raises(KeyboardInterrupt):
            step.refresh(argument)  # replaces the entry

    step = Cache(tmp_path).cached(memory=4)(lambda x: 2)  # a tier: the folder has a stamp
    assert freed_without_the_collector(replaced, _Argument)


A_HANDLER_MAKING_A_CACHE = r"""
import signal, sys, weakref
from memojar import Cache, _cache

root = sys.argv[1]
made, raised = [], []

def handler(signum, frame):
    made.append(Cache(root + "/in-handler"))  # while the main thread is in ``watch``

class Watched(weakref.WeakSet):
    def add(self, item):
        if not raised and signal.getsignal(signal.SIGUSR1) is handler:
            raised.append(True)
            signal.raise_signal(signal.SIGUSR1)  # the handler runs here, the lock held
        super().add(item)

_cache._FLUSHER.caches = Watched(_cache._FLUSHER.caches)
signal.signal(signal.SIGUSR1, handler)
Cache(root + "/main")
signal.signal(signal.SIGUSR1, signal.SIG_DFL)
_cache._FLUSHER.flush()  # the stats thread's lock is free again
print("made", len(made), flush=True)
"""


def test_a_signal_handler_making_a_cache_while_one_is_made_does_not_hang(tmp_path: Path
                                                                          ) -> None:
    """A signal handler (a timer's, a shutdown's) that makes a ``Cache`` while the main
    thread is making one: old, the handler waited for ever on the statistics' lock, which
    the interrupted ``Cache()`` below it held (a plain ``threading.Lock``), and the stats
    thread and every later ``Cache()`` with it. Seen with a 0.5 ms ``SIGALRM`` timer whose
    handler made a cache while the main loop made caches: hung within seconds."""
    try:
        child = subprocess.run(
            [sys.executable, "-c", A_HANDLER_MAKING_A_CACHE, str(tmp_path)],
            capture_output=True, text=True, timeout=HANG * 2,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung: the handler waited for the lock its caller held")
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["made", "1"], (child.stdout, child.stderr)


A_HANDLER_CALLING_THE_KEY_BEING_LOCKED = r"""
import signal, sys, time, warnings
from memojar import Cache, _locks

how = sys.argv[2]
f = Cache(sys.argv[1], lock_timeout=5).cached(lambda x: x * 2)
got = []

def handler(signum, frame):
    start = time.monotonic()
    got.append((f(3), round(time.monotonic() - start)))  # the key this thread is locking

real = _locks._fcntl
def fcntl(fd, command, arg):  # the signal arrives during the system call that locks
    result = real(fd, command, arg)
    if command == _locks._SETLK and arg[0:2] == _locks._FLOCK.pack(
            _locks._WRLCK, 0, 0, 0, 0)[0:2] and not got:
        signal.raise_signal(signal.SIGUSR1)  # runs the handler here, the lock taken
    return result

_locks._fcntl = fcntl
signal.signal(signal.SIGUSR1, handler)
warnings.simplefilter("error")  # a lock_timeout warning fails the run
if how == "miss":
    assert f(3) == 6
else:
    f.cache_set(6, 3)
print(got, flush=True)
"""


@pytest.mark.skipif(not _locks.LOCKS_IN_FUNCTION_DIR, reason="byte-range locks only")
@pytest.mark.parametrize("how", ["miss", "cache_set"])
def test_a_signal_handler_calling_the_key_its_thread_is_locking_does_not_wait(
        tmp_path: Path, how: str) -> None:
    """A signal handler (a timer's) calling a cached function with the key its thread was
    taking the lock of: old, the key was marked held by this thread only once the lock was
    taken, and a signal that arrived during the ``fcntl`` that took it ran the handler
    before that, so the handler's call waited ``lock_timeout`` (600 s by default) for the
    lock of its own thread (a 0.3 ms ``SIGALRM`` timer calling ``f(k)`` while the main
    loop missed ``k``: twice in 80 calls). Now the key is marked first, and the handler's
    call computes at once, as a function calling itself does."""
    try:
        child = subprocess.run(
            [sys.executable, "-c", A_HANDLER_CALLING_THE_KEY_BEING_LOCKED,
             str(tmp_path), how], capture_output=True, text=True, timeout=HANG * 2,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung")
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "[(6, 0)]", (child.stdout, child.stderr)


A_HANDLER_LOGGING_WHILE_THE_LOGGER_IS_MADE = r"""
import signal, sys, types

got = []

class Probe(types.ModuleType):  # met by ``load`` first as it looks for memojar's modules
    def __getattr__(self, name):
        if not got and signal.getsignal(signal.SIGUSR1) is handler:
            signal.raise_signal(signal.SIGUSR1)  # the handler runs here, inside load
        raise AttributeError(name)

sys.modules["memojar.zz_probe"] = Probe("memojar.zz_probe")  # before memojar's own
from memojar import Cache
import logging  # after memojar: its real logger is made at its first log

def handler(signum, frame):  # a miss: asks the logger whether DEBUG is on
    got.append(Cache(sys.argv[1] + "/h").cached(lambda x: x * 2)(3))

signal.signal(signal.SIGUSR1, handler)
f = Cache(sys.argv[1]).cached(lambda x: x * 2)  # the first log: makes the real logger
assert f(2) == 4
print(got, flush=True)
"""


def test_a_signal_handler_logging_while_the_logger_is_made_does_not_hang(tmp_path: Path
                                                                         ) -> None:
    """The first log of a process that imported ``logging`` (a cache made, a miss asking
    whether DEBUG is on) makes memojar's real logger (``_errors._Logger.load``, a loop over
    ``sys.modules``); a signal handler calling a cached function meanwhile logs too: old,
    its ``load`` waited for ever for the plain lock its own thread held."""
    try:
        child = subprocess.run(
            [sys.executable, "-c", A_HANDLER_LOGGING_WHILE_THE_LOGGER_IS_MADE,
             str(tmp_path)], capture_output=True, text=True, timeout=HANG * 2,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung: the handler waited for the lock its caller held")
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "[6]", (child.stdout, child.stderr)


@needs_tracing
@pytest.mark.usefixtures("frozen_heap")  # it collects at each point
def test_an_interrupt_while_the_folder_is_opened_leaves_no_descriptor_open(
        tmp_path: Path) -> None:
    # An interrupt inside _Folder.__init__ (after its descriptor was set, before its inode)
    # made its __del__ fail ("Exception ignored ... no attribute 'ino'") and the folder's
    # descriptor stay open, one a time.
    @Cache(tmp_path / "cache", lock_timeout=0.5).cached
    def f(x: int) -> int:
        return x * 2

    store = f.__memojar__.store

    def before() -> None:
        f.cache_delete(3)
        store._open.clear()  # the miss opens the function's folder again

    def folders_open() -> int:
        folders = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                folders += (os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path))
                            and os.path.isdir(f"/proc/self/fd/{fd}"))
            except OSError:  # listdir's own descriptor, closed
                pass
        return folders

    assert f(3) == 6
    ignored: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, ignored.append
    try:
        leaked = []
        was = folders_open()  # the one the store keeps open
        for injector in Points(lambda: f(3), before).interrupts():
            before()
            assert f(3) == 6, injector.where
            gc.collect()  # the interrupted run's frames, which may hold a folder
            line = linecache.getline(_filestore.__file__, int(injector.where.split()[-1]))
            # (an interrupt as os.open returns loses the number, in any Python code)
            if folders_open() != was and "= os.open(" not in line:
                leaked.append(injector.where)
            was = folders_open()
    finally:
        sys.unraisablehook = hook
    assert [str(u.exc_value) for u in ignored] == []
    assert leaked == []


@needs_tracing
def test_an_interrupt_while_a_wait_is_noted_or_its_note_ended_leaves_no_note(
        tmp_path: Path) -> None:
    """A wait noted for other processes (a read lock above 2**62 in the key's lock file, on
    a description of its own) and ended as ``_lock`` ends it, interrupted at every point:
    no description is left open, nor noted. Before, an interrupt after the description was
    opened and before its end was in ``ends`` (a few points), or inside the end (the
    decorator's loop, the unlock, the close), left it open for the process's life, with
    the locks it held: other processes saw a wait that was over (a cycle broken where
    there was none), and ``prune`` kept the lock file."""
    @Cache(tmp_path / "cache", lock_timeout=0.5).cached
    def f(x: int) -> int:
        return x * 2

    assert f(3) == 6
    memo = f.__memojar__
    lock = memo.store.lock(memo.name, f.cache_key(3))

    def lock_files_open() -> int:
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                n += os.readlink(f"/proc/self/fd/{fd}").endswith("/.lock")
            except OSError:  # listdir's own descriptor, closed
                pass
        return n

    def call() -> None:
        ends: list[Any] = []
        try:
            lock.note_waiting({5, 7}, ends)
        finally:  # as ``_lock`` ends the notes of its wait
            try:
                if ends:
                    _decorator._end_all(ends)
            except BaseException:
                _decorator._end_all(ends)
                raise

    call()
    was = lock_files_open()
    leaked = []
    for injector in Points(call, lambda: None).interrupts():
        lock._note = None
        line = linecache.getline(_locks.__file__, int(injector.where.split()[-1]))
        # (an interrupt as the opener returns loses the number, in any Python code)
        if (_locks._noting or lock_files_open() != was) and "= self._open(" not in line:
            leaked.append((injector.where, dict(_locks._noting)))
        for fd, ident in list(_locks._noting.items()):
            _locks._end_note(fd, ident)
        was = lock_files_open()
    assert leaked == []


def test_a_signal_handlers_timeout_as_a_hit_opens_its_entry_is_the_callers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``SIGALRM`` handler's ``TimeoutError`` (no system call's: no errno) raised as the
    file store opens an entry goes to the caller, the function not run. Before, the open's
    ``except OSError`` took it for a missing entry: the call computed on past the caller's
    deadline."""
    calls: list[int] = []

    @Cache(tmp_path).cached
    def double(x: int) -> int:
        calls.append(x)
        return x * 2

    assert double(1) == 2
    real_open = os.open

    def interrupted(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".pkl"):
            raise TimeoutError("the caller's deadline")  # as a handler raising in the open
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", interrupted)
    with pytest.raises(TimeoutError, match="the caller's deadline"):
        double(1)
    monkeypatch.undo()
    assert double(1) == 2 and calls == [1]
