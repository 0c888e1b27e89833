"""The hit path's shortcuts (remembered keys, the per-function reader) give what the long
way gives: the same keys, the same values, the same refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import memojar
from memojar import Cache
from memojar._keys import make_key

SRC = str(Path(memojar.__file__).parent.parent)


def _echo(cache_dir: Path) -> Any:
    @Cache(cache_dir).cached
    def echo(x: Any, y: Any = 0) -> str:
        return f"{type(x).__name__}:{x!r} {type(y).__name__}:{y!r}"

    return echo


EQUAL_BUT_DIFFERENT = [1, True, 1.0, 1 + 0j, "1", b"1", None, 0, False, 0.0, -0.0, ""]


def test_remembered_keys_keep_equal_values_of_other_types_apart(tmp_path: Path) -> None:
    echo = _echo(tmp_path)
    for _ in range(3):  # the second and third rounds hit, each by its remembered key
        for x in EQUAL_BUT_DIFFERENT:
            assert echo(x) == f"{type(x).__name__}:{x!r} int:0"
            assert echo(0, x) == f"int:0 {type(x).__name__}:{x!r}"
    keys = {echo.cache_key(x) for x in EQUAL_BUT_DIFFERENT}
    assert len(keys) == len(EQUAL_BUT_DIFFERENT)
    assert echo.cache_info().misses == 2 * len(EQUAL_BUT_DIFFERENT) - 1  # echo(0) is echo(0, 0)


def test_a_remembered_key_is_the_key_made_from_the_values(tmp_path: Path) -> None:
    echo = _echo(tmp_path)
    memo = echo.__memojar__
    for args in [(1,), (1, 2), ("a", b"b"), (None, "x" * 200), (10**30,)]:
        echo(*args)
        values = memo.binder(*args)
        assert memo.known[values] == echo.cache_key(*args) == make_key(values, memo.seed)


def test_large_values_and_many_calls_are_not_held(tmp_path: Path) -> None:
    echo = _echo(tmp_path)
    memo = echo.__memojar__
    big = "x" * 10_000
    assert echo(big) == echo(big)
    assert not any(big in values for values in memo.known)
    for i in range(600):
        echo.cache_key(i)
    assert 0 < len(memo.known) <= 256


@pytest.mark.parametrize("make", [lambda n: "x" * n, lambda n: b"x" * n,
                                  lambda n: 1 << (8 * n)], ids=["str", "bytes", "int"])
def test_values_are_remembered_up_to_their_getsizeof_bound(tmp_path: Path, make: Any) -> None:
    """A miss measures each value with ``__sizeof__`` (cheaper): the bound is still what
    ``sys.getsizeof`` says of it (these types have no GC header)."""
    from memojar._decorator import _KNOWN_SIZE

    echo = _echo(tmp_path)
    memo = echo.__memojar__
    sizes = [n for n in range(400) if sys.getsizeof(make(n)) <= _KNOWN_SIZE]
    small, large = make(max(sizes)), make(max(sizes) + 1)
    assert sys.getsizeof(large) > _KNOWN_SIZE
    echo(small)
    echo(large)
    assert (small, 0) in memo.known
    assert (large, 0) not in memo.known


def test_remembered_keys_under_threads(tmp_path: Path) -> None:
    echo = _echo(tmp_path)
    errors: list[BaseException] = []

    def run(offset: int) -> None:
        try:
            for i in range(2000):
                x = (i * 7 + offset) % 700
                assert echo.cache_key(x) == make_key((x, 0), echo.__memojar__.seed)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


RESULT_CLASS = """
class Point:
    def __init__(self, x):
        self.x = x
"""

RUN = """
import sys
import threading
from memojar import Cache
from points import Point

calls = []
options = {"memory": {"memory": 8}, "swr": {"ttl": 1.0, "stale_while_revalidate": 600},
           "plain": {}}[sys.argv[2]]

@Cache(sys.argv[1]).cached(**options)
def make(x):
    if threading.current_thread() is threading.main_thread():  # not a background refresh
        calls.append(x)
    return Point(x)

if sys.argv[3] == "wait":
    import time
    time.sleep(1.5)  # the entry written by the first run is stale now
assert make(1).x == 1 and make(1).x == 1
print(len(calls))
"""


@pytest.mark.parametrize("kind", ["plain", "memory", "swr"])
def test_an_entry_holding_a_class_of_the_users_code_hits_in_a_new_process(
    tmp_path: Path, kind: str
) -> None:
    (tmp_path / "points.py").write_text(RESULT_CLASS)
    (tmp_path / "run.py").write_text(RUN)
    cache_dir = tmp_path / "cache"

    def run(wait: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "run.py", str(cache_dir), kind, wait], cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(tmp_path)])},
            capture_output=True, text=True, timeout=120, check=True,
        )
        return done.stdout.strip()

    assert run() == "1"
    # A new process reads the entry from disk: the class is unchanged, so it is a hit (a
    # stale one served while it is recomputed, with stale_while_revalidate).
    assert run("wait" if kind == "swr" else "") == "0"
