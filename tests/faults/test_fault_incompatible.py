"""Attack 7: entries another version, another code, another Python or a vanished class wrote.
Each is a miss, evicted, and recomputed; ``prune`` removes those it can tell from headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faultkit import RawEntry, entry_files, finish, spawn, with_ident

from memojar import Cache, _entry


def _path(f: Any, x: int) -> RawEntry:
    return RawEntry(f, x)


def _header(path: RawEntry) -> _entry.Header:
    return _entry.read_header(path.read_bytes())


def _named(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``func`` one fixed name, as the same function in an edited file would have."""
    func.__module__, func.__qualname__ = "analysis", "load_table"
    return func


def test_entry_of_another_version_is_recomputed_and_evicted(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    calls: list[tuple[object, int]] = []

    def make(version: object) -> Any:
        @cache.cached(version=version)
        def f(x: int) -> str:
            calls.append((version, x))
            return f"{version!r}:{x}"
        return f

    old, new, same_text = make(1), make(2), make("1")
    assert old(5) == "1:5"
    assert new(5) == "2:5"
    assert same_text(5) == "'1':5"  # 1 and "1" are different versions
    assert calls == [(1, 5), (2, 5), ("1", 5)]
    assert cache.stats().entries == 1  # each replaced the one before
    # The closures of one factory keep entries of their own (their keys differ), and one of
    # another version supersedes them as a version bump does: the last one's is left.
    assert [e.version for e in cache.entries()] == ["1"]
    assert same_text(5) == "'1':5" and len(calls) == 3


def test_entry_of_edited_function_is_recomputed_and_evicted(cache_dir: Path) -> None:
    cache = Cache(cache_dir)

    def before(x: int) -> int:
        return x + 1

    def after(x: int) -> int:
        return x + 2

    old = cache.cached(_named(before))
    new = cache.cached(_named(after))
    assert old(1) == 2
    old_fingerprint = _header(_path(old, 1)).fingerprint
    assert new(1) == 3
    assert new.cache_info().misses == 1
    assert _header(_path(new, 1)).fingerprint != old_fingerprint
    assert cache.stats().entries == 1
    assert new(1) == 3 and new.cache_info().hits == 1


def _other_python() -> str:
    forged = _entry.PYTHON[:-1] + str((int(_entry.PYTHON[-1]) + 1) % 10)  # 3.11 -> 3.12
    assert len(forged) == len(_entry.PYTHON) and forged != _entry.PYTHON
    return forged


def test_entry_of_another_python_is_recomputed_and_pruned(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    calls: list[int] = []

    @cache.cached
    def f(x: int) -> int:
        calls.append(x)
        return x * 3

    assert (f(1), f(2)) == (3, 6)
    here, there = f"\0{_entry.PYTHON}\0".encode(), f"\0{_other_python()}\0".encode()
    for x in (1, 2):
        path = _path(f, x)
        path.write_bytes(with_ident(path.read_bytes(), here, there))
        assert _header(path).incompatible() == f"written by Python {_other_python()}"
    assert f(1) == 3 and calls == [1, 2, 1]
    assert _header(_path(f, 1)).python == _entry.PYTHON  # evicted, replaced
    assert cache.prune() == 0  # the other one is that Python's to keep...
    assert cache.prune(other_pythons=True) == 1  # ...unless asked: by its header alone
    assert not _path(f, 2).exists()
    assert f(2) == 6 and calls == [1, 2, 1, 2]


GHOST_JOB = """
import importlib, os
from memojar import Cache

cache = Cache(os.environ["CACHE"])

@cache.cached
def build(x):
    return importlib.import_module(os.environ["MAKER"]).make(x)
"""

THING = """
class Thing:
    def __init__(self, x):
        self.x = x

def make(x):
    return Thing(x)
"""

NO_THING = """
def make(x):
    return ("plain", x)
"""


@pytest.mark.parametrize("gone", ["module", "class"])
def test_entry_whose_class_is_gone_is_recomputed(tmp_path: Path, gone: str) -> None:
    """The entry verifies but does not load (ModuleNotFoundError / AttributeError)."""
    (tmp_path / "ghostjob.py").write_text(GHOST_JOB)
    (tmp_path / "ghost.py").write_text(THING)
    (tmp_path / "plain.py").write_text(NO_THING)
    env = {"CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(tmp_path),
           "PYTHONDONTWRITEBYTECODE": "1"}
    call = ("from ghostjob import build\nv = build(7)\n"
            "print(type(v).__name__, build.cache_info().misses)\n")
    assert finish(spawn(call, MAKER="ghost", **env)).split() == ["Thing", "1"]
    if gone == "module":
        (tmp_path / "ghost.py").unlink()
        maker = "plain"
    else:
        (tmp_path / "ghost.py").write_text(NO_THING)
        maker = "ghost"
    assert finish(spawn(call, MAKER=maker, **env)).split() == ["tuple", "1"]
    assert finish(spawn(call, MAKER=maker, **env)).split() == ["tuple", "0"]  # stored again
    assert len(entry_files(tmp_path / "cache")) == 1
