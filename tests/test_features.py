"""min_compute_time, memojar.disabled(), cache_set, stale_while_revalidate and the memory tier,
in this process and across real processes."""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import memojar
from memojar import Cache, MemojarWarning, cached
from memojar._cache import _cache_for

# --- a module imported here and in other processes --------------------------------------

MODULE = '''
import os, time
from memojar import cached

LOG = {log!r}


def _note(tag):
    with open(LOG, "a") as f:
        f.write(f"{{tag}} {{os.getpid()}}\\n")


@cached(ttl={ttl}, stale_while_revalidate={swr})
def fresh(x):
    _note("fresh")
    time.sleep({delay})
    while os.path.exists(LOG + ".held"):  # a test holds the computation
        time.sleep(0.01)
    with open(LOG + ".value") as f:
        return f.read()


@cached(memory=8)
def held(x):
    _note("held")
    return [x]
'''


def make_module(tmp_path: Path, ttl: float = 60, swr: float = 60, delay: float = 0.0) -> Any:
    """A fresh module (its own name: no other test's import is reused), and its log."""
    folder = tmp_path / "mods"
    folder.mkdir(exist_ok=True)
    name = f"feat_{abs(hash(str(tmp_path))):x}"
    log = tmp_path / "log"
    (folder / f"{name}.py").write_text(MODULE.format(log=str(log), ttl=ttl, swr=swr,
                                                     delay=delay))
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
    module.folder, module.modname = folder, name  # for other processes
    return module


def set_value(module: Any, text: str) -> None:
    Path(module.LOG + ".value").write_text(text)


def notes(module: Any, tag: str) -> list[str]:
    path = Path(module.LOG)
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if line.startswith(tag + " ")]


def spawn(module: Any, code: str, cache_dir: Path) -> subprocess.Popen[str]:
    """Run ``code`` with the module imported as ``m``, in a new interpreter."""
    import os

    source = f"import sys\nsys.path.insert(0, {str(module.folder)!r})\n" \
             f"import {module.modname} as m\n" + textwrap.dedent(code)
    env = {**os.environ, "MEMOJAR_DIR": str(cache_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen([sys.executable, "-c", source], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out.strip()


def wait_for(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def shared_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default cache directory, also for the other processes the test starts."""
    path = tmp_path / "shared"
    monkeypatch.setenv("MEMOJAR_DIR", str(path))
    return path


# --- min_compute_time -------------------------------------------------------------------

def test_a_result_computed_faster_than_min_compute_time_is_returned_not_stored(
    cache_dir: Path,
) -> None:
    calls = []

    @cached(cache_dir=cache_dir, min_compute_time=0.2)
    def quick(x: int) -> int:
        calls.append(x)
        return x * 2

    assert quick(2) == 4
    assert not quick.cache_contains(2)
    assert quick(2) == 4
    assert calls == [2, 2]
    assert quick.cache_info().entries == 0


def test_a_result_slower_than_min_compute_time_is_stored(cache_dir: Path) -> None:
    calls = []

    @cached(cache_dir=cache_dir, min_compute_time=0.05)
    def slow(x: int) -> int:
        calls.append(x)
        time.sleep(0.1)
        return x * 2

    assert slow(2) == 4
    assert slow(2) == 4
    assert calls == [2]


@pytest.mark.parametrize(("value", "error", "match"), [
    (-1, ValueError, r"min_compute_time= must be a finite number of seconds >= 0, got -1"),
    ("1", TypeError, r"min_compute_time= must be seconds \(int or float\), not str"),
    (True, TypeError, r"min_compute_time= must be seconds"),
])
def test_a_bad_min_compute_time_is_refused(cache_dir: Path, value: Any, error: type,
                                           match: str) -> None:
    with pytest.raises(error, match=match):
        cached(cache_dir=cache_dir, min_compute_time=value)


# --- memojar.disabled() and cache_set ----------------------------------------------------

def counting(cache_dir: Path, **options: Any) -> tuple[Any, list[int]]:
    calls: list[int] = []

    @cached(cache_dir=cache_dir, **options)
    def f(x: int) -> int:
        calls.append(x)
        return x + 1

    return f, calls


def test_cache_set_of_a_function_with_a_parameter_named_value(cache_dir: Path) -> None:
    # Before: f.cache_set(10, value=5) raised "got multiple values for argument 'value'",
    # so the call f(value=5) could not be seeded by keyword.
    @cached(cache_dir=cache_dir)
    def scale(value: int, by: int = 2) -> int:
        return value * by

    scale.cache_set(10, value=5)
    assert scale(5) == scale(value=5) == 10
    scale.cache_set(7, 1, by=3)
    assert scale(1, 3) == 7
    assert scale.cache_info().misses == 0


def test_disabled_is_exported() -> None:
    assert "disabled" in memojar.__all__
    assert memojar.disabled is not None


def test_disabled_without_the_call_says_to_call_it() -> None:
    with pytest.raises(TypeError, match=r"write 'with memojar.disabled\(\):'"), \
            memojar.disabled:
        pass


def test_disabled_calls_every_function_straight_through(cache_dir: Path) -> None:
    f, calls = counting(cache_dir)
    g, g_calls = counting(cache_dir / "other")
    f(1)
    g(1)
    with memojar.disabled():
        assert f(1) == 2
        assert g(1) == 2
        assert f(5) == 6
    assert calls == [1, 1, 5]
    assert g_calls == [1, 1]
    assert not f.cache_contains(5)  # nothing written while disabled
    f(1)
    assert calls == [1, 1, 5]  # and the cache is back


def test_disabled_leaves_the_cache_methods_acting(cache_dir: Path) -> None:
    # Only calls go straight through (README: "Off switch"); a method is an explicit ask.
    f, calls = counting(cache_dir)
    with memojar.disabled():
        assert f.refresh(1) == 2
        f.cache_set(9, 2)
        assert f.cache_contains(1) and f.cache_contains(2)
        assert f(2) == 3  # the call itself reads nothing
        assert f.cache_delete(1)
    assert calls == [1, 2]
    assert f(2) == 9 and not f.cache_contains(1)


def test_disabled_with_functions_turns_off_only_those(cache_dir: Path) -> None:
    f, calls = counting(cache_dir)
    g, g_calls = counting(cache_dir / "other")
    f(1)
    g(1)
    with memojar.disabled(f):
        f(1)
        g(1)
    assert calls == [1, 1]
    assert g_calls == [1]


def test_disabled_nests(cache_dir: Path) -> None:
    f, calls = counting(cache_dir)
    f(1)
    with memojar.disabled(f):
        with memojar.disabled():
            f(1)
        f(1)  # the outer block still holds
    f(1)
    assert calls == [1, 1, 1]


def test_disabled_from_many_threads_leaves_the_cache_on_after(cache_dir: Path) -> None:
    f, calls = counting(cache_dir)
    f(1)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(timeout=10)
        for _ in range(200):
            with memojar.disabled(f), memojar.disabled():
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    f(1)
    assert calls == [1]


def test_disabled_refuses_a_plain_function() -> None:
    with pytest.raises(TypeError, match=r"disabled\(\) takes functions decorated with @cached"):
        memojar.disabled(len)


def test_disabled_applies_to_coroutine_functions(cache_dir: Path) -> None:
    import asyncio

    calls = []

    @cached(cache_dir=cache_dir)
    async def f(x: int) -> int:
        calls.append(x)
        return x

    async def main() -> None:
        await f(1)
        with memojar.disabled():
            await f(1)
        await f(1)

    asyncio.run(main())
    assert calls == [1, 1]


def test_cache_set_seeds_the_value_of_a_call(cache_dir: Path) -> None:
    f, calls = counting(cache_dir)
    f.cache_set(100, 3)
    assert f(3) == 100
    assert f(x=3) == 100  # the same call, spelled otherwise
    assert calls == []


def test_cache_set_replaces_a_stored_value(cache_dir: Path) -> None:
    f, calls = counting(cache_dir)
    assert f(3) == 4
    f.cache_set(-1, 3)
    assert f(3) == -1
    assert calls == [3]


def test_cache_set_is_seen_by_another_process(tmp_path: Path, shared_dir: Path) -> None:
    m = make_module(tmp_path)
    m.held.cache_set(["seeded"], 7)
    assert finish(spawn(m, "print(m.held(7))", shared_dir)) == "['seeded']"
    assert notes(m, "held") == []


def test_cache_set_inside_the_function_for_its_own_call_does_not_wait(tmp_path: Path) -> None:
    """cache_set waits for the key's lock (a computation of the call elsewhere stores first);
    the function seeding its own call holds that lock, and must not wait for itself (a
    wait would last lock_timeout, then warn: filterwarnings = error)."""
    cache = Cache(tmp_path / "cache", lock_timeout=5)

    @cache.cached
    def f(x: int) -> str:
        f.cache_set("inner", x)
        return "outer"

    start = time.monotonic()
    assert f(1) == "outer" and f(1) == "outer"  # its own result, stored after the seed
    assert time.monotonic() - start < 4


def test_cache_set_that_waited_too_long_says_it_stores_the_value_given(tmp_path: Path) -> None:
    """Another thread computes the call past lock_timeout: cache_set stores its value anyway,
    and its warning says so (not "computing it here", which a miss would do)."""
    cache = Cache(tmp_path / "cache", lock_timeout=0.2)
    started, release = threading.Event(), threading.Event()

    @cache.cached
    def f(x: int) -> str:
        started.set()
        release.wait(10)
        return "computed"

    computing = threading.Thread(target=f, args=(1,))
    computing.start()
    try:
        assert started.wait(10)
        with pytest.warns(MemojarWarning, match=r"lock_timeout.*storing the value given to "
                          r"cache_set without waiting"):
            f.cache_set("seeded", 1)
    finally:
        release.set()
        computing.join(10)


def test_cache_set_of_a_coroutine_function_does_not_stop_the_event_loop(
    tmp_path: Path,
) -> None:
    """A task of the loop computes f(1), holding the key's lock: cache_set (a plain call)
    from another task must not wait for it, which could not finish while the loop waits."""
    import asyncio

    cache = Cache(tmp_path / "cache", lock_timeout=5)

    async def main() -> tuple[float, str, str]:
        started, release = asyncio.Event(), asyncio.Event()

        @cache.cached
        async def f(x: int) -> str:
            started.set()
            await release.wait()
            return "computed"

        computing = asyncio.create_task(f(1))
        await started.wait()
        start = time.monotonic()
        f.cache_set("seeded", 1)
        took = time.monotonic() - start
        release.set()
        return took, await computing, await f(1)

    took, computed, after = asyncio.run(main())
    assert took < 4 and computed == "computed"
    assert after in ("seeded", "computed")  # the lock was not waited for: either is stored


# --- stale_while_revalidate --------------------------------------------------------------

def test_swr_needs_a_ttl(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"stale_while_revalidate= .* needs ttl="):
        cached(cache_dir=cache_dir, stale_while_revalidate=10)


def test_a_bad_swr_is_refused(cache_dir: Path) -> None:
    with pytest.raises(TypeError, match=r"stale_while_revalidate= must be seconds"):
        cached(cache_dir=cache_dir, ttl=1, stale_while_revalidate="10")


def test_a_stale_value_in_the_window_is_returned_at_once_and_recomputed(
    cache_dir: Path,
) -> None:
    import datetime as dt

    value = ["old"]
    started = threading.Event()

    @cached(cache_dir=cache_dir, ttl=0.3, stale_while_revalidate=dt.timedelta(seconds=30))
    def f(x: int) -> str:
        started.set()
        time.sleep(5 if value[0] == "new" else 0)  # (a loaded machine stalls past 1.5 s)
        return value[0]

    assert f(1) == "old"
    time.sleep(0.35)
    value[0] = "new"
    started.clear()
    # what the call does (before: "stale: expired ...", as if it recomputed)
    assert re.fullmatch(r"stale: expired \S+; returned at once and recomputed in the "
                        r"background \(stale_while_revalidate, until \S+\)",
                        f.cache_explain(1))
    t0 = time.monotonic()
    assert f(1) == "old"  # stale, at once: the recomputation takes 5 s
    assert f(1) == "old"
    assert time.monotonic() - t0 < 4
    assert started.wait(10)
    wait_for(lambda: f(1) == "new")


def test_past_the_window_a_stale_value_is_recomputed_in_the_call(cache_dir: Path) -> None:
    value = ["old"]

    @cached(cache_dir=cache_dir, ttl=0.1, stale_while_revalidate=0.1)
    def f(x: int) -> str:
        return value[0]

    assert f(1) == "old"
    time.sleep(0.3)
    value[0] = "new"
    assert f(1) == "new"


def test_many_threads_in_the_window_start_one_recomputation(cache_dir: Path) -> None:
    calls = []
    recompute = threading.Event()  # the background recomputation waits for the threads

    @cached(cache_dir=cache_dir, ttl=0.2, stale_while_revalidate=30)
    def f(x: int) -> int:
        calls.append(x)
        if len(calls) > 1:
            recompute.wait(30)
        return len(calls)

    assert f(1) == 1
    time.sleep(0.25)
    results = []
    threads = [threading.Thread(target=lambda: results.append(f(1))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [1] * 8
    wait_for(lambda: len(calls) >= 2)  # the recomputation runs in a thread of its own
    time.sleep(0.2)  # any other recomputation the eight started would have begun by now
    assert len(calls) == 2  # one recomputation, started by the first of the eight
    recompute.set()
    wait_for(lambda: f(1) >= 2)


def test_a_failed_background_recomputation_is_logged_and_the_stale_value_stays(
    cache_dir: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    fail = [False]

    @cached(cache_dir=cache_dir, ttl=0.2, stale_while_revalidate=30)
    def f(x: int) -> str:
        if fail[0]:
            raise RuntimeError("the service is down")
        return "old"

    f(1)
    time.sleep(0.25)
    fail[0] = True
    with caplog.at_level(logging.WARNING, logger="memojar"):
        assert f(1) == "old"
        wait_for(lambda: "background recomputation" in caplog.text)
    assert "the service is down" in caplog.text
    assert f(1) == "old"


def test_an_argument_the_caller_changes_after_a_stale_hit_is_not_stored_for_the_old_key(
    cache_dir: Path,
) -> None:
    # The background recomputation runs with the caller's own argument objects, while the
    # caller goes on with them (a list it appends to, a frame it adds a column to). Before,
    # it computed with the changed list and stored that value under the key of the list as
    # it was: total([1, 2]) returned 103 until the entry expired again.
    go = threading.Event()
    calls: list[int] = []

    @cached(cache_dir=cache_dir, ttl=0.5, stale_while_revalidate=30)
    def total(xs: list[int]) -> int:
        calls.append(1)
        go.wait(10)
        return sum(xs)

    go.set()
    data = [1, 2]
    assert total(data) == 3
    time.sleep(0.55)
    go.clear()
    assert total(data) == 3  # stale, recomputed in the background, which waits
    wait_for(lambda: len(calls) == 2)
    data.append(100)  # the caller goes on with its list
    go.set()
    wait_for(lambda: not total.__memojar__.revalidating)
    assert total([1, 2]) == 3 and total([1, 2, 100]) == 103


def test_a_background_recomputation_calling_itself_does_not_wait_for_itself(
    tmp_path: Path,
) -> None:
    """A background recomputation that calls its function with its own key (through an
    ignored argument) once the window has ended computes the inner call at once, as a
    function calling itself does.

    Old: the recomputation held the key's lock unmarked, so the inner call waited
    ``lock_timeout`` for its own thread, and then warned."""
    took: list[float] = []

    @Cache(tmp_path / "cache", lock_timeout=60).cached(
        ttl=0.2, stale_while_revalidate=0.3, ignore=("inner",))
    def f(x: int, inner: bool = False) -> str:
        if inner:
            return "inner"
        if f.cache_info().misses:  # the recomputation: the window ends while it runs
            time.sleep(0.4)
            start = time.monotonic()
            assert f(x, inner=True) == "inner"
            took.append(time.monotonic() - start)
        return "v"

    assert f(1) == "v"
    time.sleep(0.25)
    assert f(1) == "v"  # stale: recomputed in the background
    wait_for(lambda: took, timeout=120)
    assert took[0] < 30  # lock_timeout is 60 s


def test_a_background_recomputation_awaiting_itself_does_not_wait_for_itself(
    tmp_path: Path,
) -> None:
    """The same for an ``async def`` function, whose recomputation is a task of the
    caller's loop."""
    import asyncio

    took: list[float] = []

    @Cache(tmp_path / "cache", lock_timeout=60).cached(
        ttl=0.2, stale_while_revalidate=0.3, ignore=("inner",))
    async def f(x: int, inner: bool = False) -> str:
        if inner:
            return "inner"
        if f.cache_info().misses:
            await asyncio.sleep(0.4)
            start = time.monotonic()
            assert await f(x, inner=True) == "inner"
            took.append(time.monotonic() - start)
        return "v"

    async def main() -> None:
        assert await f(1) == "v"
        await asyncio.sleep(0.25)
        assert await f(1) == "v"  # stale: recomputed in a task of this loop
        deadline = time.monotonic() + 120
        while not took and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    asyncio.run(main())
    assert took and took[0] < 30  # lock_timeout is 60 s


def test_swr_in_a_coroutine_function(cache_dir: Path) -> None:
    import asyncio

    value = ["old"]

    @cached(cache_dir=cache_dir, ttl=0.2, stale_while_revalidate=30)
    async def f(x: int) -> str:
        await asyncio.sleep(0.05)
        return value[0]

    async def main() -> list[str]:
        seen = [await f(1)]
        await asyncio.sleep(0.25)
        value[0] = "new"
        seen.append(await f(1))  # stale at once
        for _ in range(200):
            await asyncio.sleep(0.02)
            if await f(1) == "new":
                seen.append("new")
                break
        return seen

    assert asyncio.run(main()) == ["old", "old", "new"]


def test_processes_in_the_window_get_the_stale_value_and_one_recomputes(
    tmp_path: Path, shared_dir: Path,
) -> None:
    m = make_module(tmp_path, ttl=0.5, swr=60)
    set_value(m, "old")
    assert m.fresh(1) == "old"
    time.sleep(0.6)
    set_value(m, "new")
    # The recomputation is held until all four were served: with a fixed 1.5 s instead, a
    # process started late on a loaded machine came after it had stored, and got "new"
    # (and "at once" was timed, under 1 s). A call that waited for the recomputation now
    # never returns while it is held.
    held, served = Path(m.LOG + ".held"), Path(m.LOG + ".served")
    held.touch()
    code = f"""
        import time
        v = m.fresh(1)
        print(v)
        with open({str(served)!r}, "a") as f:
            f.write(v + "\\n")
        while m.fresh.__memojar__.revalidating:  # the recomputation, if this process won
            time.sleep(0.02)
    """
    procs = [spawn(m, code, shared_dir) for _ in range(4)]
    try:
        wait_for(lambda: served.exists() and len(served.read_text().split()) == 4, 60)
    finally:
        held.unlink()
    outs = [finish(p) for p in procs]
    assert outs == ["old"] * 4
    assert len(notes(m, "fresh")) == 2  # the first call here, one recomputation
    assert m.fresh(1) == "new"


# --- the memory tier ---------------------------------------------------------------------

def test_the_memory_tier_returns_the_same_object(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir, memory=4)
    def f(x: int) -> list[int]:
        return [x]

    first = f(1)
    assert f(1) is first
    assert f.cache_info().hits == 1


def test_the_memory_tier_holds_the_most_recent_results(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir, memory=2)
    def f(x: int) -> list[int]:
        return [x]

    a, b = f(1), f(2)
    f(1)  # 1 is the most recent now
    f(3)  # 2 goes
    assert f(1) is a
    assert f(2) is not b and f(2) == b  # from disk again


def test_the_memory_tier_keeps_calls_of_different_types_apart(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir, memory=8)
    def f(x: Any) -> str:
        return type(x).__name__

    assert [f(1), f(True), f(1.0), f("1"), f(b"1"), f(None)] == [
        "int", "bool", "float", "str", "bytes", "NoneType"]
    assert [f(1), f(True), f(1.0), f((1,)), f(x=1)] == ["int", "bool", "float", "tuple", "int"]


OPTIONS = {"scale": 2}


@pytest.mark.parametrize("keyword_only", [False, True], ids=["default", "kwdefault"])
def test_the_memory_tier_sees_a_default_changed_in_place(cache_dir: Path,
                                                          keyword_only: bool) -> None:
    # A call of plain arguments was looked up by them alone, without the defaults the key
    # binds: before, f(1) returned 2 from memory after OPTIONS["scale"] = 3, where the disk
    # tier keys the default's new content (and a call without memory= returns 3).
    def scaled(x: int, opts: dict[str, int] = OPTIONS) -> int:
        return x * opts["scale"]

    def scaled_kw(x: int, *, opts: dict[str, int] = OPTIONS) -> int:
        return x * opts["scale"]

    f = cached(cache_dir=cache_dir, memory=8)(scaled_kw if keyword_only else scaled)
    OPTIONS["scale"] = 2
    try:
        assert f(1) == 2 and f(1) == 2
        OPTIONS["scale"] = 3
        assert f(1) == 3 and f(1) == 3
        assert f.cache_info()[:2] == (2, 2)
    finally:
        OPTIONS["scale"] = 2


class _StillClock:
    """Stands in for the ``time`` module inside memojar._decorator: its ``time()`` moves
    only when the test moves it (``now``); the rest is the real module's."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_the_memory_tier_honours_ttl(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    clock = _StillClock()  # still: on a loaded machine the second call, a hit, could come past ttl
    monkeypatch.setattr(memojar._decorator, "time", clock)

    @cached(cache_dir=cache_dir, ttl=0.2, memory=4)
    def f(x: int) -> list[int]:
        calls.append(x)
        return [x]

    f(1)
    f(1)
    clock.now += 0.25
    f(1)
    assert calls == [1, 1]


class SlowToPickle:
    """A result whose pickling takes a while (a big result written to a slow disk)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self) -> tuple[Any, ...]:
        time.sleep(0.4)
        return (SlowToPickle, (self.n,))


def test_the_memory_tier_drops_a_computed_value_when_its_entry_expires(
    cache_dir: Path,
) -> None:
    """The entry's ``ttl`` counts from its creation, before its value is pickled and
    written; the memory tier's from no later.

    Old: counted from after the write, so the value was served from memory for as long
    as pickling and writing it took after its entry had gone stale."""
    calls = []

    @cached(cache_dir=cache_dir, ttl=0.6, memory=4)
    def f(x: int) -> SlowToPickle:
        calls.append(x)
        return SlowToPickle(len(calls))

    began = time.time()
    assert f(1).n == 1  # stored at about ``began``, stale from about began + 0.6
    time.sleep(max(0.0, began + 0.8 - time.time()))
    assert not f.cache_contains(1)
    assert f(1).n == 2


@pytest.mark.parametrize("when", ["before the lock", "while waiting"])
def test_the_memory_tier_honours_the_expiry_of_a_value_another_caller_stored(
    tmp_path: Path, when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A miss that finds the value stored by another caller meanwhile (between its look and
    the key's lock, or while it waits for that caller's lock) returns it; the memory tier
    holds it only as long as its entry is fresh, which the writer's ``ttl`` decides too.

    Old: held for this decoration's ``ttl`` counted from now (here none: for good), so the
    value was served from memory long after its entry had expired on disk."""
    calls: list[int] = []
    started, go, waiting = threading.Event(), threading.Event(), threading.Event()
    # memojar's clock stands still until the entry is to expire: the steps between the
    # other caller's write and this one's read (threads handing over, a lock waited for)
    # took more than its ttl on a loaded machine, and this caller then computed itself.
    clock = _StillClock()
    monkeypatch.setattr(memojar._decorator, "time", clock)

    def f(x: int) -> list[int]:
        calls.append(x)
        started.set()
        if when == "while waiting":
            assert go.wait(30)
        return [x, len(calls)]

    short = Cache(tmp_path).cached(ttl=0.3)(f)  # another caller, whose entries expire
    mine = Cache(tmp_path)
    held = mine.cached(memory=4)(f)
    real = mine.store.lock

    class Noted:  # the waiter's lock: says when it found the key held
        def __init__(self, lock: Any) -> None:
            self.lock = lock

        def __getattr__(self, name: str) -> Any:
            return getattr(self.lock, name)

        def acquire(self, blocking: bool = True) -> bool:
            took = bool(self.lock.acquire(blocking))
            if not took:
                waiting.set()
            return took

    def lock(function: str, key: str) -> Any:
        if when == "before the lock" and not calls:
            short(1)  # stored by another caller after this one's look, before its lock
        return Noted(real(function, key))

    mine.store.lock = lock  # type: ignore[method-assign]
    holder = threading.Thread(target=short, args=(1,))
    if when == "while waiting":
        holder.start()  # computes, holding the key
        assert started.wait(30)
        threading.Thread(target=lambda: waiting.wait(30) and go.set()).start()
    try:
        assert held(1) == [1, 1]  # the other caller's value
    finally:
        go.set()
        if holder.ident is not None:
            holder.join(30)
    assert calls == [1]
    clock.now += 0.4  # its entry expires
    assert held(1) == [1, 2]
    assert held(1) == [1, 2]  # held from now on (no ttl here)
    assert calls == [1, 1]


def test_the_memory_tier_sees_this_process_clear_and_delete(cache_dir: Path) -> None:
    f, calls = counting(cache_dir, memory=4)
    f(1)
    f.cache_clear()
    f(1)
    f.cache_delete(1)
    f(1)
    assert calls == [1, 1, 1]


@pytest.mark.parametrize("how", ["cache_clear", "cache_delete"])
def test_the_memory_tier_forgets_at_this_process_clear_after_the_cache_was_deleted_by_hand(
    cache_dir: Path, how: str
) -> None:
    """``rm -rf`` of the cache bumps no stamp: the process's own clear or delete (which then
    finds nothing on disk to remove) must still empty its memory tier."""
    f, calls = counting(cache_dir, memory=4)
    f(1)
    shutil.rmtree(cache_dir)
    f(1)  # held in memory: nothing told this process (see the README's memory tier)
    if how == "cache_clear":
        f.cache_clear()
    else:
        f.cache_delete(1)
    f(1)
    assert calls == [1, 1]


def test_the_memory_tier_sees_refresh_of_the_same_call_spelled_otherwise(
    cache_dir: Path,
) -> None:
    value = [1]

    @cached(cache_dir=cache_dir, memory=4)
    def f(x: int) -> int:
        return value[0]

    assert f(x=1) == 1
    value[0] = 2
    assert f.refresh(1) == 2
    assert f(x=1) == 2
    f.cache_set(3, 1)
    assert f(x=1) == 3


def test_the_memory_tier_sees_another_process_clear(tmp_path: Path, shared_dir: Path) -> None:
    m = make_module(tmp_path)
    first = m.held(1)
    assert m.held(1) is first
    finish(spawn(m, "print(m.held.cache_clear())", shared_dir))
    assert m.held(1) is not first
    assert len(notes(m, "held")) == 2


@pytest.mark.parametrize("how", ["delete", "prune", "cli clear"])
def test_the_memory_tier_sees_another_process_remove_the_entry(
    tmp_path: Path, shared_dir: Path, how: str,
) -> None:
    m = make_module(tmp_path)
    first = m.held(1)
    if how == "delete":
        code = "print(m.held.cache_delete(1))"
    elif how == "prune":  # an entry of older code goes; prune also evicts under max_size
        code = """
            import glob, os
            from memojar import Cache
            [path] = glob.glob(os.path.join(os.environ["MEMOJAR_DIR"], "*", "*", "*.pkl"))
            os.utime(path, (0, 0))
            print(Cache(max_size=1).prune())
        """
    else:
        code = "from memojar._cli import main; main(['clear', '--yes'])"
    finish(spawn(m, code, shared_dir))
    assert m.held(1) is not first
    assert len(notes(m, "held")) == 2


def test_the_memory_tier_sees_another_process_clear_after_the_cache_was_copied_with_hard_links(
    tmp_path: Path, shared_dir: Path,
) -> None:
    """``cp -al`` of the cache (a snapshot, an ``rsync --link-dest`` backup) while a process
    holds a result in memory gives the function's stamp a second name, and a stamp with
    other names is never written in place. Before, another process's ``clear`` then left it
    as it was: the holder returned the cleared value for good (every call of a loop 7 s
    after the clear). Now the clear puts a new stamp at its name, and the holder maps it at
    its statistics thread's next look (``restamp_all``, every few seconds)."""
    from memojar import _decorator

    m = make_module(tmp_path)
    first = m.held(1)
    assert m.held(1) is first
    shutil.copytree(shared_dir, tmp_path / "snapshot", copy_function=os.link)
    finish(spawn(m, "print(m.held.cache_clear())", shared_dir))
    _decorator.restamp_all()  # what the statistics thread does every few seconds
    assert m.held(1) is not first
    assert len(notes(m, "held")) == 2


@pytest.mark.parametrize("how", ["refresh", "cache_set"])
@pytest.mark.parametrize("other", ["without memory=", "MEMOJAR_DISABLE=1"])
def test_the_memory_tier_sees_another_process_without_one_replace_the_entry(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch, how: str, other: str,
) -> None:
    """``refresh`` or ``cache_set`` in a process that keeps no memory tier itself (the
    function decorated there without ``memory=``, or every function off by
    ``MEMOJAR_DISABLE``) replaces the entry: a process holding the old value forgets it.

    Old: only a process with a memory tier of its own bumped the stamp, so the holder
    served the replaced value until it restarted."""
    m = make_module(tmp_path)
    first = m.held(1)
    assert m.held(1) is first
    if other == "MEMOJAR_DISABLE=1":
        monkeypatch.setenv("MEMOJAR_DISABLE", "1")  # for the other process only
        target = "m.held"
    else:
        target = "__import__('memojar').cached(m.held.__wrapped__)"  # the same function
    code = f"print({target}.refresh(1))" if how == "refresh" else f"{target}.cache_set(['s'], 1)"
    finish(spawn(m, code, shared_dir))
    assert m.held(1) == (["s"] if how == "cache_set" else [1])
    assert m.held(1) is not first
    assert len(notes(m, "held")) == (2 if how == "refresh" else 1)


def test_the_memory_tier_sees_another_process_revalidate_the_entry_in_the_background(
    tmp_path: Path, shared_dir: Path,
) -> None:
    """Another process with a shorter ``ttl`` and ``stale_while_revalidate`` serves the
    entry stale and replaces it in the background: a process holding the old value in
    memory forgets it, as after a ``refresh``.

    Old: the background recomputation bumped no stamp, so the holder served the replaced
    value for good (its own ``ttl`` had none), while every other reader got the new one."""
    m = make_module(tmp_path)
    first = m.held(1)
    assert m.held(1) is first
    code = """
        import time
        from memojar import cached
        g = cached(ttl=0.2, stale_while_revalidate=60)(m.held.__wrapped__)  # the same function
        time.sleep(0.3)
        print(g(1))  # stale: served, replaced in the background
        while g.__memojar__.revalidating:
            time.sleep(0.02)
    """
    assert finish(spawn(m, code, shared_dir)) == "[1]"
    assert len(notes(m, "held")) == 2
    assert m.held(1) is not first


@pytest.mark.parametrize("how", ["refresh", "cache_set"])
@pytest.mark.parametrize("written", ["unnamed file", "named temporary file"])
def test_the_memory_tier_sees_a_replacement_whose_writer_was_killed_before_the_bump(
    tmp_path: Path, shared_dir: Path, how: str, written: str,
) -> None:
    """Another process replaces the entry (``refresh``, ``cache_set``) and is killed
    (SIGKILL, the OOM killer) after the rename, before it bumps the stamp: a process
    holding the old value in memory forgets it, as every reader of the disk gets the new
    one. Before, it served the replaced value for good (no ttl), until a later bump or its
    eviction from memory: the stamp was bumped after the rename only."""
    m = make_module(tmp_path)
    first = m.held(1)
    assert m.held(1) is first
    call = "m.held.refresh(1)" if how == "refresh" else "m.held.cache_set(['s'], 1)"
    killed = spawn(m, f"""
        import os, signal
        from memojar import _filestore

        renamed, rename, bump = [], os.rename, _filestore.FileStore._bump

        def noted(src, dst, **kwargs):
            rename(src, dst, **kwargs)
            renamed.append(str(dst).endswith(".pkl"))  # the entry's rename

        def killed_after_the_rename(self, fdir, busy=False):  # its first bump after it:
            if any(renamed):  # killed instead
                os.kill(os.getpid(), signal.SIGKILL)
            bump(self, fdir, busy)

        os.rename = noted
        _filestore.FileStore._bump = killed_after_the_rename
        m.held.__memojar__.store._tmpfile = {written == "unnamed file"}  # (else max_size's)
        {call}
    """, shared_dir)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    new = "[1]" if how == "refresh" else "['s']"
    reader = "print(__import__('memojar').cached(m.held.__wrapped__)(1))"  # no memory tier
    assert finish(spawn(m, reader, shared_dir)) == new  # the entry was replaced
    assert len(notes(m, "held")) == (2 if how == "refresh" else 1)  # read, not computed
    assert m.held(1) is not first


@pytest.mark.parametrize("written", ["unnamed file", "named temporary file"])
def test_the_memory_tier_holds_nothing_read_while_a_killed_writer_was_replacing_the_entry(
    tmp_path: Path, shared_dir: Path, written: str,
) -> None:
    """Another process begins replacing the entry (``cache_set``): it bumps the stamp; this
    process reads the old entry then (its memory tier forgot what it held); the writer
    renames the new entry into place and is killed (SIGKILL) before its second bump. This
    process returns the new value, as every reader of the disk does. Before, it held the
    old value read in that window under the stamp of the change, and served it for good
    (3 of 10 trials of a busy reader, the attack that found it)."""
    m = make_module(tmp_path)
    first = m.held(1)
    assert m.held(1) is first
    flags = tmp_path / "flags"
    flags.mkdir()
    writer = spawn(m, f"""
        import os, signal, time
        from pathlib import Path
        from memojar import _filestore

        flags, bump = Path({str(flags)!r}), _filestore.FileStore._bump

        def paused_then_killed(self, fdir, busy=False):
            if not busy:  # the bump that ends the replacement: killed instead
                os.kill(os.getpid(), signal.SIGKILL)
            bump(self, fdir, busy)
            (flags / "begun").touch()
            while not (flags / "go").exists():  # the reader reads the old entry meanwhile
                time.sleep(0.01)

        _filestore.FileStore._bump = paused_then_killed
        m.held.__memojar__.store._tmpfile = {written == "unnamed file"}  # (else max_size's)
        m.held.cache_set(['s'], 1)
    """, shared_dir)
    wait_for(lambda: (flags / "begun").exists() or writer.poll() is not None)
    read_meanwhile = m.held(1)  # the stamp changed: forgotten, and the old entry read
    assert read_meanwhile == [1] and read_meanwhile is not first
    (flags / "go").touch()
    writer.communicate(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    assert m.held(1) == ["s"]
    assert m.held(1) == ["s"]  # the stamp stays busy: read from disk again, not held
    assert len(notes(m, "held")) == 1  # nothing computed again


@pytest.mark.parametrize("max_size", [None, 10**8], ids=["unnamed file", "max_size"])
def test_a_replacement_interrupted_twice_leaves_no_stamp_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_size: int | None,
) -> None:
    """``cache_set`` interrupted (Ctrl-C) as it renames, then again as it ends its change:
    the change is ended all the same, and memory tiers hold values again. Before, the
    stamp stayed busy: every process's memory tier for the function held nothing until
    another change ended (found by an attack)."""
    from memojar import _filestore
    from memojar._store import stamp_busy

    def f(x: int) -> int:
        return x

    reader = Cache(tmp_path).cached(memory=8)(f)
    reader(1)  # the entry and the stamp
    writer = Cache(tmp_path, max_size=max_size).cached(f)
    interrupts = []
    rename, rename_over, bump = os.rename, _filestore._rename_over, _filestore.FileStore._bump

    def first(*args: Any, **kwargs: Any) -> Any:  # the entry's rename: ``_write_at``'s
        if not interrupts and str(args[1]).endswith(_filestore.SUFFIX):
            interrupts.append("rename")
            raise KeyboardInterrupt
        return rename(*args, **kwargs)

    def first_over(*args: Any) -> Any:  # ``_link_new``'s
        if not interrupts:
            interrupts.append("rename")
            raise KeyboardInterrupt
        return rename_over(*args)

    def second(self: Any, fdir: str, busy: bool = False) -> None:
        if interrupts == ["rename"] and not busy:
            interrupts.append("end")
            raise KeyboardInterrupt
        bump(self, fdir, busy)

    monkeypatch.setattr(os, "rename", first)
    monkeypatch.setattr(_filestore, "_rename_over", first_over)
    monkeypatch.setattr(_filestore.FileStore, "_bump", second)
    with pytest.raises(KeyboardInterrupt):
        writer.cache_set(2, 1)
    assert interrupts == ["rename", "end"]
    gen = next(tmp_path.glob("*/.gen"))
    assert not stamp_busy(int.from_bytes(gen.read_bytes(), sys.byteorder))


@pytest.mark.parametrize("at", ["the second busy bump", "the first closing bump"])
def test_a_clear_interrupted_leaves_no_stamp_busy(
    tmp_path: Path, shared_dir: Path, at: str,
) -> None:
    """A ``clear`` over several functions interrupted (Ctrl-C) as it marks their stamps
    busy, or as it ends their changes, ends every change it began: no memory tier of those
    functions is left holding nothing. Before, the folders after the interrupt kept busy
    stamps until their next change (2 of 40 real SIGINTs to a clear of 400 functions)."""
    m = make_module(tmp_path)
    finish(spawn(m, """
        from memojar import cached

        for name in ("f1", "f2", "f3"):  # three functions, each with an entry and a stamp
            exec(f"def {name}(x): return x")
            cached(memory=4)(globals()[name])(1)
    """, shared_dir))
    out = finish(spawn(m, f"""
        from memojar import Cache, _filestore
        bump, seen = _filestore.FileStore._bump, []

        def interrupted(self, fdir, busy=False):
            seen.append(busy)
            if ({at == "the second busy bump"} and seen == [True, True]) or (
                    {at == "the first closing bump"} and seen[-1] is False
                    and seen.count(False) == 1):
                raise KeyboardInterrupt
            bump(self, fdir, busy)

        _filestore.FileStore._bump = interrupted
        try:
            Cache().clear()
        except KeyboardInterrupt:
            print("interrupted")
    """, shared_dir))
    assert out == "interrupted"
    from memojar._store import stamp_busy

    stamps = list(shared_dir.glob("*/.gen"))
    assert len(stamps) >= 3
    busy = [gen for gen in stamps
            if stamp_busy(int.from_bytes(gen.read_bytes(), sys.byteorder))]
    assert not busy


WRITER_SHORT_OF_DESCRIPTORS = """
import os, resource
m.held.cache_set(["warm"], 2)  # the process's first changes made (folders, statistics)
m.held.cache_delete(2)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
for _ in range(2):  # two descriptors free: enough to write the entry, not to bump
    os.close(held.pop())
m.held.cache_set(["s"], 1)
"""


def test_a_writer_short_of_descriptors_never_replaces_an_entry_unseen_by_memory_tiers(
    tmp_path: Path, shared_dir: Path,
) -> None:
    """A process with two descriptors left replaces an entry a memory tier holds: the
    change is refused (its busy bump cannot open the stamp: EMFILE), with the usual
    warning, so the memory tier's value is still the disk's. Before, the entry was
    replaced and both bumps failed silently: the memory tier served the old value for good
    (found by an attack)."""
    m = make_module(tmp_path)
    first = m.held(1)
    assert m.held(1) is first
    writer = spawn(m, WRITER_SHORT_OF_DESCRIPTORS, shared_dir)
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    plain = "__import__('memojar').cached(m.held.__wrapped__)"  # no memory tier
    on_disk = finish(spawn(m, f"print({plain}(1))", shared_dir))
    assert "Too many open files" in err
    assert str(m.held(1)) == on_disk == "[1]"


WRITER_WHOSE_STAMP_WRITE_FAILS = """
import errno, os, warnings
write = os.pwrite


def pwrite(fd, data, at):  # the stamp's block cannot be written: a disk's I/O error
    if os.readlink(f"/proc/self/fd/{{fd}}").endswith(os.sep + ".gen"):
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    return write(fd, data, at)


os.pwrite = pwrite
with warnings.catch_warnings():
    warnings.simplefilter("error")
    {change}
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("change", ["m.held.cache_set(['s'], 1)", "m.held.cache_delete(1)"])
def test_a_change_whose_stamp_cannot_be_written_reaches_the_memory_tiers(
    tmp_path: Path, shared_dir: Path, change: str,
) -> None:
    """Another process replaces or removes an entry a memory tier holds, and the write of
    the function's stamp fails (EIO; EFBIG under ``ulimit -f 0``; ENOSPC on a full
    copy-on-write disk): the stamp is removed instead, and the memory tier forgets at its
    next look (seconds). Before, the bump's failure was only logged and the change made:
    the memory tier returned the old value for good (found by an attack)."""
    m = make_module(tmp_path)
    first = m.held(1)
    assert m.held(1) is first
    finish(spawn(m, WRITER_WHOSE_STAMP_WRITE_FAILS.format(change=change), shared_dir))
    from memojar import _decorator

    _decorator.restamp_all()  # what the statistics thread does every few seconds
    assert m.held(1) is not first
    assert m.held(1) == (["s"] if "cache_set" in change else [1])

def test_a_stamp_an_older_memojar_left_odd_still_lets_the_memory_tier_hold(
    tmp_path: Path, shared_dir: Path,
) -> None:
    """A stamp of random bytes, as every memojar wrote before busy stamps (half of them odd),
    is not taken for a change under way: the memory tier holds what it reads."""
    m = make_module(tmp_path)
    m.held(1)
    gen = next(shared_dir.glob("*held*/.gen"))
    with open(gen, "r+b") as f:  # rewritten in place, as a bump does
        f.write((0x12345678_9ABCDEF1).to_bytes(8, sys.byteorder))
    first = m.held(1)  # the stamp changed: forgotten, read again, and held
    assert m.held(1) is first


LATE_HOLDER = """
import sys, time, warnings
from pathlib import Path
from memojar import Cache

HERE = Path({here!r})
cache = Cache(HERE / "cache", max_size={max_size}, lock_timeout=1)


@cache.cached(memory=8)
def f(x):
    if sys.argv[1] == "holder":
        (HERE / "computing").touch()
        while not (HERE / "go").exists():  # finishes after the caller that timed out
            time.sleep(0.02)
    return sys.argv[1]


if sys.argv[1] == "holder":
    print(f(1))
else:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # waited past lock_timeout
        print(f(1))
    (HERE / "go").touch()  # (held, or the holder's once stored)
    input()  # the holder has stored its value
    print(f(1))
"""


def holder_then_caller(script: Path) -> list[str]:
    """Run ``script`` as the key's holder, then, once it computes (it made ``computing``
    beside the script), as a caller; the caller's lines, its stdin closed once the holder
    has ended."""

    def run(role: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(script), role], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    holder = run("holder")
    try:
        wait_for(lambda: (script.parent / "computing").exists())
        caller = run("caller")
        assert finish(holder) == "holder"
        out, err = caller.communicate("\n", timeout=60)
        assert caller.returncode == 0, err
    finally:
        holder.kill()
    return out.split()


@pytest.mark.parametrize("max_size", [None, 10**9], ids=["plain", "max_size"])
def test_the_memory_tier_sees_a_holder_that_stores_after_a_caller_that_timed_out(
    tmp_path: Path, max_size: int | None,
) -> None:
    """A caller that waited past ``lock_timeout`` computes and stores its value; the holder
    it gave up on stores its own afterwards, over it: the caller's memory tier forgets its
    value, as every other reader gets the holder's.

    Old: a write that replaced an entry bumped no stamp, so the caller served its own
    value for good while the entry held the holder's."""
    script = tmp_path / "late.py"
    script.write_text(LATE_HOLDER.format(here=str(tmp_path), max_size=max_size))
    assert holder_then_caller(script) == ["caller", "holder"]


LOOKED_BEFORE_STORED = """
import sys, time, warnings
from pathlib import Path
from memojar import Cache, _filestore

HERE = Path({here!r})
cache = Cache(HERE / "cache", max_size=10**9, lock_timeout=1)


def wait(name):
    while not (HERE / name).exists():
        time.sleep(0.02)


if sys.argv[1] == "holder":  # its write looks for an entry before the caller stores one
    size_at = _filestore._size_at

    def looked_first(name, dir_fd):
        size = size_at(name, dir_fd)
        if not (HERE / "looked").exists():
            (HERE / "looked").touch()
            wait("stored")
        return size

    _filestore._size_at = looked_first


@cache.cached(memory=8)
def f(x):
    if sys.argv[1] == "holder":
        (HERE / "computing").touch()
        wait("go")
    else:
        (HERE / "go").touch()
        wait("looked")
    return sys.argv[1]


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the caller waited past lock_timeout
    print(f(1), flush=True)
if sys.argv[1] == "caller":
    (HERE / "stored").touch()
    input()  # the holder has stored its value
    print(f(1))
"""


def test_the_memory_tier_sees_an_entry_replaced_that_was_stored_after_its_writer_looked(
    tmp_path: Path,
) -> None:
    """With ``max_size``, a writer looks for an entry at the key's name (none), and a
    caller that waited past ``lock_timeout`` stores one there before the writer's file
    takes the name: the writer replaces it as any entry there, and the caller's memory
    tier forgets the value it stored.

    Old: the writer renamed its file over the name as if nothing were there, with no bump:
    the caller served its own value for good while the entry held the holder's."""
    script = tmp_path / "looked.py"
    script.write_text(LOOKED_BEFORE_STORED.format(here=str(tmp_path)))
    assert holder_then_caller(script) == ["caller", "holder"]
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_the_memory_tier_sees_another_process_s_clear_that_was_interrupted(
    tmp_path: Path, shared_dir: Path,
) -> None:
    """A ``clear`` (``memojar clear``, ``prune``) interrupted part way, by Ctrl-C, after it
    removed some entries: processes holding them forget them.

    Old: the stamps were bumped only after every entry was unlinked, so the interrupt
    skipped them and the holders served removed entries' values until they restarted."""
    m = make_module(tmp_path)
    first = [m.held(x) for x in range(6)]
    code = """
        from memojar import Cache, _filestore
        real, done = _filestore._unlink, []

        def interrupted(*args, **kwargs):
            if len(done) == 3:
                raise KeyboardInterrupt
            done.append(real(*args, **kwargs))
            return done[-1]

        _filestore._unlink = interrupted
        try:
            Cache().clear()
        except KeyboardInterrupt:
            print("interrupted")
    """
    assert finish(spawn(m, code, shared_dir)) == "interrupted"
    again = [m.held(x) for x in range(6)]
    assert all(a is not b for a, b in zip(first, again, strict=True))  # read or computed again
    assert len(notes(m, "held")) == 6 + 3  # the 3 removed computed again


def test_the_memory_tier_is_off_while_disabled(cache_dir: Path) -> None:
    f, calls = counting(cache_dir, memory=4)
    f(1)
    with memojar.disabled(f):
        f(1)
    f(1)
    assert calls == [1, 1]


def test_a_bad_memory_is_refused(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"memory= must be a positive number of results, got 0"):
        cached(cache_dir=cache_dir, memory=0)
    with pytest.raises(TypeError, match=r"memory= must be a whole number of results, not float"):
        cached(cache_dir=cache_dir, memory=1.5)


def test_the_memory_tier_with_a_cache_object(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c", max_size=10_000)

    @cache.cached(memory=2)
    def f(x: int) -> list[int]:
        return [x]

    a = f(1)
    assert f(1) is a
    assert cache.clear(f) == 1
    assert f(1) is not a


# --- saved statistics --------------------------------------------------------------------

STATS_CODE = """
    import time
    for _ in range(3):
        m.held(1)
    time.sleep(0.05)
"""


def cli_json(cache_dir: Path, *args: str) -> Any:
    import json

    from conftest import run_python

    out = run_python(f"from memojar._cli import main; main({['--dir', str(cache_dir), *args]!r})")
    return json.loads(out)


def test_hits_misses_and_time_saved_add_up_over_processes(tmp_path: Path,
                                                          shared_dir: Path) -> None:
    m = make_module(tmp_path)
    procs = [spawn(m, STATS_CODE, shared_dir) for _ in range(3)]
    for p in procs:
        finish(p)
    [row] = cli_json(shared_dir, "ls", "--json")
    assert row["function"] == f"{m.modname}.held"
    assert row["hits"] + row["misses"] == 9
    assert row["misses"] >= 1 and row["hits"] >= 6
    assert row["saved"] >= 0
    info = cli_json(shared_dir, "info", "--json")
    assert (info["hits"], info["misses"]) == (row["hits"], row["misses"])


def test_saved_time_counts_the_compute_time_of_each_hit(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir)
    def slow(x: int) -> int:
        time.sleep(0.1)
        return x

    slow(1)
    slow(1)
    slow(1)
    cache = _cache_for(cache_dir)  # the cache cached(cache_dir=) decorates in
    hits, misses, saved = cache.saved_stats()[slow.__memojar__.name]
    assert (hits, misses) == (2, 1)
    assert 0.2 <= saved < 1.0


def test_statistics_of_a_running_process_are_saved_within_seconds(
    tmp_path: Path, shared_dir: Path,
) -> None:
    m = make_module(tmp_path)
    proc = spawn(m, """
        import time
        m.held(1); m.held(1)
        print("ready", flush=True)
        time.sleep(60)  # killed by the test: no exit to merge at
    """, shared_dir)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        from memojar._cache import FLUSH_EVERY

        deadline = time.monotonic() + FLUSH_EVERY + 10
        while True:
            [row] = cli_json(shared_dir, "ls", "--json")
            if row["hits"] == 1:
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.5)
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_cache_info_counts_entries_without_listing_them(cache_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    f, _ = counting(cache_dir)
    for i in range(5):
        f(i)
    assert f.cache_info().entries == 5  # the first count lists the entries once
    store = f.__memojar__.store

    def no_listing(*a: Any, **k: Any) -> Any:
        raise AssertionError("listed the entries")

    monkeypatch.setattr(store, "scan", no_listing)
    f(5)
    f.cache_delete(0)
    info = f.cache_info()
    assert (info.entries, info.misses) == (5, 6)
    assert info.bytes > 0


def test_cache_info_sees_another_process_writes_after_it_saves(tmp_path: Path,
                                                               shared_dir: Path) -> None:
    m = make_module(tmp_path)
    m.held(0)
    assert m.held.cache_info().entries == 1
    finish(spawn(m, "m.held(1); m.held(2)", shared_dir))  # merged at its exit
    assert m.held.cache_info().entries == 3
    finish(spawn(m, "m.held.cache_clear()", shared_dir))
    assert m.held.cache_info().entries == 0


def test_the_memory_tier_of_a_coroutine_function_is_refused_with_a_warning(
    cache_dir: Path,
) -> None:
    with pytest.warns(memojar.MemojarWarning, match=r"memory= of .* is not used: .* async def"):
        @cached(cache_dir=cache_dir, memory=4)
        async def f(x: int) -> int:
            return x


def test_a_cloudpickle_copy_of_a_memory_tier_function_holds_its_own_and_sees_clear(
    cache_dir: Path,
) -> None:
    cloudpickle = pytest.importorskip("cloudpickle")

    @cached(cache_dir=cache_dir, memory=4, ttl=60, stale_while_revalidate=60)
    def local(x: int) -> list[int]:
        return [x]

    copy = cloudpickle.loads(cloudpickle.dumps(local))
    first = copy(1)
    assert copy(1) is first
    local.cache_clear()
    assert copy(1) is not first


def test_redis_statistics_add_up_over_caches(redis_location: str) -> None:
    def make() -> Any:
        cache = Cache(redis_location, secret="s")

        @cache.cached
        def f(x: int) -> int:
            time.sleep(0.05)
            return x

        return cache, f

    (a, fa), (b, fb) = make(), make()  # two processes' views, flushed one after the other
    fa(1)
    fa(1)
    fb(1)
    fb(1)
    a.flush_stats()
    b.flush_stats()
    [(hits, misses, saved)] = a.saved_stats().values()
    assert (hits, misses) == (3, 1)
    assert 0.1 < saved < 1.0


def test_a_forked_pool_workers_statistics_are_merged_when_it_leaves(
    tmp_path: Path, shared_dir: Path,
) -> None:
    m = make_module(tmp_path)
    finish(spawn(m, """
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:
            assert pool.map(m.held, [5, 5, 5, 5]) == [[5]] * 4
            pool.close()
            pool.join()
    """, shared_dir))
    [row] = cli_json(shared_dir, "ls", "--json")
    assert (row["hits"], row["misses"]) == (3, 1)


def test_the_memory_tier_still_sees_an_edited_file_argument(tmp_path: Path) -> None:
    """files= (depends_on branch): a path argument is not looked up by its text alone."""
    import inspect

    if "files" not in inspect.signature(cached).parameters:
        pytest.skip("files= is not in this branch yet")
    path = tmp_path / "data.txt"
    path.write_text("first")

    @cached(cache_dir=tmp_path / "c", memory=4, files=("name",))  # type: ignore[call-overload]
    def read(name: str) -> str:
        return Path(name).read_text()

    assert read(str(path)) == "first"
    path.write_text("second, longer")
    assert read(str(path)) == "second, longer"


@pytest.mark.parametrize("fault", ["unpicklable", "disk full"])
def test_the_memory_tier_holds_no_result_the_store_did_not_keep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str,
) -> None:
    """A result that cannot be pickled, or whose write failed, is returned, not stored:
    the next call computes again, as without a memory tier.

    Old: held in memory though the store kept nothing, so it was returned again and again,
    and no clear in another process (which found no entry to remove, so bumped no stamp)
    could reach it."""
    import errno

    calls: list[int] = []
    cache = Cache(tmp_path / "c")

    @cache.cached(memory=4)
    def f(x: int) -> Any:
        calls.append(x)
        return threading.Lock() if fault == "unpicklable" else [x]

    if fault == "disk full":
        def full(*args: Any, **kwargs: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(cache.store, "write", full)
    for _ in range(2):
        with pytest.warns(MemojarWarning, match="returned but not cached"):
            f(1)
    assert calls == [1, 1]


class Scaler:
    """An instance whose state its method's results depend on."""

    def __init__(self, k: int) -> None:
        self.k = k

    def apply(self, x: int) -> int:
        return x * self.k

    def __call__(self, x: int) -> int:
        return x * self.k


def _scale(factor: list[int], x: int) -> int:
    return x * factor[0]


@pytest.mark.parametrize("bound", ["bound method", "callable instance", "partial"])
def test_the_memory_tier_sees_a_bound_instance_or_argument_change_in_place(
    tmp_path: Path, bound: str,
) -> None:
    """``cached(obj.method)``, ``cached(obj)`` and ``cached(partial(f, a))`` key on the
    bound instance or argument as it is at each call: changed in place, the call is
    another entry, with a memory tier too.

    Old: a call of plain arguments was looked up in memory by them alone, so the value
    for the instance or argument of before was returned after it changed."""
    import functools

    scaler, factor = Scaler(2), [2]
    func: Any = {"bound method": scaler.apply, "callable instance": scaler,
                 "partial": functools.partial(_scale, factor)}[bound]
    f = Cache(tmp_path / "c").cached(memory=4)(func)
    assert f(10) == f(10) == 20
    scaler.k = factor[0] = 3
    assert f(10) == 30


def test_the_memory_tier_calls_key_at_every_call(tmp_path: Path) -> None:
    """``key=`` decides the key at each call, also when the arguments are plain values: a
    key that reads more than them (a file's modification time) is not looked up by them.

    Old: a call of plain arguments (a str path) was looked up in memory by the arguments
    alone, so the value of the file's old content was returned after it changed."""
    import os

    path = tmp_path / "data.txt"

    @cached(cache_dir=tmp_path / "c", memory=4,
            key=lambda name: (name, os.stat(name).st_mtime_ns))
    def read(name: str) -> str:
        return Path(name).read_text()

    path.write_text("first")
    os.utime(path, ns=(1, 10**18))
    assert read(str(path)) == read(str(path)) == "first"
    path.write_text("second")
    os.utime(path, ns=(1, 2 * 10**18))
    assert read(str(path)) == "second"


def test_cache_set_of_a_value_that_cannot_be_pickled_says_it_was_given(
        cache_dir: Path) -> None:
    """The warning names the value given to cache_set, not a result "returned" (nothing
    was returned: the caller gave it)."""
    @cached(cache_dir=cache_dir)
    def f(x: int) -> Any:
        return x

    with pytest.warns(MemojarWarning) as warned:
        f.cache_set(threading.Lock(), 1)
    (message,) = [str(w.message) for w in warned]
    assert "returned" not in message, message
    assert re.search(r"the value given to .*f\.cache_set was not cached: it cannot be "
                     r"pickled", message), message
    assert f.cache_info().entries == 0
