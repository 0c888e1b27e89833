"""Scopes and Python versions in one process: ``scope_of``, seeded keys, the first-store
sweep and ``judge``. (Real scripts, notebooks and interpreters: ``test_sharing.py``.)"""

from __future__ import annotations

import functools
import struct
import time
import types
from pathlib import Path
from typing import Any

import pytest

from memojar import Cache, _entry
from memojar._cache import FRESH, OTHER_PYTHON, SUPERSEDED, judge
from memojar._identity import scope_of
from memojar._keys import make_key


def main_function(namespace: dict[str, Any], module: str = "__main__") -> Any:
    """A function ``load`` as if defined in a module's (or a notebook's) namespace."""
    namespace.setdefault("__name__", module)
    exec("def load(x):\n    return x\n", namespace)
    return namespace["load"]


# --- scope_of ---------------------------------------------------------------------------

def test_a_module_function_has_no_scope() -> None:
    assert scope_of(make_key) == ""
    assert scope_of(main_function({"__file__": "/x/y.py"}, module="pkg.mod")) == ""


def test_a_script_function_is_scoped_by_the_resolved_script(tmp_path: Path) -> None:
    real = tmp_path / "real.py"
    real.write_text("")
    link = tmp_path / "link.py"
    link.symlink_to(real)
    assert scope_of(main_function({"__file__": str(link)})) == str(real)


def test_a_relative_script_path_is_resolved_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert scope_of(main_function({"__file__": "run.py"})) == str(tmp_path.resolve() / "run.py")


def test_a_spawn_workers_mp_main_has_the_scripts_scope(tmp_path: Path) -> None:
    script = str(tmp_path / "run.py")
    worker = main_function({"__file__": script}, module="__mp_main__")
    assert scope_of(worker) == scope_of(main_function({"__file__": script}))


@pytest.mark.parametrize("variable", ["__vsc_ipynb_file__", "__session__"])
def test_a_notebook_function_is_scoped_by_the_notebook(variable: str) -> None:
    assert scope_of(main_function({variable: "/work/a.ipynb"})) == "/work/a.ipynb"


def test_vs_codes_notebook_path_wins_over_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", "/server/b.ipynb")
    namespace = {"__vsc_ipynb_file__": "/work/a.ipynb", "__file__": "/tmp/kernel.py"}
    assert scope_of(main_function(namespace)) == "/work/a.ipynb"


def test_jupyter_servers_session_name_scopes_an_interactive_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A relative notebook path (as Jupyter Server may pass it) is kept as it is."""
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/a.ipynb")
    assert scope_of(main_function({})) == "notebooks/a.ipynb"
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert scope_of(main_function({})) == ""  # a plain REPL: one scope for all of them


def test_a_script_run_from_a_notebook_is_scoped_by_the_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/a.ipynb")  # inherited by `!python run.py`
    assert scope_of(main_function({"__file__": "/work/run.py"})) == "/work/run.py"


def test_wrappers_partials_methods_and_instances_take_their_functions_scope() -> None:
    namespace: dict[str, Any] = {"__file__": "/work/run.py"}
    load = main_function(namespace)
    wrapped = functools.wraps(load)(lambda x: load(x))
    wrapped.__module__ = "helpers"
    method = types.MethodType(load, object())
    exec("class Model:\n    def __call__(self, x):\n        return x\n", namespace)
    for func in (wrapped, functools.partial(load, 1), method, namespace["Model"]()):
        assert scope_of(func) == "/work/run.py"


# --- seeded keys --------------------------------------------------------------------------

def test_the_seed_separates_pythons_and_scopes() -> None:
    seeds = {_entry.key_seed(""), _entry.key_seed("/a.py"), _entry.key_seed("/b.py"),
             _entry.key_seed("", python="3.99"), _entry.key_seed("/a.py", python="3.99"),
             _entry.key_seed("", fmt=_entry.FORMAT_VERSION + 1)}  # a newer memojar's
    assert len(seeds) == 6


@pytest.mark.parametrize("values", [(1, "a"), ({"b": 2, "a": {1, 2}}, [b"x" * 70_000])])
def test_a_seed_changes_the_key_and_nothing_else(values: tuple) -> None:
    seed = _entry.key_seed("/a.py")
    assert make_key(values, seed) == make_key(values, seed)
    assert make_key(values, seed) != make_key(values)
    assert make_key(values, 0) == make_key(values)


def _decorate(cache: Cache, namespace: dict[str, Any]) -> Any:
    return cache.cached(main_function(namespace))


def test_the_same_call_in_two_scopes_has_two_keys_and_entries(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    a = _decorate(cache, {"__file__": "/work/a.py"})
    b = _decorate(cache, {"__file__": "/work/b.py"})
    assert a.cache_key(1) != b.cache_key(1)
    a(1)
    b(1)
    assert sorted(e.scope for e in cache.entries("__main__.load")) == ["/work/a.py",
                                                                      "/work/b.py"]
    assert a.cache_contains(1) and b.cache_contains(1)


@pytest.mark.parametrize("variable", ["__file__", "__session__"])
def test_a_script_in_a_folder_whose_name_is_not_utf8_is_cached(
    cache_dir: Path, variable: str
) -> None:
    """A script or notebook in a folder named in Latin-1 (``caf\\xe9``: Python decodes the
    byte to a lone surrogate). Before, its scope did not encode, and decorating any of its
    functions raised ``UnicodeEncodeError``; now its bytes are escaped, ``caf\\xe9``, the
    scope of that folder and no other."""
    import os

    folder = os.fsdecode(b"/work/caf\xe9")
    cache = Cache(cache_dir)
    load = _decorate(cache, {variable: f"{folder}/run.py"})
    assert load(1) == 1 and load(1) == 1
    assert load.cache_info().hits == 1
    (entry,) = cache.entries("__main__.load")
    assert entry.scope == "/work/caf\\xe9/run.py"
    other = _decorate(cache, {variable: f"{os.fsdecode(b'/work/caf')}\u00e9/run.py"})
    assert other.cache_key(1) != load.cache_key(1)  # the UTF-8 café is another folder


# --- the first-store sweep ---------------------------------------------------------------

def _forge_python(cache: Cache, stored: Any, python: str, args: tuple = (1,)) -> None:
    """Rewrite one entry of ``load(*args)`` as if another Python had written it, and move it
    to the key that Python gives the call."""
    path = Path(stored.location)
    data = bytearray(path.read_bytes())
    header = _entry.read_header(bytes(data))
    here = f"\0{_entry.PYTHON}\0".encode()
    there = f"\0{python}\0".encode()
    assert len(here) == len(there) and data.count(here) == 1
    at = data.index(here)
    data[at : at + len(here)] = there
    key = make_key(args, _entry.key_seed(header.scope, python=python))
    at = data.index(header.key.encode())
    data[at : at + len(key)] = key.encode()
    struct.pack_into("<Q", data, _entry.CHECKSUM_AT, _entry.checksum_of(data))
    path.unlink()
    target = Path(cache.store.path(header.function, key))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))


def test_the_sweep_evicts_only_its_own_scopes_old_code(location: str) -> None:
    a_old = _decorate(Cache(location), {"__file__": "/work/a.py"})
    b = _decorate(Cache(location), {"__file__": "/work/b.py"})
    a_old(1)
    b(1)
    namespace = {"__file__": "/work/a.py", "__name__": "__main__"}
    exec("def load(x):\n    return x + 1\n", namespace)  # a's edited code, a new process
    a_new = Cache(location).cached(namespace["load"])
    assert a_new(1) == 2
    scopes = sorted((e.scope, e.fingerprint) for e in Cache(location).entries())
    assert [s for s, _ in scopes] == ["/work/a.py", "/work/b.py"]
    assert b.cache_contains(1) and a_new.cache_contains(1)


def test_the_sweep_leaves_another_pythons_old_code(cache_dir: Path) -> None:
    old = _decorate(Cache(cache_dir), {"__file__": "/work/a.py"})
    old(1)
    (stored,) = Cache(cache_dir).store.scan()
    other = _entry.PYTHON[:-1] + str((int(_entry.PYTHON[-1]) + 1) % 10)
    _forge_python(Cache(cache_dir), stored, other)
    namespace = {"__file__": "/work/a.py", "__name__": "__main__"}
    exec("def load(x):\n    return x + 1\n", namespace)
    Cache(cache_dir).cached(namespace["load"])(1)
    assert sorted(e.python for e in Cache(cache_dir).entries()) == sorted([other,
                                                                          _entry.PYTHON])


def test_alternating_scopes_do_not_list_the_entries_again(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep note remembers each scope's code: a's and b's next processes skip the scan."""
    for scope in ("/work/a.py", "/work/b.py"):
        _decorate(Cache(location), {"__file__": scope})(1)
    scans = []
    for scope in ("/work/a.py", "/work/b.py"):
        cache = Cache(location)
        scan = cache.store.scan
        monkeypatch.setattr(cache.store, "scan", lambda *a, _s=scan, **k: scans.append(a) or
                            _s(*a, **k))
        _decorate(cache, {"__file__": scope})(2)  # a first store in a new "process"
    assert scans == []


# --- judge --------------------------------------------------------------------------------

def test_judge_groups_superseded_by_function_scope_and_python(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    versions = {}
    for scope, version in (("/a.py", 1), ("/b.py", 2), ("/a.py", 3)):
        namespace = {"__file__": scope, "__name__": "__main__"}
        exec("def load(x):\n    return x\n", namespace)
        f = versions[scope, version] = cache.cached(version=version)(namespace["load"])
        f.__memojar__.swept = True  # keep every entry: judge is the one deciding here
        f(version)
        time.sleep(0.01)  # distinct creation times
    verdicts = {(h.scope, h.version): v for _, h, v in judge(cache.store.scan(), time.time())}
    assert verdicts == {("/a.py", "int:1"): SUPERSEDED, ("/b.py", "int:2"): FRESH,
                        ("/a.py", "int:3"): FRESH}


def test_judge_calls_another_pythons_entries_other_python(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    f = cache.cached(main_function({"__file__": "/a.py"}))
    f(1)
    (stored,) = cache.store.scan()
    _forge_python(cache, stored, "3.99"[: len(_entry.PYTHON)])
    ((_, _, verdict),) = judge(cache.store.scan(), time.time())
    assert verdict == OTHER_PYTHON == "other Python"
    assert cache.prune() == 0
    assert cache.prune(other_pythons=True) == 1


# --- clearing -----------------------------------------------------------------------------

def test_cache_clear_removes_only_what_the_function_can_read(cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    a = _decorate(cache, {"__file__": "/work/a.py"})
    b = _decorate(cache, {"__file__": "/work/b.py"})
    a(1)
    a(2)
    b(1)
    b(2)
    _forge_python(cache, next(s for s in cache.store.scan()
                              if _entry.read_header(s.head).key == b.cache_key(2)),
                  "3.99"[: len(_entry.PYTHON)], args=(2,))
    assert a.cache_clear() == 2
    assert b.cache_clear() == 1  # b's own; another Python's b(2) stays
    assert [e.python for e in cache.entries()] == ["3.99"[: len(_entry.PYTHON)]]
    assert cache.clear("__main__.load") == 1  # by name: every scope and Python


def test_prune_keeps_a_newer_memojars_entries_unless_asked(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from memojar import _cli

    cache = Cache(cache_dir)
    f = cache.cached(make_key)
    f((1,))
    (stored,) = cache.store.scan()
    path = Path(stored.location)
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, _entry.FORMAT_AT, _entry.FORMAT_VERSION + 1)  # a newer one's
    path.write_bytes(bytes(data))
    assert _cli.main(["--dir", str(cache_dir), "info"]) == 0
    assert "1 entry of a newer memojar's format, kept for it" in capsys.readouterr().out
    assert cache.prune() == 0 and path.exists()
    assert cache.prune(other_pythons=True) == 1 and not path.exists()
