"""Warnings of coroutine functions cached on a remote store (Redis, S3) point at the line
of the caller's code that awaited the call, as a plain call's warnings do, although the
store's calls run in a worker thread where none of the caller's frames are."""

from __future__ import annotations

import asyncio
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache, MemojarWarning, _decorator
from remote_kit import SECRET


@pytest.fixture(params=["redis", "s3"])
def remote_location(request: pytest.FixtureRequest) -> Any:
    if request.param == "redis":
        pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[dev]')")
    return request.getfixturevalue(f"{request.param}_location")


def _line_of(marker: str) -> int:
    """The number of the line of this file that holds ``marker`` (the awaiting line)."""
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if marker in line and "_line_of" not in line)


def test_a_result_that_cannot_be_pickled_warns_at_the_awaiting_line(remote_location: str
                                                                    ) -> None:
    @Cache(remote_location, secret=SECRET).cached
    async def unpicklable(x: int) -> Any:
        return threading.Lock()

    async def main() -> Any:
        return await unpicklable(1)  # AWAIT-UNPICKLABLE

    with pytest.warns(MemojarWarning, match="cannot be pickled") as caught:
        assert isinstance(asyncio.run(main()), type(threading.Lock()))
    assert [(w.filename, w.lineno) for w in caught] == \
        [(__file__, _line_of("# AWAIT-UNPICKLABLE"))]


def test_a_failing_write_warns_at_the_awaiting_line(remote_location: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache(remote_location, secret=SECRET)

    @cache.cached
    async def double(x: int) -> int:
        return 2 * x

    store = double.__memojar__.store

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(store, "_write", refused)

    async def main() -> int:
        return await double(1)  # AWAIT-WRITE

    with pytest.warns(MemojarWarning, match="writing to .* failed") as caught:
        assert asyncio.run(main()) == 2
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, _line_of("# AWAIT-WRITE"))]


def test_the_files_warning_points_at_the_awaiting_line(remote_location: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_decorator, "_FILES_WARNED", set())  # once per function and process
    counter = tmp_path / "counter.txt"
    counter.write_text("0")

    @Cache(remote_location, secret=SECRET).cached(files=("path",))
    async def bump_remote(path: str) -> int:
        Path(path).write_text("1")
        return 1

    async def main() -> int:
        return await bump_remote(str(counter))  # AWAIT-FILES

    with pytest.warns(MemojarWarning, match="changed while it ran") as caught:
        assert asyncio.run(main()) == 1
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, _line_of("# AWAIT-FILES"))]


def test_a_lock_timeout_warns_at_the_awaiting_line(remote_location: str) -> None:
    cache = Cache(remote_location, secret=SECRET, lock_timeout=0.2)

    @cache.cached
    async def double(x: int) -> int:
        return 2 * x

    memo = double.__memojar__
    held = memo.store.lock(memo.name, double.cache_key(1))
    assert held.acquire(blocking=False)
    try:
        async def main() -> int:
            return await double(1)  # AWAIT-TIMEOUT

        with pytest.warns(MemojarWarning, match="lock_timeout") as caught:
            assert asyncio.run(main()) == 2
    finally:
        held.release()
    assert [(w.filename, w.lineno) for w in caught] == \
        [(__file__, _line_of("# AWAIT-TIMEOUT"))]


def test_a_write_to_a_stopped_server_warns_at_the_awaiting_line() -> None:
    pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[dev]')")
    from redis_server import RedisServer, redis_server_path

    if redis_server_path() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer.start()
    try:
        @Cache(server.url(0, socket_timeout=1), secret=SECRET).cached
        async def triple(x: int) -> int:
            return 3 * x

        async def main() -> int:
            return await triple(1)  # AWAIT-STOPPED

        assert asyncio.run(main()) == 3  # stored; then the server goes: a miss, not stored
    finally:
        server.stop()
    with pytest.warns(MemojarWarning, match="not cached") as caught:
        assert asyncio.run(main()) == 3
    assert [(w.filename, w.lineno) for w in caught] == \
        [(__file__, _line_of("# AWAIT-STOPPED"))]


# --- a warning the caller turns into an exception ------------------------------------------

def _lock_is_free(func: Any, *args: Any) -> bool:
    memo = func.__memojar__
    lock = memo.store.lock(memo.name, func.cache_key(*args))
    if not lock.acquire(blocking=False):
        return False
    lock.release()
    return True


def test_an_error_filter_raises_the_warning_with_the_lock_released_and_nothing_stored(
        remote_location: str) -> None:
    """``warnings.simplefilter("error")``: the caller asked for warnings to be exceptions, so
    a fault on the store raises ``MemojarWarning`` (at the awaiting line) instead of returning;
    the key's lock is given back, nothing is stored, and the next call computes."""
    calls = []

    @Cache(remote_location, secret=SECRET, lock_timeout=60).cached
    async def unpicklable(x: int) -> Any:
        calls.append(x)
        return threading.Lock()

    async def main() -> Any:
        return await unpicklable(1)  # AWAIT-ERROR

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MemojarWarning, match="cannot be pickled"):
            asyncio.run(main())
    assert _lock_is_free(unpicklable, 1)
    assert not unpicklable.cache_contains(1)
    with pytest.warns(MemojarWarning, match="cannot be pickled"):
        assert isinstance(asyncio.run(main()), type(threading.Lock()))
    assert calls == [1, 1]


def test_an_error_filter_on_a_plain_call_releases_the_lock_for_other_processes(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    cache = Cache(tmp_path / "cache", lock_timeout=60)

    @cache.cached
    def unpicklable(x: int) -> Any:
        return threading.Lock()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MemojarWarning, match="cannot be pickled"):
            unpicklable(1)
    assert _lock_is_free(unpicklable, 1)  # in this process
    memo = unpicklable.__memojar__
    probe = (
        "from memojar._cache import open_store\n"
        f"lock = open_store({str(tmp_path / 'cache')!r}, None, True).lock("
        f"{memo.name!r}, {unpicklable.cache_key(1)!r})\n"
        "print(lock.acquire(blocking=False))\n"
    )
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           timeout=60)
    assert child.stdout.strip() == "True", child.stderr  # and in another
    assert list((tmp_path / "cache").rglob("*.pkl")) == []


def test_the_no_secret_warning_of_a_first_hit_points_at_the_awaiting_line(
        remote_location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache without a secret warns at its first read (a hit here, the entry stored by
    another ``Cache`` of the same place): at the line that awaited the call. Before, the
    hit's read ran in a worker thread with no site given, and the warning pointed at
    ``concurrent/futures/thread.py``."""
    from memojar import _store

    def double(x: int) -> int:
        return 2 * x

    async def stored(x: int) -> int:
        return double(x)

    with pytest.warns(MemojarWarning, match="has no secret"):
        assert asyncio.run(Cache(remote_location).cached(stored)(1)) == 2
    monkeypatch.setattr(_store, "_UNSIGNED_WARNED", set())  # once per place: again

    hit = Cache(remote_location).cached(stored)

    async def main() -> int:
        return await hit(1)  # AWAIT-FIRST-HIT

    with pytest.warns(MemojarWarning, match="has no secret") as caught:
        assert asyncio.run(main()) == 2
    assert hit.cache_info().hits == 1
    assert [(w.filename, w.lineno) for w in caught] == \
        [(__file__, _line_of("# AWAIT-FIRST-HIT"))]


def test_a_warning_at_a_line_of_python_c_is_shown_not_raised(remote_location: str) -> None:
    """A warning pointed at the awaiting line of a ``python -c`` program (whose ``__main__``
    is loaded by the built-in importer, which has no source to give) is shown. Before, the
    first read's "no secret" warning raised ``ImportError: '__main__' is not a built-in
    module`` out of the call: ``warnings.warn_explicit`` asks the module's loader for the
    line it shows, and that loader raises."""
    import subprocess
    import sys

    program = (
        "import asyncio\n"
        "from memojar import Cache\n"
        f"cache = Cache({remote_location!r})\n"
        "async def twice(x):\n"
        "    return 2 * x\n"
        "print(asyncio.run(cache.cached(twice)(1)))\n"
    )
    child = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                           timeout=120)
    assert child.stdout.strip() == "2", child.stderr
    assert "has no secret" in child.stderr and "<string>:6" in child.stderr, child.stderr
